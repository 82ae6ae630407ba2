"""Untrusted files: a checkpoint never makes the tool import code, and gates cannot be misread.

Real subprocesses (`python -m modelupdate`), run from a folder holding the very module a crafted
checkpoint names, with that folder on PYTHONPATH too: importing it would succeed, and would write a
marker file. It must never be written unless the user allows the module.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from modelupdate.checkpoint import read_safetensors

FAST = ["--arch", "tiny", "--epochs", "1", "--batch-size", "64", "--train-subset", "128", "--device", "cpu",
        "--quiet"]
CPU_SYNTHETIC = ["--device", "cpu", "--data", "synthetic"]
EVIL_MODULE = '''
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("code from a checkpoint ran")

from modelupdate.models import tiny

def factory(num_classes, input_shape, **kw):
    return tiny(num_classes, input_shape, **kw)
'''


def cli(*args, cwd: Path, extra_env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("MODELUPDATE_DEBUG", None)
    env.pop("MODELUPDATE_ARCH_MODULES", None)
    env["COLUMNS"] = "300"
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env |= extra_env or {}
    proc = subprocess.run([sys.executable, "-m", "modelupdate", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env, umask=0o022)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> dict[str, Path]:
    """A real trained model, and a copy of it whose metadata names ``evil_arch:factory``."""
    work = tmp_path_factory.mktemp("trust")
    (work / "evil_arch.py").write_text(EVIL_MODULE)
    good = work / "good.safetensors"
    code, _, err = cli("train", *FAST, "--out", good, cwd=work)
    assert code == 0, err
    _, meta = read_safetensors(good)
    bad = work / "evil.safetensors"
    save_file(load_file(str(good)), str(bad), metadata=meta | {"arch": "evil_arch:factory"})
    return {"work": work, "good": good, "evil": bad, "marker": work / "MARKER"}


@pytest.mark.parametrize("command", [
    ["predict", "{evil}", "--out", "{work}/p.npz", "--device", "cpu", "--data", "synthetic"],
    ["flip-report", "--old", "{evil}", "--new", "{good}", "--device", "cpu", "--data", "synthetic"],
    ["flip-report", "--old", "{good}", "--new", "{evil}", "--device", "cpu", "--data", "synthetic"],
    ["compare", "--old", "{good}", "{evil}", "--device", "cpu", "--data", "synthetic"],
    ["ldi-train", "--method", "ldi-old", "--old", "{evil}", *FAST, "--out", "{work}/new.safetensors"],
], ids=["predict", "flip-report-old", "flip-report-new", "compare", "ldi-train-old"])
def test_a_checkpoint_naming_code_is_refused_and_the_code_never_runs(evil, command):
    before = sorted(p.name for p in evil["work"].iterdir())
    args = [c.format(**evil) for c in command]
    code, out, err = cli(*args, cwd=evil["work"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "names code module 'evil_arch'" in lines[0] and "--allow-arch-module evil_arch" in lines[0]
    assert str(evil["evil"]) in lines[0]
    assert not evil["marker"].exists(), "the module named by the file was imported"
    assert sorted(p.name for p in evil["work"].iterdir()) == before, "nothing is written"


def test_info_shows_the_metadata_without_importing(evil):
    code, out, err = cli("info", evil["evil"], "--json", cwd=evil["work"])
    assert code == 0, err
    assert json.loads(out)["arch"] == "evil_arch:factory"
    assert not evil["marker"].exists()


def test_the_user_can_allow_a_module_on_the_command_line_or_in_the_environment(evil, tmp_path):
    work = evil["work"]
    try:
        code, _, err = cli("--allow-arch-module", "evil_arch", "predict", evil["evil"], "--out", tmp_path / "a.npz",
                           *CPU_SYNTHETIC, cwd=work)
        assert code == 0, err
        assert evil["marker"].exists()
        evil["marker"].unlink()
        code, _, err = cli("predict", evil["evil"], "--out", tmp_path / "b.npz", *CPU_SYNTHETIC, cwd=work,
                           extra_env={"MODELUPDATE_ARCH_MODULES": "other,evil_arch"})
        assert code == 0, err
        # a module that only starts with the allowed name is not inside it
        evil["marker"].unlink()
        code, _, err = cli("predict", evil["evil"], "--out", tmp_path / "c.npz", *CPU_SYNTHETIC, cwd=work,
                           extra_env={"MODELUPDATE_ARCH_MODULES": "evil"})
        assert code == 2 and not evil["marker"].exists(), err
    finally:
        evil["marker"].unlink(missing_ok=True)


@pytest.fixture(scope="module")
def predictions(evil) -> dict[str, Path]:
    """The good model's predictions, as old and new (0 flips): a gate reads a known value."""
    out = evil["work"] / "good.npz"
    code, _, err = cli("predict", evil["good"], "--out", out, *CPU_SYNTHETIC, cwd=evil["work"])
    assert code == 0, err
    return {"preds": out}


@pytest.mark.parametrize("value", ["2", "1.5", "-0.01", "nan", "inf", "two", "150%"])
def test_a_rate_threshold_that_could_be_misread_is_refused(evil, predictions, value):
    code, out, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"],
                         "--max-nfr", value, cwd=evil["work"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--max-nfr" in lines[0], err
    if value == "2":
        assert "did you mean 2% or 0.02?" in lines[0]


def test_two_percent_and_0_02_gate_identically(evil, predictions, tmp_path):
    reports = []
    for value in ("2%", "0.02"):
        report = tmp_path / f"r{value}.json"
        code, _, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"],
                           "--max-nfr", value, "--json", report, cwd=evil["work"])
        assert code == 0, err
        gates = json.loads(report.read_text())["gates"]
        reports.append(gates)
    assert reports[0] == reports[1]
    assert reports[0][0]["threshold"] == pytest.approx(0.02)


def test_outputs_honour_the_umask(evil, predictions, tmp_path):
    """Checkpoints and reports: 0644 under umask 022 (a temp file's 0600 must not leak through); 0640
    under umask 027."""
    code, _, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"],
                       "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--html", tmp_path / "r.html",
                       cwd=evil["work"])
    assert code == 0, err
    for name in ("r.json", "r.md", "r.html"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    assert stat.S_IMODE(os.stat(evil["good"]).st_mode) == 0o644
    from modelupdate.atomic import atomic_write_bytes

    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "x.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "x.bin").st_mode) == 0o640
