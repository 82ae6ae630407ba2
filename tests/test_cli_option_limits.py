"""Options and inputs outside what is accepted, through the CLI (real subprocesses): each is refused before
any work with exit 2 and one ``error:`` line naming the option, no traceback, no torch warning, and nothing
written. Grouped by mechanism: the output and tracking paths, the device, the data options' ranges, integer
options beyond their range, a damaged resumable state, checks that need the data (before any file is
written), model building, and the provenance of prediction files.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from modelupdate.predictions import Predictions, write_predictions

TRAIN = ["train", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--quiet"]
ENSEMBLE = ["ensemble-train", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--quiet"]
BEYOND_INT64 = "99999999999999999999"


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder): what a refused command must leave."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def refused(result: tuple[int, str, str], *parts: str) -> str:
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert "Traceback" not in err and "Warning" not in err, err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture
def cli_in(run_cli, tmp_path):
    """``cli_in(*args, parts=...)``: run in an empty folder, assert the refusal and that nothing was written."""

    def runner(*args, parts: tuple[str, ...], folder: Path = tmp_path) -> str:
        before = listing(folder)
        line = refused(run_cli(*args, cwd=folder), *parts)
        assert listing(folder) == before, "a refused command wrote or changed files"
        return line

    return runner


# --------------------------------------------------------------------------- output and tracking paths


@pytest.mark.parametrize("out", ["", ".", ".."])
def test_out_naming_a_folder_is_refused(cli_in, out):
    cli_in(*TRAIN, "--out", out, parts=("--out", "names a folder"))


@pytest.mark.parametrize("option, value", [
    ("--tensorboard", ""), ("--mlflow", ""),  # '' would log into the current folder
    ("--tensorboard", "/proc/tb"), ("--mlflow", "/proc/mlruns"),  # a folder that takes no new entry
])
def test_tracking_folder_that_cannot_be_one_is_refused(cli_in, option, value):
    if value.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("needs Linux's /proc")
    if value and not _has(option.removeprefix("--")):  # '' is refused before the package is looked for
        pytest.skip(f"needs the {option.removeprefix('--')} package")
    cli_in(*TRAIN, option, value, "--out", "m.safetensors", parts=(option,))


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_members_path_that_is_a_file_is_refused_on_resume(cli_in, tmp_path):
    (tmp_path / "e.members").write_text("not a folder")
    cli_in(*ENSEMBLE, "-m", "2", "--out", "e.safetensors", "--resume", parts=("e.members", "not a folder"))


# --------------------------------------------------------------------------- the device


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps_is_refused(cli_in):
    cli_in(*TRAIN, "--device", "mps", "--out", "m.safetensors", parts=("--device mps", "no MPS"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(cli_in):
    cli_in(*TRAIN, "--device", "cuda", "--out", "m.safetensors", parts=("--device cuda", "no CUDA"))


def test_a_device_torch_knows_but_training_cannot_use_is_refused(cli_in):
    cli_in(*TRAIN, "--device", "meta", "--out", "m.safetensors", parts=("--device", "'meta'"))


# --------------------------------------------------------------------------- data options' ranges


@pytest.mark.parametrize("mean, std, option", [
    ("nan", "0.5", "--mean"), ("inf", "0.5", "--mean"), ("1e309", "0.5", "--mean"), ("2", "0.5", "--mean"),
    ("0.5", "1e-320", "--std"), ("0.5", "nan", "--std"), ("0.5", "5", "--std"),
], ids=["mean-nan", "mean-inf", "mean-1e309", "mean-2", "std-1e-320", "std-nan", "std-5"])
def test_normalisation_outside_its_range_is_refused_before_training(cli_in, mean, std, option):
    """Not "loss became nan ... try a lower --lr" after an epoch: the option, at once."""
    cli_in(*TRAIN, "--mean", mean, "--std", std, "--out", "m.safetensors", parts=(option, "expected"))


@pytest.mark.parametrize("value", ["", "abc", "0", "-3", "1.5"])
def test_train_subset_that_selects_nothing_sensible_is_refused(cli_in, value):
    cli_in(*TRAIN, "--train-subset", value, "--out", "m.safetensors", parts=("--train-subset",))


def test_workers_beyond_their_range_are_refused(cli_in):
    cli_in(*TRAIN, "--workers", "100000", "--out", "m.safetensors", parts=("--workers", "[0, 64]"))


def test_image_size_larger_than_an_image_may_be_is_refused(cli_in, tmp_path):
    cli_in(*TRAIN, "--data", f"imagefolder:{tmp_path}", "--image-size", "100000", "--out", "m.safetensors",
           parts=("--image-size", "--max-image-pixels"))


# --------------------------------------------------------------------------- integers beyond their range


@pytest.mark.parametrize("command, option", [
    (TRAIN, "--batch-size"), (TRAIN, "--image-size"), (TRAIN, "--checkpoint-every"), (TRAIN, "--workers"),
    (TRAIN, "--epochs"), (TRAIN, "--seed"), (ENSEMBLE, "--members"), (ENSEMBLE, "--snapshots"),
    (["ldi-train", "--arch", "tiny", "--epochs", "1", "--device", "cpu"], "--topk"),
], ids=lambda v: v if isinstance(v, str) else v[0])
def test_integer_beyond_int64_is_refused_naming_the_option(cli_in, command, option):
    cli_in(*command, option, BEYOND_INT64, "--out", "m.safetensors", parts=(option,))


# --------------------------------------------------------------------------- checks that need the data


def test_ensemble_seed_overflowing_for_a_later_member_is_refused_before_member_1(cli_in):
    cli_in(*ENSEMBLE, "--seed", str(2**63 - 1), "--out", "e.safetensors", parts=("--seed",))


def test_more_snapshots_than_steps_are_refused_before_the_members_folder(cli_in):
    cli_in(*ENSEMBLE, "--snapshots", "1000", "--out", "e.safetensors", parts=("--snapshots 1000", "steps"))


def test_topk_beyond_the_class_count_is_refused_before_training(cli_in, tmp_path, trained_model):
    old = tmp_path / "old.safetensors"
    shutil.copy(trained_model, old)
    cli_in("ldi-train", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--method", "ldi-old", "--old", old,
           "--topk", "9", "--out", "m.safetensors", parts=("--topk 9", "4 classes"))


def test_sync_bn_without_cuda_under_torchrun_is_refused_before_any_work(monkeypatch):
    """Said when the runtime is set up (before ensemble-train's members folder), not when training starts."""
    from modelupdate.config import TrainConfig
    from modelupdate.errors import ConfigError
    from modelupdate.runtime import setup_runtime

    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group is joined
    with pytest.raises(ConfigError, match="--sync-bn: SyncBatchNorm needs CUDA devices, not cpu"):
        setup_runtime(TrainConfig(arch="tiny", device="cpu", sync_bn=True))


# --------------------------------------------------------------------------- model building


def test_zero_width_is_one_line_without_torch_warnings(cli_in):
    cli_in(*TRAIN, "--arch-args", '{"width": 0}', "--out", "m.safetensors",
           parts=("--arch tiny", '{"width": 0}', "no elements"))


def test_import_for_inputs_too_small_for_the_model_is_one_line(cli_in, tmp_path):
    from safetensors.torch import save_file

    from modelupdate.models import build_model

    save_file(build_model("cnn-s", 4, (1, 12, 12)).state_dict(), str(tmp_path / "w.safetensors"))
    cli_in("import", "--arch", "cnn-s", "--weights", "w.safetensors", "--classes", "a,b,c,d", "--input-shape",
           "1,1,1", "--mean", "0.5", "--std", "0.5", "--out", "i.safetensors", parts=("--arch cnn-s", "[1, 1, 1]"))


# --------------------------------------------------------------------------- a damaged resumable state

RESUMED = ["train", "--arch", "tiny", "--epochs", "1", "--batch-size", "64", "--checkpoint-every", "1",
           "--device", "cpu", "--quiet", "--out", "m.safetensors", "--resume"]


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    """A folder holding a run of RESUMED's recipe stopped mid-epoch: its resumable state and log."""
    from modelupdate.config import DataConfig, TrainConfig
    from modelupdate.workflows.train import train

    folder = tmp_path_factory.mktemp("interrupted")

    def stop_at_first_step_record(event: dict) -> None:
        if event.get("type") == "step":
            raise _Stop

    cfg = TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu", checkpoint_every=1)
    with pytest.raises(_Stop):
        train(DataConfig(), cfg, folder / "m.safetensors", on_event=stop_at_first_step_record)
    assert (folder / "m.state.safetensors").exists()
    return folder


def with_progress(state: Path, **changes) -> None:
    """Rewrite the JSON progress in ``state``'s safetensors header (the tensors stay as they are)."""
    data = state.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    progress = json.loads(header["__metadata__"]["progress"]) | changes
    header["__metadata__"]["progress"] = json.dumps(progress)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    state.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


@pytest.mark.parametrize("field, value", [
    ("epoch", -1), ("epoch", "0"), ("step", "3"), ("step", -2), ("history", {"a": 1}),
    ("grad_scaler", "scale"), ("epoch_loss_sum", "nan"), ("epoch_loss_count", 1.5), ("seconds", -1),
], ids=lambda v: str(v))
def test_a_damaged_state_is_refused_naming_the_field(cli_in, interrupted_run, tmp_path, field, value):
    for path in interrupted_run.iterdir():
        shutil.copy(path, tmp_path / path.name)
    with_progress(tmp_path / "m.state.safetensors", **{field: value})
    cli_in(*RESUMED, parts=("m.state.safetensors", "damaged", field))


def test_an_intact_state_still_resumes(run_cli, interrupted_run, tmp_path):
    for path in interrupted_run.iterdir():
        shutil.copy(path, tmp_path / path.name)
    code, _, err = run_cli(*RESUMED, cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "m.safetensors").exists() and not (tmp_path / "m.state.safetensors").exists()


# --------------------------------------------------------------------------- provenance of prediction files

IDS = np.arange(6)
TARGETS = np.array([0, 1, 2, 0, 1, 2])


def predictions_file(path: Path, preds: list[int], **meta: str) -> Path:
    write_predictions(path, Predictions.from_arrays(IDS, TARGETS, preds=np.array(preds), num_classes=3, meta=meta))
    return path


@pytest.mark.parametrize("command", ["flip-report", "compare"])
@pytest.mark.parametrize("old_meta, new_meta, what", [
    ({"dataset": "fashion-mnist", "split": "test"}, {"dataset": "mnist", "split": "test"}, "dataset"),
    ({"dataset": "mnist", "split": "val"}, {"dataset": "mnist", "split": "test"}, "split"),
    ({"dataset": "mnist", "dataset_fingerprint": "sha256:0000000000000000"},
     {"dataset": "mnist", "dataset_fingerprint": "sha256:1111111111111111"}, "fingerprint"),
], ids=["dataset", "split", "fingerprint"])
def test_inputs_made_on_other_data_are_refused_unless_allowed(run_cli, cli_in, tmp_path, command, old_meta,
                                                              new_meta, what):
    old = predictions_file(tmp_path / "old.npz", [0, 1, 2, 0, 1, 1], **old_meta)
    new = predictions_file(tmp_path / "new.npz", [0, 1, 2, 0, 2, 2], **new_meta)
    args = ["flip-report", "--old", old, "--new", new] if command == "flip-report" else \
        ["compare", new, "--old", old]
    cli_in(*args, "--json", "r.json", parts=(what, "--allow-other-data"))

    code, _, err = run_cli(*args, "--json", "r.json", "--allow-other-data", cwd=tmp_path)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and what in lines[0] and "compared anyway" in lines[0], err
    assert (tmp_path / "r.json").exists()


def test_malformed_provenance_is_left_out_of_the_report_with_a_note(run_cli, tmp_path):
    old = predictions_file(tmp_path / "old.npz", [0, 1, 2, 0, 1, 1], checkpoint_sha256="not-a-hash",
                           dataset="mnist\x1b[31m", split="somewhere")
    new = predictions_file(tmp_path / "new.npz", [0, 1, 2, 0, 2, 2], checkpoint_sha256="ab" * 32, dataset="mnist",
                           split="test")
    code, out, err = run_cli("flip-report", "--old", old, "--new", new, "--json", "-")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "old.npz" in lines[0] and "checkpoint_sha256" in lines[0], err
    assert "\x1b" not in err
    inputs = {record["role"]: record for record in json.loads(out)["provenance"]["inputs"]}
    assert inputs["old"]["checkpoint_sha256"] is None and inputs["old"]["dataset"] is None
    assert inputs["old"]["split"] is None
    assert inputs["new"]["checkpoint_sha256"] == "ab" * 32 and inputs["new"]["dataset"] == "mnist"
