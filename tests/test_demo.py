"""`make demo`'s script, end to end on synthetic data: every step runs for real and the table is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_demo_script_runs_the_whole_workflow(tmp_path):
    env = dict(os.environ, DEMO_DATA="synthetic", DEMO_EPOCHS="1", DEMO_MEMBERS="2", DEMO_ARCH="tiny",
               DEMO_OUT=str(tmp_path), DEMO_MU=f"{sys.executable} -m modelupdate", COLUMNS="200")
    env.pop("MODELUPDATE_DEBUG", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # every command is printed before it runs, in order, so a user can copy it
    printed = [line.split()[2] for line in out.splitlines() if line.startswith("$ ") and "modelupdate" in line]
    assert printed == ["train", "ensemble-train", "ldi-train", "ldi-train", "flip-report", "compare"], out
    assert "gate exit code: " in out and "demo done in" in out
    for name in ("old", "reference", "new-elodi", "new-ce"):
        assert (tmp_path / f"{name}.safetensors").exists()
    report = json.loads((tmp_path / "flip-report.json").read_text())
    counts = report["counts"]
    assert counts["n"] == 256  # the synthetic test split
    assert report["metrics"]["nfr"]["value"] == pytest.approx(counts["negative_flips"] / counts["n"])
    # the gate the demo sets: --max-er-increase 0 and --max-nfr 3%, echoed with their parsed thresholds
    assert {g["name"]: g["threshold"] for g in report["gates"]} == {"max-nfr": pytest.approx(0.03),
                                                                   "max-er-increase": 0.0}
    assert report["passed"] == all(g["passed"] for g in report["gates"])
    table = (tmp_path / "compare.md").read_text()
    assert "new-ce" in table and "new-elodi" in table and "reference" in table
    # the final table is printed too, with both updates' NFR
    tail = out[out.index("6/6"):]
    assert "new-ce" in tail and "new-elodi" in tail and "NFR" in tail
