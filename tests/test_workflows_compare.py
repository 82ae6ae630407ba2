"""workflows/compare.py: naming the candidates, and `compare` run on prediction files end to end (checked by hand)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from modelupdate.config import EvalConfig, GateSpec
from modelupdate.errors import ConfigError
from modelupdate.predictions import Predictions, write_predictions
from modelupdate.workflows.compare import candidate_names, run_compare

TARGETS = [0, 1, 2, 0, 1, 2]
OLD = [0, 1, 2, 0, 0, 0]  # right on samples 0-3
WIDE = [0, 1, 2, 1, 1, 2]  # breaks sample 3, fixes 4 and 5: 1 error
DEEP = [0, 2, 2, 0, 0, 0]  # breaks sample 1, fixes nothing: 3 errors


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path, Path]:
    def npz(name: str, preds: list[int]) -> Path:
        return write_predictions(tmp_path / name, Predictions.from_arrays(
            np.arange(6), np.array(TARGETS), preds=np.array(preds), num_classes=3))

    wide = tmp_path / "wide.csv"  # a candidate in another format, its rows in another order
    wide.write_text("id,target,pred\n" + "".join(f"{i},{TARGETS[i]},{WIDE[i]}\n" for i in reversed(range(6))))
    return npz("old.npz", OLD), wide, npz("deep.npz", DEEP)


def test_candidate_names_from_file_names_or_paths(tmp_path):
    assert candidate_names([Path("runs/wide.npz"), Path("runs/deep.csv")], []) == ["wide", "deep"]
    # the same file name in two folders (or two extensions): the paths tell them apart
    clash = [Path("a/model.npz"), Path("b/model.npz"), Path("b/other.csv")]
    assert candidate_names(clash, []) == ["a/model.npz", "b/model.npz", "b/other.csv"]
    assert candidate_names([Path("m.npz"), Path("m.csv")], []) == ["m.npz", "m.csv"]


def test_a_candidate_given_twice_is_refused(tmp_path, monkeypatch):
    (tmp_path / "m.npz").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for twice in ([Path("m.npz"), tmp_path / "m.npz"], [Path("m.npz"), Path("link/m.npz")],
                  [Path("x/../m.npz"), Path("m.npz")]):
        with pytest.raises(ConfigError, match=r"^a candidate is given twice$"):
            candidate_names(twice, [])


def test_given_names_one_each_and_unique():
    paths = [Path("a/model.npz"), Path("b/model.npz")]
    assert candidate_names(paths, ["small", "large"]) == ["small", "large"]
    with pytest.raises(ConfigError) as info:
        candidate_names(paths, ["small"])
    assert str(info.value) == "--name given 1 times for 2 candidates; give one per candidate, in order"
    with pytest.raises(ConfigError, match=r"^--name: candidate names must be unique$"):
        candidate_names(paths, ["same", "same"])


def test_run_compare_on_prediction_files(files, tmp_path):
    old, wide, deep = files
    report = tmp_path / "compare.json"
    run = run_compare(old, [wide, deep], [], EvalConfig(), {"--json": report, "--markdown": "-"},
                      GateSpec(max_er=0.2))
    result = run.result
    assert result.n == 6 and [row.name for row in result.rows] == ["wide", "deep"]
    wide_row, deep_row = result.rows
    # old is right on 4 of 6; wide breaks 1 of them and fixes 2; deep breaks 1 and fixes none
    assert (wide_row.summary.counts.negative_flips, wide_row.summary.counts.positive_flips) == (1, 2)
    assert (deep_row.summary.counts.negative_flips, deep_row.summary.counts.positive_flips) == (1, 0)
    assert wide_row.summary.er_new.value == pytest.approx(1 / 6) and deep_row.summary.er_new.value == pytest.approx(0.5)
    assert wide_row.summary.nfr.value == deep_row.summary.nfr.value == pytest.approx(1 / 6)
    # the same NFR at a lower error rate: only wide is on the front, and only wide passes ER <= 0.2
    assert (wide_row.pareto, deep_row.pareto) == (True, False)
    assert (wide_row.passed, deep_row.passed, result.passed) == (True, False, False)
    (pair,) = result.pairwise
    assert (pair.a, pair.b, pair.a_only, pair.b_only) == ("wide", "deep", 1, 1)  # sample 3 vs sample 1
    assert (wide_row.params, wide_row.ms_per_image) == (None, None)  # prediction files state no costs

    # the Markdown went to stdout; the JSON file records every input by role, name and sha256
    assert run.stdout is not None and "wide" in run.stdout and "deep" in run.stdout
    written = json.loads(report.read_text())
    assert [c["name"] for c in written["candidates"]] == ["wide", "deep"]
    inputs = written["provenance"]["inputs"]
    assert [(i["role"], i["name"], i["path"], i["kind"]) for i in inputs] == [
        ("old", None, str(old), "predictions"), ("candidate", "wide", str(wide), "predictions"),
        ("candidate", "deep", str(deep), "predictions")]
    assert [i["sha256"] for i in inputs] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (old, wide, deep)]
    assert written["provenance"]["prediction_files"]["id_column"] == "id"


def test_run_compare_checks_names_and_outputs_before_reading_any_input(files, tmp_path):
    old, wide, deep = files
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an archive")
    before = {p: p.read_bytes() for p in (old, wide, deep, broken)}
    with pytest.raises(ConfigError, match=r"^--json .*wide\.csv: is one of the inputs; refusing to overwrite it$"):
        run_compare(old, [wide, broken], [], EvalConfig(), {"--json": wide})
    with pytest.raises(ConfigError, match=r"^--name given 1 times for 2 candidates"):
        run_compare(old, [deep, broken], ["only"], EvalConfig(), {"--json": tmp_path / "r.json"})
    with pytest.raises(ConfigError, match=r"^a candidate is given twice$"):
        run_compare(old, [deep, deep], [], EvalConfig(), {"--json": tmp_path / "r.json"})
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["broken.npz", "deep.npz", "old.npz", "wide.csv"]
