"""The command line: help for every command, `train` end to end, `info`, and one-line errors with exit codes."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from modelupdate import __version__
from modelupdate.checkpoint import load_checkpoint
from modelupdate.cli import app
from modelupdate.formats import REQUIRED_KEYS

COMMANDS = sorted(typer.main.get_command(app).commands)  # every registered command, new ones included


def assert_one_line_error(returncode: int, stderr: str, code: int = 2) -> str:
    assert returncode == code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_app_help_in_a_subprocess(run_cli):
    code, out, err = run_cli("--help")
    assert code == 0, err
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"], prog_name="modelupdate")
    assert result.exit_code == 0, result.output
    assert "Usage: modelupdate " + command in result.output


def test_version():
    code, out, _ = invoke("--version")
    assert code == 0 and out.strip() == f"modelupdate {__version__}"


def test_models_lists_the_small_cnns():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("cnn-s", "cnn-m", "resnet18", "convnext_tiny"):
        assert name in result.output


def test_train_end_to_end_with_defaults(run_cli, tmp_path):
    """`train --data synthetic` with the default arch and epochs learns: test error well below chance (75%)."""
    out = tmp_path / "old.safetensors"
    code, stdout, stderr = run_cli("train", "--data", "synthetic", "--out", out, "--quiet", "--device", "cpu")
    assert code == 0, stderr
    assert "wrote" in stdout and "test error rate" in stdout
    loaded = load_checkpoint(out)
    meta = loaded.meta
    assert meta.arch == "cnn-s" and meta.dataset == "synthetic" and meta.num_classes == 4
    assert meta.config["train"]["epochs"] == 2 and meta.config["data"]["name"] == "synthetic"
    assert meta.metrics["test_n"] == 256
    assert meta.metrics["test_error_rate"] < 0.5
    assert meta.metrics["test_correct"] == round((1 - meta.metrics["test_error_rate"]) * 256)
    log = [json.loads(line) for line in (tmp_path / "old.log.jsonl").read_text().splitlines()]
    # 14 steps an epoch: one step record (the epoch's last step), then the epoch's record
    assert [e["type"] for e in log] == ["step", "epoch", "step", "epoch", "done"]
    steps = [e for e in log if e["type"] == "step"]
    assert [e["global_step"] for e in steps] == [14, 28]
    assert all(e["grad_norm"] > 0 and math.isfinite(e["grad_norm"]) for e in steps)
    log = [e for e in log if e["type"] != "step"]
    assert [e["epoch"] for e in log[:2]] == [1, 2]
    assert log[-1]["test_error_rate"] == meta.metrics["test_error_rate"]
    assert not (tmp_path / "old.state.safetensors").exists(), "the resumable state is removed after success"
    assert "epoch 2" in stderr  # --quiet: plain per-epoch lines on stderr


def test_info_json(run_cli, trained_model):
    code, out, err = run_cli("info", trained_model, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert set(REQUIRED_KEYS) <= set(info)
    assert info["num_classes"] == 4 and info["classes"] == ["class0", "class1", "class2", "class3"]
    assert info["input_shape"] == [1, 8, 8] and info["arch"] == "tiny"
    assert info["format"] == "modelupdate-model/1"
    assert isinstance(info["metrics"]["test_error_rate"], float)


def test_info_table(trained_model):
    result = CliRunner().invoke(app, ["info", str(trained_model)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "dataset_fingerprint" in result.output and "tiny" in result.output


def invoke(*args) -> tuple[int, str, str]:
    """In-process run (fast); exit code, stdout and stderr as the user would see them."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_info_on_a_pickle_in_a_subprocess(run_cli, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    code, out, err = run_cli("info", path)
    line = assert_one_line_error(code, err)
    assert "pickle" in line and "safetensors.torch.save_file" in line and str(path) in line
    assert out == ""


def _missing(tmp_path):
    return tmp_path / "absent.safetensors", "file not found"


def _noise(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(random.Random(3).randbytes(2048))
    return path, "not a safetensors file"


def _truncated(tmp_path, source):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(source.read_bytes()[:-100])
    return path, "corrupted safetensors data"


@pytest.mark.parametrize("make", [_missing, _noise, _truncated], ids=["missing", "random-bytes", "truncated"])
def test_info_on_bad_files(tmp_path, trained_model, make):
    path, expected = make(tmp_path, trained_model) if make is _truncated else make(tmp_path)
    code, out, err = invoke("info", path)
    line = assert_one_line_error(code, err)
    assert expected in line and str(path) in line
    assert out == ""


def test_train_unknown_arch_in_a_subprocess(run_cli, tmp_path):
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "--arch", "nope", "--out", out, "--quiet")
    line = assert_one_line_error(code, err)
    assert "'nope'" in line and "cnn-s" in line and "cnn-m" in line
    assert list(tmp_path.iterdir()) == []


def test_train_into_a_missing_folder():
    code, _, err = invoke("train", "--out", "/nonexistent/dir/m.safetensors", "--quiet")
    line = assert_one_line_error(code, err)
    assert "/nonexistent/dir" in line


def test_train_bad_option_values_exit_2(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--epochs", "0", "--out", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 2 and "--epochs" in result.output
    result = runner.invoke(app, ["train", "--arch-args", "[1]", "--out", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 2 and "--arch-args" in result.output
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "m.bin")])
    assert result.exit_code == 2 and ".safetensors" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("method", "clip", "expected"), [
    ("ldi-old", None, 5.0),  # squared logit differences: clipped by default
    ("ldi-old", 0.0, 0.0),  # --clip-grad-norm 0: the user turns it off
    ("kd", None, None),  # bounded gradients: unclipped, as before
    ("kd", 2.5, 2.5),
])
def test_ldi_train_clips_gradients_per_method(tiny_data_config, tiny_train_config, trained_model, tmp_path, method,
                                              clip, expected):
    from modelupdate.methods import UpdateConfig
    from modelupdate.workflows.ldi_train import ldi_train

    out = tmp_path / "new.safetensors"
    ldi_train(tiny_data_config(), tiny_train_config(clip_grad_norm=clip), UpdateConfig(method=method), out,
              old=trained_model)
    assert load_checkpoint(out).meta.config["train"]["clip_grad_norm"] == expected


def test_clip_grad_norm_option_reaches_the_config(tmp_path):
    code, _, err = invoke("train", "--clip-grad-norm", "-1", "--out", str(tmp_path / "m.safetensors"))
    assert code == 2 and "--clip-grad-norm" in err and not (tmp_path / "m.safetensors").exists()


def test_progress_times_are_labelled_and_steady():
    from modelupdate.events.progress import clock, remaining_seconds

    assert clock(83) == "1:23" and clock(3723) == "1:02:03" and clock(None) == "?"
    # 30 of 100 steps in 60 s since this run started (a resume's earlier steps do not count)
    assert remaining_seconds(60.0, 30, 70) == pytest.approx(140.0)
    assert remaining_seconds(0.0, 0, 70) is None and remaining_seconds(5.0, 10, 0) == 0.0


def test_help_shows_readable_types():
    from typer.testing import CliRunner

    from modelupdate.cli import app

    for command in ("compare", "flip-report", "ldi-train", "import"):
        text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "<list[" not in text, command
    assert "CANDIDATE <path>..." in CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"}).output
