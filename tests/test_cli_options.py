"""Every CLI default is the library's: the options read them from config, and nothing else sets one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer.main

from modelupdate.cli import app
from modelupdate.config import DataConfig, EnsembleConfig, EvalConfig, GateSpec, TrainConfig
from modelupdate.methods import UpdateConfig

# CLI parameter -> (config class, field); a few read inverted or as JSON text
FIELDS = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (DataConfig, TrainConfig, EvalConfig,
                                                                         UpdateConfig, GateSpec, EnsembleConfig)}
SPECIAL = {"data": ("name", DataConfig), "no_augment": ("augment", DataConfig), "arch_args": ("arch_args", TrainConfig)}
NO_CONFIG = {"out", "resume", "quiet", "as_json", "data_dir", "old", "new", "reference", "reference_cache",
             "method", "checkpoint", "candidates", "names", "json_path", "markdown_path",
             "flips_csv_path", "html_path", "allow_other_data", "debug", "version", "allow_arch_module",
             "image_size", "tensorboard", "mlflow", "pr_comment_path",
             "max_nfr", "max_rel_nfr", "max_er", "max_er_increase", "min_btc", "max_class_nfr"}
COMMAND_CONFIGS = {  # which configs a command's options fill, in the order a name is looked up
    "train": (TrainConfig, DataConfig), "ensemble-train": (EnsembleConfig, TrainConfig, DataConfig),
    "ldi-train": (UpdateConfig, TrainConfig, DataConfig, EvalConfig), "predict": (EvalConfig, DataConfig),
    "flip-report": (EvalConfig, DataConfig, GateSpec), "compare": (EvalConfig, DataConfig, GateSpec),
}


def cli_defaults(command: str) -> dict[str, object]:
    click_command = typer.main.get_command(app).commands[command]
    return {p.name: p.default for p in click_command.params}


@pytest.mark.parametrize("command", sorted(COMMAND_CONFIGS))
def test_every_cli_default_equals_the_configs(command):
    checked = 0
    for name, default in cli_defaults(command).items():
        if name in NO_CONFIG or (name == "data" and EvalConfig in COMMAND_CONFIGS[command]):
            continue  # the analysis commands' --data is required or optional (prediction files need none)
        if name in SPECIAL:
            field, cls = SPECIAL[name]
            expected = getattr(cls(), field)
            default = {"no_augment": lambda d: not d, "arch_args": json.loads}.get(name, lambda d: d)(default)
        else:
            cls = next((c for c in COMMAND_CONFIGS[command] if name in FIELDS[c]), None)
            assert cls is not None, f"{command} --{name}: no config field of that name; add it to config.py"
            expected = getattr(cls(), name)
        assert default == expected, f"{command} --{name}: CLI default {default!r}, config {expected!r}"
        checked += 1
    assert checked >= 3


def test_every_flag_the_code_names_is_an_option_of_a_command():
    """Errors and help name the flag the user typed: a flag that no command has would send them nowhere."""
    import ast
    import re

    options = {"--help", "--body-file"}  # every command's --help; gh's --body-file (the PR-comment help)

    def collect(command) -> None:
        for param in command.params:
            options.update(param.opts, param.secondary_opts)
        for sub in getattr(command, "commands", {}).values():
            collect(sub)

    collect(typer.main.get_command(app))
    package = Path(__file__).resolve().parents[1] / "src" / "modelupdate"
    unknown = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    if flag not in options:
                        unknown.setdefault(flag, set()).add(path.name)
    assert not unknown, unknown
