"""Resume after a kill, through real subprocesses (`python -m modelupdate ...`).

Each test runs a training command twice at once: once uninterrupted, once killed with
SIGKILL as soon as its first mid-epoch resumable state is on disk; the killed run is
then rerun with ``--resume``. Under ``--deterministic`` on CPU the final weights must be
bitwise equal. SIGINT (Ctrl-C) is checked on a resumed run: exit 130, the state is saved
at the step reached, and the message says to rerun with ``--resume``.

Sizes: the default synthetic data (1843 training samples), batch 64 -> 28 steps per epoch, a
state saved every 5 steps. Each process uses one thread (OMP_NUM_THREADS=1): two runs go side
by side on two cores, and an over-subscribed CPU does not slow them with spinning threads.
Most of a run's few seconds is importing torch.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modelupdate.config import DataConfig, TrainConfig

COMMON = ["--epochs", "2", "--batch-size", "64", "--checkpoint-every", "5",
          "--deterministic", "--device", "cpu", "--quiet"]
TIMEOUT = 300  # seconds; generous: the suite may share two cores with other work


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MODELUPDATE_DEBUG", None)
    env["COLUMNS"] = "200"
    env["OMP_NUM_THREADS"] = "1"
    return env


def start(args: list, log: Path) -> subprocess.Popen:
    """``python -m modelupdate ARGS`` in the background; stdout and stderr go to ``log``."""
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "modelupdate", *map(str, args)], stdout=f,
                                stderr=subprocess.STDOUT, env=cli_env())


def finish(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    rc = proc.wait(timeout=TIMEOUT)
    return rc, log.read_text()


def progress_of(state: Path) -> dict:
    """The JSON progress in a training-state file's header (without loading its tensors)."""
    data = state.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(json.loads(data[8:8 + n])["__metadata__"]["progress"])


def signal_when(proc: subprocess.Popen, condition, sig: int, log: Path) -> None:
    """Poll (every 5 ms) until ``condition()`` holds, then send ``sig``; fail if the run ends first."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be interrupted:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the resumable state")
        time.sleep(0.005)
    proc.send_signal(sig)


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert sorted(ta) == sorted(tb)
    different = [k for k in ta if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
    assert not different, f"tensors differ after resume: {different}"


def kill_and_resume(tmp_path: Path, command: list, state_name: str, *, after_kill=None,
                    sigint_on_resume: bool = False) -> tuple[Path, Path, str]:
    """Run ``command`` uninterrupted (into full/) and, at the same time, killed (-9) then resumed
    (into cut/). Returns the two outputs and the log of the final resumed run."""
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir()
    cut_dir.mkdir()
    full_out, cut_out = full_dir / "m.safetensors", cut_dir / "m.safetensors"
    state = cut_dir / state_name
    full = start([*command, "--out", full_out], full_dir / "run.log")
    killed = start([*command, "--out", cut_out], cut_dir / "killed.log")
    signal_when(killed, state.exists, signal.SIGKILL, cut_dir / "killed.log")
    assert killed.wait(timeout=TIMEOUT) == -signal.SIGKILL
    assert not cut_out.exists()
    progress = progress_of(state)
    assert progress["step"] > 0, f"killed mid-epoch (the first save is after step 5 of 28): {progress}"
    if after_kill is not None:
        after_kill(cut_dir)

    if sigint_on_resume:  # Ctrl-C once the resumed run has saved a state further along
        first = progress["step"]
        interrupted = start([*command, "--out", cut_out, "--resume"], cut_dir / "sigint.log")

        def moved_on() -> bool:
            try:
                p = progress_of(state)
            except (OSError, ValueError, KeyError, struct.error):
                return False  # between the rename and the read: look again
            return (p["epoch"], p["step"]) > (progress["epoch"], first)

        signal_when(interrupted, moved_on, signal.SIGINT, cut_dir / "sigint.log")
        rc, text = finish(interrupted, cut_dir / "sigint.log")
        assert rc == 130, text
        assert "Traceback" not in text
        assert "rerun the same command with --resume" in text.splitlines()[-1]
        assert state.exists() and not cut_out.exists()
        saved = progress_of(state)
        assert (saved["epoch"], saved["step"]) > (progress["epoch"], first), "saved at the step reached"

    resumed = start([*command, "--out", cut_out, "--resume"], cut_dir / "resumed.log")
    rc, resumed_log = finish(resumed, cut_dir / "resumed.log")
    assert rc == 0, resumed_log
    assert "resuming from epoch" in resumed_log
    rc, text = finish(full, full_dir / "run.log")
    assert rc == 0, text
    assert not state.exists(), "the state is removed once the run is complete"
    return full_out, cut_out, resumed_log


def test_train_killed_mid_epoch_resumes_to_identical_weights(tmp_path):
    command = ["train", "--arch", "cnn-s", "--arch-args", '{"width": 8}', *COMMON]
    full, resumed, _ = kill_and_resume(tmp_path, command, "m.state.safetensors")
    assert_same_weights(full, resumed)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, single_thread) -> Path:
    """A 2-member `tiny` ensemble on the synthetic data the CLI uses by default (library, 1 epoch)."""
    from modelupdate.workflows.ensemble_train import ensemble_train

    out = tmp_path_factory.mktemp("reference") / "ref.safetensors"
    with single_thread():
        ensemble_train(DataConfig(train_subset="256"), TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu"),
                       out, 2)
    return out


def test_ldi_train_killed_then_interrupted_resumes_to_identical_weights(tmp_path, reference):
    """SIGKILL mid-epoch, then Ctrl-C (SIGINT) on the resumed run, then a second resume."""
    command = ["ldi-train", "--method", "elodi", "--reference", reference, "--arch", "tiny", *COMMON]
    full, resumed, _ = kill_and_resume(tmp_path, command, "m.state.safetensors", sigint_on_resume=True)
    assert_same_weights(full, resumed)
    assert json.loads(load_meta(resumed)["update"])["reference_sha256"]


def load_meta(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])["__metadata__"]


def test_ensemble_train_killed_in_member_2_keeps_member_1(tmp_path):
    command = ["ensemble-train", "-m", "2", "--arch", "tiny", *COMMON]
    kept = {}

    def member_1_is_done(cut_dir: Path) -> None:
        member = cut_dir / "m.members" / "member0.safetensors"
        assert member.exists(), "member 1 was finished before the kill"
        kept["bytes"], kept["mtime"] = member.read_bytes(), member.stat().st_mtime_ns

    full, resumed, log = kill_and_resume(tmp_path, command, "m.members/member1.state.safetensors",
                                         after_kill=member_1_is_done)
    assert "member 1/2: kept" in log and "member 2/2: resuming from epoch 1" in log
    assert_same_weights(full, resumed)
    assert not (tmp_path / "cut" / "m.members").exists(), "the members folder is removed once assembled"
    member_1 = {k[len("member0."):]: v for k, v in load_file(str(resumed)).items() if k.startswith("member0.")}
    from safetensors.torch import load as st_load

    assert all(torch.equal(v, st_load(kept["bytes"])[k]) for k, v in member_1.items()), "member 1 was not retrained"


@pytest.mark.parametrize("command, left_over", [
    (["train"], "m.state.safetensors"),
    (["ensemble-train", "-m", "2"], "m.members"),
], ids=["train", "ensemble-train"])
def test_a_left_over_state_is_refused_without_resume_and_kept(tmp_path, command, left_over):
    """In-process (fast): the check runs before any data is loaded."""
    from typer.testing import CliRunner

    from modelupdate.cli import app

    thing = tmp_path / left_over
    if left_over.endswith(".safetensors"):
        thing.write_bytes(b"state of an interrupted run")
    else:
        thing.mkdir()
    result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "m.safetensors"), "--quiet"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "--resume" in result.stderr and str(thing) in result.stderr and "Traceback" not in result.stderr
    assert thing.exists() and sorted(p.name for p in tmp_path.iterdir()) == [left_over]


def test_ldi_train_with_mixup_and_cutmix_killed_mid_epoch_resumes_to_identical_weights(tmp_path, reference):
    command = ["ldi-train", "--method", "elodi", "--reference", reference, "--arch", "tiny", "--mixup", "0.4",
               "--cutmix", "1.0", *COMMON]
    full, resumed, _ = kill_and_resume(tmp_path, command, "m.state.safetensors")
    assert_same_weights(full, resumed)
    assert json.loads(load_meta(resumed)["config"])["train"]["mixup"] == 0.4


def test_train_with_ema_killed_mid_epoch_resumes_to_identical_weights(tmp_path):
    command = ["train", "--arch", "cnn-s", "--arch-args", '{"width": 8}', "--ema-epochs", "0.5", *COMMON]
    full, resumed, _ = kill_and_resume(tmp_path, command, "m.state.safetensors")
    assert_same_weights(full, resumed)
