"""A team's journey end to end (tests/journey/journey.sh): a plain-PyTorch resnet18 at 32 px with
ImageNet's normalisation imported as the deployed model; reference, ELODI and plain updates at 64 px with
the image folder's own statistics; flip-report and compare over all of them; the CI gate as a runner
runs it. Exit 0 end to end, with each model keeping its own preprocessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelupdate.analysis import MAX_THUMBNAILS
from modelupdate.formats import read_meta

SCRIPT = Path(__file__).parent / "journey" / "journey.sh"


@pytest.mark.slow
def test_the_journey_runs_end_to_end(tmp_path):
    env = dict(os.environ, MU=str(Path(sys.executable).parent / "modelupdate"), PY=sys.executable,
               OMP_NUM_THREADS="1")
    env.pop("COLUMNS", None)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gate exit codes: pass 0, fail 1" in proc.stdout and "journey done" in proc.stdout
    old = read_meta(tmp_path / "old.safetensors")
    assert old.input_shape == (3, 32, 32) and old.normalization["mean"] == [0.485, 0.456, 0.406]
    for name in ("ref", "elodi", "ce"):
        new = read_meta(tmp_path / f"{name}.safetensors")
        assert new.input_shape == (3, 64, 64), name
        assert new.normalization["mean"] != old.normalization["mean"], "the folder's own statistics"
    # one thumbnail per negative flip, up to the cap; how many flips a one-step update makes varies by machine
    flips = json.loads((tmp_path / "flip.json").read_text())["counts"]["negative_flips"]
    assert (tmp_path / "flip.html").read_text().count("<img") == min(flips, MAX_THUMBNAILS)
    assert (tmp_path / "comment-pass.md").read_text().startswith("### modelupdate flip report: PASS")
    assert (tmp_path / "comment-fail.md").read_text().startswith("### modelupdate flip report: FAIL")
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("## modelupdate flip report") == 2 and "sha256" in summary
