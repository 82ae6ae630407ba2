"""Options generated from config fields (cli/groups.py, fields.py): each flagged field is one option, with its
flag, help and default; a group builds its object before the command runs; errors name the flag."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from modelupdate.cli import app
from modelupdate.cli.groups import (
    FIRST,
    NESTED,
    GroupedCommand,
    OptionGroup,
    build,
    option_of,
    options_of,
    with_options,
)
from modelupdate.cli.options import EVALUATION, METHOD, TRAINING, TrainingRun
from modelupdate.config import DataConfig, EnsembleConfig, EvalConfig, TrainConfig
from modelupdate.errors import ConfigError
from modelupdate.fields import field_error, flag, flag_of, flagged_fields, option_name
from modelupdate.methods import UpdateConfig


def test_an_option_takes_its_flag_help_and_default_from_the_field():
    option = option_of(TrainConfig, "epochs")
    assert (option.param, option.flag.name, option.default, option.flag.text) == (
        "epochs", "--epochs", 2, "Training epochs.")
    hflip = option_of(DataConfig, "hflip")  # a default the field's None cannot say: shown in the help
    assert hflip.flag.text == ("Horizontal flip probability; 0: none [default: the dataset's: 0.5, but 0 for mnist "
                               "and synthetic].")


def test_a_negated_flag_turns_its_field_off():
    option = option_of(DataConfig, "augment")
    assert (option.param, option.default) == ("no_augment", False)
    assert option.value(True) is False and option.value(False) is True


def test_a_field_typed_otherwise_is_converted_once():
    data_dir = option_of(DataConfig, "data_dir")
    assert data_dir.typed_as == Path | None and data_dir.value(Path("/data/x")) == "/data/x"
    assert data_dir.value(None) is None
    arch_args = option_of(TrainConfig, "arch_args")  # a dict field, typed as JSON text
    assert arch_args.default == "{}" and arch_args.value('{"width": 8}') == {"width": 8}
    with pytest.raises(ConfigError, match=r"^--arch-args: expected a JSON object"):
        arch_args.value("[1]")


def test_a_training_run_holds_every_flagged_field_of_its_configs_in_declaration_order():
    params = [o.param for o in TRAINING.options]
    expected = (["out"] + [option_of(DataConfig, f.name).param for f in flagged_fields(DataConfig)]
                + [option_of(TrainConfig, f.name).param for f in flagged_fields(TrainConfig)]
                + ["resume", "quiet", "tensorboard", "mlflow"])
    assert params == expected and len(set(params)) == len(params)


def test_build_makes_the_nested_configs_from_the_values():
    values = {o.param: o.default for o in TRAINING.options} | {"epochs": 7, "no_augment": True, "data": "mnist",
                                                               "data_dir": Path("d")}
    run = build(TrainingRun, values)
    assert run.train.epochs == 7 and run.data == DataConfig(name="mnist", data_dir="d", augment=False)
    assert run.train == TrainConfig(epochs=7) and run.out == Path("model.safetensors")


def test_the_training_config_is_checked_before_the_data_config():
    values = {o.param: o.default for o in TRAINING.options} | {"epochs": 0, "hflip": 2.0}
    with pytest.raises(ConfigError, match="^--epochs: "):
        build(TrainingRun, values)


def test_the_method_group_is_update_configs_fields():
    assert [o.field for o in METHOD.options] == [f.name for f in dataclasses.fields(UpdateConfig)]
    values = {o.param: o.default for o in METHOD.options} | {"method": "kd", "exclude_target": True}
    assert METHOD.make(values) == UpdateConfig(method="kd", exclude_target=True)


def test_the_evaluation_options_are_typed_as_the_configs_fields_are():
    for option in EVALUATION.options:
        source = next(cls for cls in (EvalConfig, DataConfig) if option.field in cls.__dataclass_fields__)
        assert option.flag.name == flag_of(source, option.field).name
    assert option_of(DataConfig, "image_size").flag.help != next(
        o for o in EVALUATION.options if o.field == "image_size").flag.help  # its own: the checkpoint's size


def test_an_ensemble_is_members_trained_apart_or_snapshots_never_both():
    assert (EnsembleConfig().count, EnsembleConfig(members=2).count, EnsembleConfig(snapshots=3).count) == (4, 2, 3)
    with pytest.raises(ConfigError, match=r"^--snapshots: replaces --members; give one of them$"):
        EnsembleConfig(members=2, snapshots=3)


def test_an_error_about_a_field_names_its_flag_or_its_class():
    with pytest.raises(ConfigError, match=r"^--epochs: expected a positive integer, got 0$"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"^--crop: expected one of pad, random-resized, none, got 'x'$"):
        DataConfig(crop="x")
    with pytest.raises(ConfigError, match=r"^TrainConfig\.momentum: expected a value in \[0, 1\), got 1\.5$"):
        TrainConfig(momentum=1.5)  # no command has an option for it
    assert option_name(UpdateConfig, "fd_a") == "--fd-a"
    assert str(field_error(UpdateConfig(tau=2.0), "tau", "expected x")) == "--tau: expected x, got 2.0"


def test_every_flagged_field_is_an_option_of_a_command():
    commands = typer.main.get_command(app).commands
    flags = {opt for command in commands.values() for p in command.params for opt in p.opts}
    for cls in (DataConfig, TrainConfig, EvalConfig, UpdateConfig, EnsembleConfig):
        for f in flagged_fields(cls):
            assert f.metadata["flag"].name in flags, f"{cls.__name__}.{f.name}"


# --------------------------------------------------------------------------- the command class, on a small app


@dataclass
class Sample:
    size: int = field(default=3, metadata=flag("--size", "How many."))
    name: str = field(default="a", metadata=flag("--label", "What it is called."))

    def __post_init__(self) -> None:
        if self.size < 1:
            raise field_error(self, "size", "expected a positive number")


@dataclass
class Holder:
    sample: Sample = field(default_factory=Sample, metadata=NESTED)
    loud: bool = field(default=False, metadata=flag("--loud", "Shout.", short="-l"))


SAMPLE = OptionGroup("sample", options_of(Holder), lambda values: build(Holder, values))


@pytest.fixture
def small_app():
    seen = []
    small = typer.Typer(add_completion=False, rich_markup_mode=None)

    @with_options(SAMPLE, after="first")
    def command(ctx: typer.Context, first: str = typer.Option("x", "--first"), last: int = typer.Option(0, "--last")):
        seen.append((first, last, SAMPLE.of(ctx)))

    small.command("go", cls=GroupedCommand)(command)
    small.command("other", cls=GroupedCommand)(lambda: None)  # two commands: "go" is a subcommand
    return small, seen


def test_a_command_gets_its_group_built_and_its_own_options(small_app):
    small, seen = small_app
    result = CliRunner().invoke(small, ["go", "--size", "5", "-l", "--last", "2"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", 2, Holder(Sample(size=5), loud=True))]


def test_the_groups_options_stand_after_the_option_named(small_app):
    small, _ = small_app
    command = typer.main.get_command(small).commands["go"]
    assert [p.name for p in command.params] == ["first", "size", "label", "loud", "last"]
    help_text = CliRunner().invoke(small, ["go", "--help"]).output
    assert help_text.index("--first") < help_text.index("--size") < help_text.index("--loud") < help_text.index(
        "--last")
    assert "How many.  [default: 3]" in help_text


def test_a_bad_value_is_one_line_naming_the_flag_before_the_command_runs(small_app):
    small, seen = small_app
    result = CliRunner().invoke(small, ["go", "--size", "0"])
    assert result.exit_code == 2 and seen == []
    assert "error: --size: expected a positive number, got 0" in result.output


def test_an_option_given_twice_in_a_command_is_refused_when_it_is_made():
    clash = typer.Typer(add_completion=False)

    @with_options(SAMPLE)
    def command(ctx: typer.Context, size: int = typer.Option(1, "--size")):
        pass

    clash.command("go", cls=GroupedCommand)(command)
    clash.command("other", cls=GroupedCommand)(lambda: None)
    with pytest.raises(TypeError, match="size given twice"):
        typer.main.get_command(clash).commands["go"]


@dataclass
class Count:
    count: int = field(default=1, metadata=flag("--count", "How often."))

    def __post_init__(self) -> None:
        if self.count < 1:
            raise field_error(self, "count", "expected a positive number")


COUNT = OptionGroup("count", options_of(Count), lambda values: build(Count, values))


def test_groups_are_built_in_the_order_listed_wherever_help_shows_them():
    small = typer.Typer(add_completion=False, rich_markup_mode=None)

    @with_options(SAMPLE)
    @with_options(COUNT, after=FIRST)
    def command(ctx: typer.Context, last: int = typer.Option(0, "--last")):
        pass

    small.command("go", cls=GroupedCommand)(command)
    small.command("other", cls=GroupedCommand)(lambda: None)
    params = [p.name for p in typer.main.get_command(small).commands["go"].params]
    assert params == ["count", "last", "size", "label", "loud"]
    result = CliRunner().invoke(small, ["go", "--count", "0", "--size", "0"])
    assert result.exit_code == 2 and "error: --size: expected a positive number, got 0" in result.output


def test_a_variadic_argument_is_labelled_by_its_element_type():
    result = CliRunner().invoke(app, ["compare", "--help"])
    assert "CANDIDATE <path>..." in result.output
