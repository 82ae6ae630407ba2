"""Training faults: divergence stops the run with the step and a hint and keeps
the last good state; a write error (disk full) leaves the previous file intact and no temp files.

In-process through the CLI (typer's CliRunner) on the default synthetic data with the `tiny` arch.
NaN from a chosen step in the engine is covered in tests/test_engine.py
(test_nan_loss_raises_with_the_step, test_nan_loss_never_overwrites_the_last_good_state).
"""

from __future__ import annotations

import errno
import io
import os

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from modelupdate import atomic
from modelupdate.checkpoint import read_safetensors, save_model
from modelupdate.cli import app
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import load_dataset
from modelupdate.engine import fit, make_optimizer
from modelupdate.errors import OutputError, TrainingDiverged
from modelupdate.events import jsonl
from modelupdate.models import build_model
from modelupdate.runtime import Runtime
from modelupdate.train_state import load_train_state

FAST = ["--arch", "tiny", "--epochs", "2", "--device", "cpu", "--quiet"]  # 14 steps of 128 per epoch


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())


# --------------------------------------------------------------------------- divergence


def test_huge_lr_stops_with_the_step_and_keeps_a_finite_state(tmp_path):
    """--lr 1e6: the loss stays finite for a few steps while the weights overflow. The state saved
    after each step (--checkpoint-every 1) must never hold those weights: the run stops (exit 3),
    and the last state is finite and loads. (Resuming from it with a lower --lr is the user's call:
    its momentum is already huge, and here it diverges again.)"""
    out = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    code, err = invoke("train", *FAST, "--lr", "1e6", "--checkpoint-every", "1", "--out", out)
    assert code == 3, err
    line = error_line(err)
    assert "became NaN or Inf by epoch 1, step" in line or "loss became nan at epoch 1, step" in line
    assert f"the last good state is in {state}" in line and "try a lower --lr (now 1e+06)" in line
    assert not out.exists()
    tensors, meta = read_safetensors(state)
    assert all_finite(tensors), [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    data = load_dataset(DataConfig())
    model = build_model("tiny", 4, data.info.input_shape)
    progress = load_train_state(state, model, make_optimizer(model, TrainConfig(arch="tiny", lr=1e6)))
    assert progress["epoch"] == 0 and progress["step"] >= 1


def test_inf_loss_stops_the_run_with_the_step(tmp_path):
    data = load_dataset(DataConfig(train_subset="512"))  # 4 steps of 128 per epoch
    calls = {"n": 0}

    def objective(logits, batch):
        loss = F.cross_entropy(logits.float(), batch.targets)
        calls["n"] += 1
        return (loss * float("inf") if calls["n"] == 4 else loss), {}  # the last step of epoch 1

    state = tmp_path / "s.safetensors"
    cfg = TrainConfig(arch="tiny", epochs=2, device="cpu", checkpoint_every=2)
    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged) as err:
        fit(build_model("tiny", 4, data.info.input_shape), data, cfg, Runtime(torch.device("cpu")),
            objective=objective, state_path=state)
    assert "loss became inf at epoch 1, step 4" in str(err.value)
    assert f"the last good state is in {state}" in str(err.value)
    tensors, meta = read_safetensors(state)
    assert '"step": 2' in meta["progress"] and all_finite(tensors)


# --------------------------------------------------------------------------- disk full


class DiskFullAfter:
    """``os`` as modelupdate.atomic sees it, but for ``fdopen``: the first ``ok`` files are written;
    in the next ones, half the bytes go to disk and then the write fails with ENOSPC."""

    def __init__(self, ok: int):
        self.ok, self.opened = ok, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode="r", *args, **kwargs):
        f = os.fdopen(fd, mode, *args, **kwargs)
        self.opened += 1
        return f if self.opened <= self.ok else _FullFile(f)


class _FullFile(io.RawIOBase):
    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(bytes(data[: len(data) // 2]))
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        self.f.close()
        super().close()


def temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_while_saving_a_model_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    data = load_dataset(DataConfig(train_subset="128"))
    from modelupdate.workflows.common import model_meta

    meta = model_meta(data.info, DataConfig(), TrainConfig(arch="tiny"), {})
    torch.manual_seed(0)
    save_model(path, build_model("tiny", 4, data.info.input_shape), meta)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    monkeypatch.setattr(atomic, "os", DiskFullAfter(ok=0))
    torch.manual_seed(1)
    with pytest.raises(OutputError, match=f"{path}: cannot write \\(No space left on device\\)"):
        save_model(path, build_model("tiny", 4, data.info.input_shape), meta)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert temp_files(tmp_path) == []


def test_disk_full_during_training_keeps_the_previous_state(tmp_path, monkeypatch):
    """The 3rd state save fails: exit 2 naming the file and the cause; the 2nd save is intact."""
    out = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    kept = {}
    real_write = atomic.atomic_write_bytes

    def remember(path, data):  # the bytes of the last save that succeeded
        real_write(path, data)
        kept["bytes"] = data

    monkeypatch.setattr("modelupdate.train_state.atomic_write_bytes", remember)
    monkeypatch.setattr(atomic, "os", DiskFullAfter(ok=2))
    code, err = invoke("train", *FAST, "--checkpoint-every", "3", "--out", out)
    assert code == 2, err
    line = error_line(err)
    assert f"{state}: cannot write (No space left on device)" in line
    assert state.read_bytes() == kept["bytes"]
    assert '"step": 6' in read_safetensors(state)[1]["progress"]
    assert not out.exists() and temp_files(tmp_path) == []


def test_log_write_error_is_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jsonl, "open", full, raising=False)  # the training log's writer
    out = tmp_path / "m.safetensors"
    code, err = invoke("train", *FAST, "--train-subset", "256", "--out", out)
    assert code == 2, err
    assert "m.log.jsonl: cannot write the training log (No space left on device)" in error_line(err)
    assert not out.exists()
