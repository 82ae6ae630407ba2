"""--tensorboard: the JSONL log's step and epoch records, the same numbers, in TensorBoard event files."""

from __future__ import annotations

import json

import pytest

from modelupdate.tracking import scalars, tag_prefix

TINY = ["--data", "synthetic", "--arch", "tiny", "--epochs", "2", "--batch-size", "64", "--device", "cpu", "--quiet"]


def test_scalars_keep_finite_numbers_only():
    event = {"type": "step", "loss": 0.5, "lr": 0.1, "grad_norm": None, "ok": True, "x": float("nan"), "n": 3}
    assert scalars(event, {"type"}) == {"loss": 0.5, "lr": 0.1, "n": 3.0}
    assert tag_prefix({"member_label": "member 2/4"}) == "member2/" and tag_prefix({}) == ""


def test_tensorboard_gets_the_logged_records(tmp_path, run_cli):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", *TINY, "--out", out, "--tensorboard", tmp_path / "tb")
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("type") == "epoch"]
    steps = [r for r in records if r.get("type") == "step"]
    assert len(epochs) == 2 and steps
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    train_loss = events.Scalars("epoch/train_loss")
    assert [e.step for e in train_loss] == [r["epoch"] for r in epochs]
    assert [e.value for e in train_loss] == pytest.approx([r["train_loss"] for r in epochs], rel=1e-6)
    loss = events.Scalars("step/loss")
    assert [e.step for e in loss] == [r["global_step"] for r in steps]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in steps], rel=1e-6)


def test_missing_tensorboard_is_one_line_before_training(tmp_path, run_cli, monkeypatch):
    fake = tmp_path / "site"
    (fake / "tensorboard").mkdir(parents=True)
    (fake / "tensorboard" / "__init__.py").write_text("raise ImportError('no tensorboard here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    code, _, err = run_cli("train", *TINY, "--out", tmp_path / "m.safetensors", "--tensorboard", tmp_path / "tb")
    assert code == 2 and err.strip() == "error: --tensorboard: needs the tensorboard package; pip install " \
        "'modelupdate[tracking]' (or tensorboard)"
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "tb").exists()


def test_a_file_as_the_tensorboard_folder_is_refused_before_training(tmp_path, run_cli):
    (tmp_path / "taken").write_text("x")
    code, _, err = run_cli("train", *TINY, "--out", tmp_path / "m.safetensors", "--tensorboard", tmp_path / "taken")
    assert code == 2 and "is a file; expected a folder" in err and not (tmp_path / "m.safetensors").exists()
