"""The README's tour, run as written at a tiny budget: the reference's members, the plain update and the
ELODI student are trained with one recipe (the published one: no dropout), and the reference's members
never share a seed with the default plain update."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from modelupdate.formats import read_meta
from modelupdate.recipe import TRAIN_KEYS

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--data", "synthetic", "--epochs", "1", "--device", "cpu", "--quiet"]


def tour_commands() -> list[list[str]]:
    """The training commands of the README's tour code block, as typed (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## A short tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()
    commands = [shlex.split(line.split("#", 1)[0]) for line in lines if line.startswith("modelupdate ")]
    return [c[1:] for c in commands if c[1] in ("train", "ensemble-train", "ldi-train")]


def tiny(command: list[str], folder: Path) -> list[str]:
    """The command on tiny synthetic data: --data replaced, 2 members, outputs and inputs in ``folder``."""
    out, skip = [], False
    for i, arg in enumerate(command):
        if skip:
            skip = False
            continue
        if arg in ("--data", "--members", "--train-subset"):
            skip = True
            continue
        out.append(str(folder / arg) if arg.endswith(".safetensors") and command[i - 1] != "--arch" else arg)
    return out + TINY + (["--members", "2"] if command[0] == "ensemble-train" else [])


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> Path:
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("tour")
    for command in tour_commands():
        proc = subprocess.run([sys.executable, "-m", "modelupdate", *tiny(command, folder)], capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (command, proc.stderr)
    return folder


def test_the_tour_trains_the_reference_and_both_updates():
    names = [c[0] for c in tour_commands()]
    assert names.count("ldi-train") == 2 and "ensemble-train" in names


def test_every_new_model_of_the_tour_has_one_recipe(tour):
    configs = {p.stem: json.loads(json.dumps(read_meta(p).config["train"])) for p in tour.glob("*.safetensors")}
    new = {name: c for name, c in configs.items() if name != "old"}
    assert set(new) == {"ref", "new", "plain"}
    # seeds differ by design; clipping and the weight average are the methods' own (docs/method.md)
    differing = {key for key in TRAIN_KEYS if key not in ("seed", "clip_grad_norm", "ema_epochs")
                 if len({json.dumps(c[key]) for c in new.values()}) > 1}
    assert not differing, {k: {n: c[k] for n, c in new.items()} for k in differing}
    assert all(c["dropout"] == 0.0 for c in new.values())


def test_the_reference_members_do_not_share_the_plain_update_seed(tour):
    plain_seed = read_meta(tour / "plain.safetensors").config["train"]["seed"]
    assert plain_seed not in read_meta(tour / "ref.safetensors").member_seeds
