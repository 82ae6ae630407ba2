"""The GitHub Actions job of docs/ci-gate.md runs as written: each step's commands are run the way a runner
runs them (bash -e, $GITHUB_STEP_SUMMARY, $GITHUB_EVENT_NAME, `if:` conditions, a stand-in `gh`), on the
committed Fashion-MNIST checkpoints, once with the gate passing and once failing."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
CHECKPOINTS = ROOT / "results" / "fashion-mnist" / "final"
FAKE_GH = """#!/usr/bin/env bash
# a stand-in for the GitHub CLI: records what it was asked to post
echo "$@" >> "$GH_LOG"
while [ $# -gt 0 ]; do if [ "$1" = --body-file ]; then cp "$2" posted-comment.md; fi; shift; done
"""


def workflow() -> dict:
    text = (ROOT / "docs" / "ci-gate.md").read_text()
    section = text.split("## A copy-paste GitHub Actions job", 1)[1]
    return yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])


def runs_now(condition: str | None, failed: bool) -> bool:
    """GitHub's `if:` for the conditions the documented job uses; no condition means success()."""
    if condition is None:
        return not failed
    allowed = {"always()", "github.event_name == 'pull_request'", "&&"}
    assert set(condition.split(" && ")) | {"&&"} <= allowed | {c.strip() for c in condition.split("&&")}, condition
    return all(part.strip() in ("always()", "github.event_name == 'pull_request'") for part in condition.split("&&"))


def expand(text: str) -> str:
    return text.replace("${{ github.event.pull_request.number }}", "7").replace("${{ github.token }}", "token")


def run_job(work: Path, gate_edit=lambda text: text) -> tuple[list[tuple[str, int]], bool]:
    """Run the documented job's steps in ``work``; (step name, exit code) of each step that ran, and whether
    the job failed."""
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(stat.S_IRWXU)
    (bin_dir / "modelupdate").write_text(f"#!/usr/bin/env bash\nexec {sys.executable} -m modelupdate \"$@\"\n")
    (bin_dir / "modelupdate").chmod(stat.S_IRWXU)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "MODELUPDATE_DEBUG")}
    env |= {"PATH": f"{bin_dir}:{env['PATH']}", "GITHUB_ACTIONS": "true", "CI": "true",
            "GITHUB_EVENT_NAME": "pull_request", "GITHUB_STEP_SUMMARY": str(work / "summary.md"),
            "GH_LOG": str(work / "gh.log"), "OMP_NUM_THREADS": "1"}
    ran, failed = [], False
    for step in workflow()["jobs"]["flip-gate"]["steps"]:
        name = step.get("name", step.get("uses", ""))
        if not runs_now(step.get("if"), failed):
            continue
        if "uses" in step:
            if "upload-artifact" in step["uses"]:  # every report it keeps exists
                paths = step["with"]["path"].split()
                ran.append((name, 0 if all((work / p).exists() for p in paths) else 1))
            continue
        if name == "Install modelupdate":  # the test's own environment has it installed
            assert "pip install" in step["run"] and "modelupdate-*.whl" in step["run"]
            continue
        script = gate_edit(expand(step["run"]))
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env | step.get("env", {}),
                              capture_output=True, text=True, timeout=600)
        ran.append((name, proc.returncode))
        if proc.returncode != 0:
            failed = True
            assert proc.returncode == 1 and "gate failed" in proc.stderr, proc.stderr
    return ran, failed


@pytest.fixture
def workspace(tmp_path) -> Path:
    if not (FASHION / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    (tmp_path / "models").mkdir()
    shutil.copy(CHECKPOINTS / "old.safetensors", tmp_path / "models" / "old.safetensors")
    shutil.copy(CHECKPOINTS / "elodi-s0.safetensors", tmp_path / "models" / "new.safetensors")
    (tmp_path / "data").symlink_to(FASHION)
    return tmp_path


def test_the_documented_job_passes_on_a_good_update(workspace):
    ran, failed = run_job(workspace)
    assert not failed and all(code == 0 for _, code in ran), ran
    assert [n for n, _ in ran][-2:] == ["Comment on the pull request", "Keep the reports"]
    summary = (workspace / "summary.md").read_text()
    assert "## modelupdate flip report: PASS" in summary and "sha256" in summary and "<details>" in summary
    comment = (workspace / "posted-comment.md").read_text()
    assert comment.startswith("### modelupdate flip report: PASS") and len(comment.splitlines()) < 25
    assert "pr comment 7 --body-file comment.md" in (workspace / "gh.log").read_text()


def test_the_documented_job_fails_on_a_tighter_gate_and_still_comments(workspace):
    ran, failed = run_job(workspace, lambda text: text.replace("--max-nfr 2%", "--max-nfr 1%"))
    assert failed and dict(ran)["Gate on negative flips"] == 1
    assert dict(ran)["Comment on the pull request"] == 0 and dict(ran)["Keep the reports"] == 0
    assert (workspace / "posted-comment.md").read_text().startswith("### modelupdate flip report: FAIL")
    assert "FAIL" in (workspace / "summary.md").read_text()


def test_make_dist_builds_an_installable_wheel(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300, capture_output=True)
    wheel = next(tmp_path.glob("modelupdate-*-py3-none-any.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "modelupdate/cli/__init__.py" in names and "modelupdate/data/transforms.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert re.search(r"modelupdate\s*=\s*modelupdate\.cli:main", zipfile.ZipFile(wheel).read(entry).decode())
    assert "dist:" in (ROOT / "Makefile").read_text()
