"""Resuming, keeping finished members and merging must not silently mix two recipes (modelupdate.recipe).

The library tests check the comparator; the CLI tests kill a real `ldi-train` / `ensemble-train` run
once its resumable state is on disk and resume it with one option (or one input model) changed: each
is refused with exit 2 and a line naming that option, and the unchanged command resumes.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from modelupdate.config import DataConfig, TrainConfig
from modelupdate.errors import ConfigError
from modelupdate.recipe import TRAIN_KEYS, check_same, option_for, recipe_of, train_recipe
from test_resume import TIMEOUT, signal_when, start


def test_same_recipe_passes_and_device_may_differ():
    saved = {"train": train_recipe(TrainConfig(epochs=3, device="cpu").to_dict())}
    check_same(saved, {"train": train_recipe(TrainConfig(epochs=3, device="auto").to_dict())}, what="s", remedy="")


@pytest.mark.parametrize("key,value", [("epochs", 5), ("lr", 0.3), ("batch_size", 64), ("seed", 7), ("arch", "cnn-m"),
                                       ("clip_grad_norm", 5.0), ("amp", "bf16"), ("optimizer", "adamw"),
                                       ("ema_epochs", 1.0)])
def test_a_changed_recipe_is_refused_naming_the_option(key, value):
    saved = {"train": train_recipe(TrainConfig(epochs=3).to_dict())}
    current = {"train": train_recipe(TrainConfig(epochs=3).to_dict() | {key: value})}
    with pytest.raises(ConfigError) as err:
        check_same(saved, current, what="--resume: s.safetensors", remedy="rerun")
    message = str(err.value)
    assert option_for(key) in message and "s.safetensors" in message and repr(value) in message
    assert "\n" not in message


def test_recipe_keys_are_train_config_fields():
    assert set(TRAIN_KEYS) <= set(TrainConfig().to_dict())


def test_an_input_model_is_named_by_its_option_and_short_sha():
    update = {"method": "elodi", "params": {"alpha": 0.5}, "reference_sha256": "a" * 64, "parent_sha256": "b" * 64}
    saved = recipe_of({}, {}, update)
    with pytest.raises(ConfigError, match=r"--reference = sha256 aaaaaaaaaaaa .* has sha256 cccccccccccc"):
        check_same(saved, recipe_of({}, {}, update | {"reference_sha256": "c" * 64}), what="s", remedy="")
    with pytest.raises(ConfigError, match="--old = sha256 bbbbbbbbbbbb"):
        check_same(saved, recipe_of({}, {}, update | {"parent_sha256": None}), what="s", remedy="")


# --------------------------------------------------------------------------- through the CLI

BASE = ["--arch", "tiny", "--epochs", "2", "--batch-size", "64", "--checkpoint-every", "2", "--device", "cpu",
        "--quiet"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, single_thread) -> dict[str, Path]:
    """An old model, two references of different seeds and another old model (library, tiny, 1 epoch)."""
    from modelupdate.workflows.ensemble_train import ensemble_train
    from modelupdate.workflows.train import train

    folder = tmp_path_factory.mktemp("models")
    data = DataConfig(train_subset="256")
    cfg = TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu")
    with single_thread():
        train(data, cfg, folder / "old.safetensors")
        train(data, TrainConfig(**(cfg.to_dict() | {"seed": 9})), folder / "old2.safetensors")
        ensemble_train(data, cfg, folder / "ref.safetensors", 2)
        ensemble_train(data, TrainConfig(**(cfg.to_dict() | {"seed": 50})), folder / "ref2.safetensors", 2)
    return {p.stem: p for p in folder.glob("*.safetensors")}


def killed_state(folder: Path, command: list, state: Path) -> None:
    """Run ``command`` and SIGKILL it as soon as ``state`` (its resumable state) is on disk."""
    proc = start(command, folder / "killed.log")
    signal_when(proc, state.exists, signal.SIGKILL, folder / "killed.log")
    proc.wait(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def elodi_state(tmp_path_factory, models) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("elodi")
    command = ["ldi-train", "--method", "elodi", "--reference", models["ref"], "--old", models["old"], *BASE]
    killed_state(folder, [*command, "--out", folder / "m.safetensors"], folder / "m.state.safetensors")
    return folder / "m.state.safetensors", command


CHANGES = {  # option -> the command with it changed
    "--alpha": ["--alpha", "0.9"], "--xi": ["--xi", "0.3"], "--p": ["--p", "1.5"], "--topk": ["--topk", "0"],
    "--weighting": ["--weighting", "softmax"], "--exclude-target": ["--exclude-target"],
    "--amp": ["--amp", "bf16"], "--optimizer": ["--optimizer", "adamw"], "--ema-epochs": ["--ema-epochs", "1"],
    "--lr": ["--lr", "0.01"],
}


def resume_with(tmp_path: Path, state: Path, command: list, run_cli) -> tuple[int, str, str]:
    shutil.copy(state, tmp_path / "m.state.safetensors")
    return run_cli(*command, "--out", tmp_path / "m.safetensors", "--resume", timeout=TIMEOUT)


@pytest.mark.parametrize("option", list(CHANGES))
def test_ldi_train_resume_with_a_changed_option_is_refused(tmp_path, elodi_state, run_cli, option):
    state, command = elodi_state
    rc, _, err = resume_with(tmp_path, state, [*command, *CHANGES[option]], run_cli)
    assert rc == 2, err
    assert f"with {option}" in err and "--resume" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("option,new", [("--reference", "ref2"), ("--old", "old2")])
def test_ldi_train_resume_with_another_input_model_is_refused(tmp_path, elodi_state, models, run_cli, option, new):
    state, command = elodi_state
    i = command.index(option)
    rc, _, err = resume_with(tmp_path, state, [*command[:i + 1], models[new], *command[i + 2:]], run_cli)
    assert rc == 2, err
    assert f"with {option} = sha256" in err and "Traceback" not in err


def test_ldi_train_resume_with_another_method_or_a_reference_cache_is_refused(tmp_path, elodi_state, models, run_cli):
    state, command = elodi_state
    rc, _, err = resume_with(tmp_path, state, ["ldi-train", "--method", "ldi-old", "--old", models["old"], *BASE],
                             run_cli)
    assert rc == 2 and "with --method = 'elodi'" in err, err
    rc, _, err = resume_with(tmp_path, state, [*command, "--reference-cache", tmp_path / "cache.safetensors"],
                             run_cli)
    assert rc == 2 and "with --reference-cache = False" in err, err


def test_ldi_train_unchanged_resume_is_accepted(tmp_path, elodi_state, run_cli):
    state, command = elodi_state
    rc, out, err = resume_with(tmp_path, state, command, run_cli)
    assert rc == 0, err
    assert (tmp_path / "m.safetensors").exists()


@pytest.fixture(scope="module")
def member_kept(tmp_path_factory) -> tuple[Path, list]:
    """An ensemble-train run killed in member 2: member 1 is finished and kept in m.members/."""
    folder = tmp_path_factory.mktemp("members")
    command = ["ensemble-train", "-m", "2", "--train-subset", "512", *BASE]
    killed_state(folder, [*command, "--out", folder / "m.safetensors"],
                 folder / "m.members" / "member1.state.safetensors")
    assert (folder / "m.members" / "member0.safetensors").exists()
    return folder / "m.members", command


@pytest.mark.parametrize("option,args", [
    ("--mean", ["--mean", "0.4", "--std", "0.2"]), ("--hflip", ["--hflip", "0.5"]),
    ("--color-jitter", ["--color-jitter", "0.2"]), ("--crop", ["--crop", "none"]),
    ("--crop-pad", ["--crop-pad", "1"]), ("--rand-augment", ["--rand-augment", "1,5"]),
])
def test_ensemble_train_keeps_no_member_trained_with_other_data_options(tmp_path, member_kept, run_cli, option,
                                                                        args):
    members, command = member_kept
    shutil.copytree(members, tmp_path / "m.members")
    (tmp_path / "m.members" / "member1.state.safetensors").unlink()
    rc, _, err = run_cli(*command, *args, "--out", tmp_path / "m.safetensors", "--resume", timeout=TIMEOUT)
    assert rc == 2, err
    assert f"with {option} = " in err and "member" in err and "Traceback" not in err
    assert not (tmp_path / "m.safetensors").exists()
