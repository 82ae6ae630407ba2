"""predict, flip-report and compare through the real command line (subprocesses).

Exit codes: 0 every gate passes, 1 a gate fails, 2 usage or input error (one line on stderr,
no traceback, no output file written). Numbers in the JSON are checked against counts made
by hand here, not against the library's own functions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelupdate import __version__
from modelupdate.config import DataConfig

BAD = Path(__file__).parent / "data" / "bad_predictions"
EXPECTED = json.loads((BAD / "EXPECTED.json").read_text())
Z95 = 1.959963984540054

# --------------------------------------------------------------------------- a hand-made case
# 20 samples, 4 classes (target = i % 4). Old is right on samples 0..15 (16 of 20).
# New breaks samples 0, 1, 2, 3 (four negative flips, one per class) and fixes sample 16
# (one positive flip); 17..19 stay wrong. So: new correct 13, ER old 4/20, ER new 7/20,
# NFR 4/20, PFR 1/20, NFI 4/7, BTC 12/16, BEC 3/4, rel NFR 0.2 / (0.8 * 0.35),
# McNemar exact p for 4 vs 1 discordant pairs: 2 * (1 + 5) / 32 = 0.375.
N = 20
TARGETS = np.arange(N) % 4
IDS = 500 + 3 * np.arange(N)
OLD_PREDS = np.where(np.arange(N) < 16, TARGETS, (TARGETS + 1) % 4)
NEW_PREDS = OLD_PREDS.copy()
NEW_PREDS[:4] = (TARGETS[:4] + 1) % 4
NEW_PREDS[16] = TARGETS[16]
NEGATIVE_IDS = [500, 503, 506, 509]
POSITIVE_IDS = [548]


def wilson(k: int, n: int) -> tuple[float, float]:
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def logits_of(preds: np.ndarray) -> np.ndarray:
    logits = np.zeros((preds.size, 4), dtype=np.float32)
    logits[np.arange(preds.size), preds] = 3.0
    return logits


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch):
    """Runs of this suite inside GitHub Actions must not write to the job's summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    """old.npz (logits) and new.npz (logits, samples in reverse order)."""
    old, new = tmp_path / "old.npz", tmp_path / "new.npz"
    np.savez(old, ids=IDS, targets=TARGETS, logits=logits_of(OLD_PREDS))
    back = np.arange(N)[::-1]
    np.savez(new, ids=IDS[back], targets=TARGETS[back], logits=logits_of(NEW_PREDS)[back])
    return old, new


def one_line_error(rc: int, stderr: str, *fragments: str) -> None:
    assert rc == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --------------------------------------------------------------------------- gates


def test_all_gates_pass_and_json_matches_hand_counts(run_cli, pair, tmp_path):
    old, new = pair
    out = tmp_path / "flip.json"
    rc, stdout, stderr = run_cli(
        "flip-report", "--old", old, "--new", new, "--json", out,
        "--max-nfr", "20%", "--max-rel-nfr", "0.75", "--max-er", "36%", "--max-er-increase", "0.16",
        "--min-btc", "75%", "--max-class-nfr", "0.2")
    assert rc == 0, stderr
    assert "PASS" in stdout and "Summary" in stdout and "Per class" in stdout
    report = json.loads(out.read_text())
    assert report["schema"] == 1
    assert report["counts"] == {"n": 20, "old_correct": 16, "new_correct": 13,
                                "negative_flips": 4, "positive_flips": 1}
    m = report["metrics"]
    expected = {"er_old": (4, 20), "er_new": (7, 20), "nfr": (4, 20), "pfr": (1, 20),
                "nfi": (4, 7), "btc": (12, 16), "bec": (3, 4)}
    for name, (k, n) in expected.items():
        assert m[name]["value"] == pytest.approx(k / n), name
        assert m[name]["ci95"] == pytest.approx(list(wilson(k, n))), name
    assert m["rel_nfr"]["value"] == pytest.approx(0.2 / (0.8 * 0.35))
    assert report["mcnemar_p"] == pytest.approx(0.375)
    assert [(c["class"], c["n"], c["negative_flips"]) for c in report["per_class"]] == \
        [(0, 5, 1), (1, 5, 1), (2, 5, 1), (3, 5, 1)]
    assert [(g["name"], g["passed"]) for g in report["gates"]] == [
        ("max-nfr", True), ("max-rel-nfr", True), ("max-er", True), ("max-er-increase", True),
        ("min-btc", True), ("max-class-nfr", True)]
    assert report["gates"][0]["threshold"] == pytest.approx(0.2)
    assert report["gates"][0]["value"] == pytest.approx(0.2)
    assert report["passed"] is True


def test_max_nfi_gate_sets_the_exit_code(run_cli, pair):
    old, new = pair  # NFI = 4 negative flips / 7 new errors = 57.1%
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--max-nfi", "60%")
    assert rc == 0, stderr
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--max-nfi", "50%")
    assert rc == 1 and "gate failed: max-nfi" in stderr
    assert "max-nfi: value 57.143% > allowed 50.000%" in stdout


def test_failing_gate_exits_1_with_json_on_stdout(run_cli, pair):
    old, new = pair
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--max-nfr", "0.19",
                                 "--min-btc", "0.7", "--json", "-")
    assert rc == 1
    report = json.loads(stdout)  # only the JSON on stdout
    assert report["passed"] is False
    assert [(g["name"], g["passed"]) for g in report["gates"]] == [("max-nfr", False),
                                                                   ("min-btc", True)]
    assert report["gates"][0]["value"] == pytest.approx(0.2)
    assert stderr.strip() == "gate failed: max-nfr"


def test_gate_on_upper_turns_a_pass_into_a_fail(run_cli, pair):
    old, new = pair
    args = ["flip-report", "--old", old, "--new", new, "--max-nfr", "25%", "--json", "-"]
    rc, stdout, _ = run_cli(*args)
    assert rc == 0 and json.loads(stdout)["gates"][0]["value"] == pytest.approx(0.2)
    rc, stdout, stderr = run_cli(*args, "--gate-on", "upper")
    assert rc == 1, stderr
    gate = json.loads(stdout)["gates"][0]
    assert gate["value"] == pytest.approx(wilson(4, 20)[1]) and gate["passed"] is False


def test_output_files_and_github_step_summary(run_cli, pair, tmp_path, monkeypatch):
    old, new = pair
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    md, html, flips = tmp_path / "r.md", tmp_path / "r.html", tmp_path / "flips.csv"
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--max-nfr", "2%",
                            "--markdown", md, "--html", html, "--flips-csv", flips)
    assert rc == 1, stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "## modelupdate flip report: FAIL" in text
    assert "## modelupdate flip report: FAIL" in md.read_text()
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3  # margins: logits
    rows = list(csv.DictReader(io.StringIO(flips.read_text())))
    assert sorted(int(r["id"]) for r in rows if r["flip"] == "negative") == NEGATIVE_IDS
    assert [int(r["id"]) for r in rows if r["flip"] == "positive"] == POSITIVE_IDS
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_csv_and_label_only_inputs(run_cli, tmp_path):
    old, new = tmp_path / "old.csv", tmp_path / "new.npz"
    old.write_text("id,target,pred\n" + "".join(
        f"{i},{t},{p}\n" for i, t, p in zip(IDS, TARGETS, OLD_PREDS, strict=True)))
    np.savez(new, ids=IDS, targets=TARGETS, preds=NEW_PREDS)
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--json", "-")
    assert rc == 0, stderr
    assert json.loads(stdout)["counts"]["negative_flips"] == 4


# --------------------------------------------------------------------------- bad input: exit 2


def test_every_bad_prediction_file_exits_2_and_writes_nothing(run_cli, pair, tmp_path,
                                                              monkeypatch):
    """Each file of tests/data/bad_predictions as --new (and each bad pair): one line on stderr,
    no output file, nothing appended to $GITHUB_STEP_SUMMARY."""
    good, _ = pair
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(out / "step_summary.md"))
    cases = [(good, BAD / name, message, name) for name, message in EXPECTED["files"].items()]
    cases += [(BAD / c["old"], BAD / c["new"], c["message"], key)
              for key, c in EXPECTED["pairs"].items()]

    def check(case) -> str | None:
        old, new, message, key = case
        rc, stdout, stderr = run_cli(
            "flip-report", "--old", old, "--new", new, "--max-nfr", "1%",
            "--json", out / f"{key}.json", "--html", out / f"{key}.html",
            "--markdown", out / f"{key}.md", "--flips-csv", out / f"{key}.csv")
        lines = stderr.strip().splitlines()
        if rc != 2 or len(lines) != 1 or not lines[0].startswith("error: ") \
                or message not in lines[0] or "Traceback" in stderr:
            return f"{key}: rc={rc} stderr={stderr!r}"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:  # subprocesses: wall time, not CPU, halves
        problems = [p for p in pool.map(check, cases) if p]
    assert not problems, "\n".join(problems)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--max-nfr", "two percent"], "--max-nfr: cannot read 'two percent' as a number"),
    (["--min-btc", "-5%"], "--min-btc: '-5%' is negative"),
    (["--gate-on", "lower"], "'lower' is not one of value, upper"),
    (["--json", "missing-folder/r.json"], "folder missing-folder does not exist"),
    (["--json", "-", "--markdown", "-"], "cannot both write to stdout"),
])
def test_usage_errors_exit_2(run_cli, pair, tmp_path, args, message):
    old, new = pair
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new,
                                 "--html", tmp_path / "r.html", *args, cwd=tmp_path)
    one_line_error(rc, stderr, message)
    assert not (tmp_path / "r.html").exists() and stdout == ""


def test_output_may_not_overwrite_an_input(run_cli, pair):
    old, new = pair
    before = old.read_bytes()
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--json", old)
    one_line_error(rc, stderr, "is one of the inputs")
    assert old.read_bytes() == before


# --------------------------------------------------------------------------- compare


def test_compare_marks_the_pareto_front(run_cli, pair, tmp_path):
    old, new = pair
    # worse on both axes than `new`: one more negative flip (sample 4) -> dominated
    worse = NEW_PREDS.copy()
    worse[4] = (TARGETS[4] + 1) % 4
    # fewer errors than `new` but more flips: fixes 16..19, breaks 0..4 -> also on the front
    other = TARGETS.copy()
    other[:5] = (TARGETS[:5] + 1) % 4
    for name, preds in (("worse", worse), ("other", other)):
        np.savez(tmp_path / f"{name}.npz", ids=IDS, targets=TARGETS, preds=preds)
    out_json, out_html = tmp_path / "cmp.json", tmp_path / "cmp.html"
    rc, stdout, stderr = run_cli("compare", "--old", old, new, tmp_path / "worse.npz",
                                 tmp_path / "other.npz", "--json", out_json, "--html", out_html)
    assert rc == 0, stderr
    assert "Pareto" in stdout
    result = json.loads(out_json.read_text())
    rows = {c["name"]: c for c in result["candidates"]}
    assert list(rows) == ["new", "worse", "other"]
    assert {name: c["pareto"] for name, c in rows.items()} == {"new": True, "worse": False,
                                                               "other": True}
    assert rows["worse"]["counts"]["negative_flips"] == 5
    assert rows["other"]["counts"] == {"n": 20, "old_correct": 16, "new_correct": 15,
                                       "negative_flips": 5, "positive_flips": 4}
    assert rows["new"]["params"] is None and rows["new"]["ms_per_image"] is None
    # new and worse differ only in sample 4: one discordant pair, exact p = 1
    first = result["pairwise"][0]
    assert (first["a"], first["b"], first["a_only_negative_flips"],
            first["b_only_negative_flips"]) == ("new", "worse", 0, 1)
    assert first["p_value"] == pytest.approx(1.0)
    assert "<svg" in out_html.read_text()


def test_compare_bad_input_exits_2(run_cli, pair, tmp_path):
    old, new = pair
    rc, _, stderr = run_cli("compare", "--old", old, new, "--name", "a", "--name", "b",
                            "--json", tmp_path / "c.json")
    one_line_error(rc, stderr, "--name given 2 times for 1 candidates")
    rc, _, stderr = run_cli("compare", "--old", old, new, BAD / "nan_logits.npz",
                            "--json", tmp_path / "c.json")
    one_line_error(rc, stderr, "nan_logits.npz", "contains NaN or Inf")
    assert not (tmp_path / "c.json").exists()


@pytest.fixture
def worse(tmp_path) -> Path:
    """`new` plus one more negative flip (sample 4): NFR 5/20 = 25%, BTC 11/16 = 68.75%, ER 8/20."""
    preds = NEW_PREDS.copy()
    preds[4] = (TARGETS[4] + 1) % 4
    path = tmp_path / "worse.npz"
    np.savez(path, ids=IDS, targets=TARGETS, preds=preds)
    return path


def test_compare_gates_pass_when_every_candidate_passes(run_cli, pair, worse):
    old, new = pair
    # NFR: new 20%, worse 25% (a gate passes on equality); BTC: new 75%, worse 68.75%
    rc, stdout, stderr = run_cli("compare", "--old", old, new, worse, "--max-nfr", "25%",
                                 "--min-btc", "0.6875", "--json", "-")
    assert rc == 0, stderr
    result = json.loads(stdout)
    assert result["passed"] is True
    assert [(c["name"], c["passed"], [g["name"] for g in c["gates"]]) for c in result["candidates"]] == [
        ("new", True, ["max-nfr", "min-btc"]), ("worse", True, ["max-nfr", "min-btc"])]
    assert result["candidates"][1]["gates"][0]["value"] == pytest.approx(5 / 20)
    assert result["candidates"][1]["gates"][1]["value"] == pytest.approx(11 / 16)
    assert stderr == ""


def test_compare_gate_fails_for_one_candidate_exits_1(run_cli, pair, worse, tmp_path):
    old, new = pair
    md = tmp_path / "cmp.md"
    rc, stdout, stderr = run_cli("compare", "--old", old, new, worse, "--max-nfr", "20%",
                                 "--min-btc", "70%", "--markdown", md)
    assert rc == 1, stderr
    assert stderr.strip() == "gate failed: worse (max-nfr, min-btc)"  # new: 20% <= 20%, 75% >= 70%
    assert "PASS  new" in stdout and "FAIL  worse" in stdout  # the banner under the tables
    text = md.read_text()  # reports are still written
    assert text.startswith("## modelupdate compare: FAIL")
    assert "| worse | max-nfr | 20.00% | 25.00% | FAIL |" in text
    assert "| new | min-btc | 70.00% | 75.00% | PASS |" in text
    rc, stdout, _ = run_cli("compare", "--old", old, new, "--max-nfr", "19%", "--gate-on", "upper", "--json", "-")
    assert rc == 1 and json.loads(stdout)["candidates"][0]["gates"][0]["value"] == pytest.approx(wilson(4, 20)[1])


@pytest.mark.parametrize("args, message", [
    (["--max-nfr", "2"], "--max-nfr 2: did you mean 2% or 0.02?"),
    (["--max-class-nfr", "lots"], "--max-class-nfr: cannot read 'lots' as a number"),
    (["--gate-on", "lower"], "'lower' is not one of value, upper"),
])
def test_compare_bad_gate_exits_2(run_cli, pair, tmp_path, args, message):
    old, new = pair
    rc, stdout, stderr = run_cli("compare", "--old", old, new, "--json", tmp_path / "c.json", *args)
    one_line_error(rc, stderr, message)
    assert stdout == "" and not (tmp_path / "c.json").exists()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_provenance_names_each_input_by_sha256(run_cli, pair, worse, tmp_path):
    """Same inputs, same JSON (byte for byte); change an input file and its sha256 in the JSON changes."""
    old, new = pair
    flip = ["flip-report", "--old", old, "--new", new, "--max-nfr", "20%", "--json", "-"]
    cmp = ["compare", "--old", old, new, worse, "--name", "a", "--name", "b", "--json", "-"]
    (_, flip_1, _), (_, flip_2, _) = run_cli(*flip), run_cli(*flip)
    (_, cmp_1, _), (_, cmp_2, _) = run_cli(*cmp), run_cli(*cmp)
    assert flip_1 == flip_2 and cmp_1 == cmp_2
    prov = json.loads(flip_1)["provenance"]
    assert [(i["role"], i["path"], i["kind"], i["sha256"]) for i in prov["inputs"]] == [
        ("old", str(old), "predictions", sha256_of(old)), ("new", str(new), "predictions", sha256_of(new))]
    assert prov["gates"]["max-nfr"] == pytest.approx(0.2) and prov["gates"]["gate_on"] == "value"
    assert prov["version"] == __version__
    prov = json.loads(cmp_1)["provenance"]
    assert [(i["role"], i["name"], i["sha256"]) for i in prov["inputs"]] == [
        ("old", None, sha256_of(old)), ("candidate", "a", sha256_of(new)), ("candidate", "b", sha256_of(worse))]

    before = sha256_of(worse)
    np.savez(worse, ids=IDS, targets=TARGETS, preds=NEW_PREDS)  # other predictions, same path
    _, changed, _ = run_cli(*cmp)
    inputs = json.loads(changed)["provenance"]["inputs"]
    assert inputs[2]["sha256"] == sha256_of(worse) != before
    assert [i["sha256"] for i in inputs[:2]] == [sha256_of(old), sha256_of(new)]


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoints(tiny_train_config, tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny models (seeds 0, 1) on the default synthetic data (what `--data synthetic` is)."""
    from modelupdate.workflows.train import train

    folder = tmp_path_factory.mktemp("ckpt")
    data = DataConfig(name="synthetic", train_subset="256")
    paths = []
    for seed in (0, 1):
        path = folder / f"m{seed}.safetensors"
        train(data, tiny_train_config(seed=seed), path)
        paths.append(path)
    return paths[0], paths[1]


def test_checkpoint_without_data_exits_2(run_cli, checkpoints, pair, tmp_path):
    old, _ = checkpoints
    _, new = pair
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new,
                            "--json", tmp_path / "r.json")
    one_line_error(rc, stderr, f"{old} is a model checkpoint; pass --data to evaluate it")
    assert not (tmp_path / "r.json").exists()


def test_predict_refuses_a_prediction_file_and_a_bad_suffix(run_cli, checkpoints, pair, tmp_path):
    old, new = pair
    rc, _, stderr = run_cli("predict", new, "--data", "synthetic", "--out", tmp_path / "p.npz")
    one_line_error(rc, stderr, "is a prediction file; predict needs a model or ensemble checkpoint")
    rc, _, stderr = run_cli("predict", checkpoints[0], "--data", "synthetic",
                            "--out", tmp_path / "p.csv")
    one_line_error(rc, stderr, "expected a path ending in .npz or .safetensors")
    assert list(tmp_path.glob("p.*")) == []


def test_predict_then_flip_report_and_compare_on_checkpoints(run_cli, checkpoints, tmp_path):
    """predict writes files flip-report reads; running the checkpoints directly gives the
    same counts; compare shows parameters and speed for a checkpoint candidate."""
    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.models import count_parameters
    from modelupdate.predictions import write_predictions
    from modelupdate.workflows.inputs import predictions_from_checkpoint

    m0, m1 = checkpoints
    p0, p1 = tmp_path / "p0.npz", tmp_path / "p1.safetensors"
    # one through the command line, one through the library (each subprocess imports torch)
    rc, stdout, stderr = run_cli("predict", m1, "--data", "synthetic", "--out", p1,
                                 "--device", "cpu")
    assert rc == 0, stderr
    assert "wrote" in stdout and "256" in stdout  # test samples of the default synthetic data
    write_predictions(p0, predictions_from_checkpoint(m0, DataConfig(name="synthetic"),
                                                      device="cpu"))

    rc, from_files, stderr = run_cli("flip-report", "--old", p0, "--new", p1, "--json", "-")
    assert rc == 0, stderr
    rc, from_models, stderr = run_cli("flip-report", "--old", m0, "--new", m1,
                                      "--data", "synthetic", "--device", "cpu", "--json", "-")
    assert rc == 0, stderr
    files, models = json.loads(from_files), json.loads(from_models)
    assert files["counts"]["n"] == 256
    # provenance: a checkpoint by its own sha256 and where it ran; a prediction file by the file's
    # sha256, with the checkpoint and split that predict recorded in it
    old_in, new_in = models["provenance"]["inputs"]
    assert (old_in["kind"], old_in["sha256"], old_in["checkpoint_sha256"]) == ("model", sha256_of(m0), sha256_of(m0))
    assert (new_in["path"], new_in["dataset"], new_in["split"]) == (str(m1), "synthetic", "test")
    old_in, new_in = files["provenance"]["inputs"]
    assert (new_in["kind"], new_in["sha256"]) == ("predictions", sha256_of(p1))
    assert (new_in["checkpoint_sha256"], new_in["dataset"], new_in["split"]) == (sha256_of(m1), "synthetic", "test")
    assert models["counts"] == files["counts"]
    assert models["metrics"] == files["metrics"]
    assert models["per_class"] == files["per_class"]

    rc, stdout, stderr = run_cli("compare", "--old", p0, m1, p1, "--name", "checkpoint",
                                 "--name", "predictions", "--data", "synthetic", "--device", "cpu",
                                 "--json", "-")
    assert rc == 0, stderr
    rows = {c["name"]: c for c in json.loads(stdout)["candidates"]}
    assert rows["checkpoint"]["counts"] == rows["predictions"]["counts"] == files["counts"]
    assert rows["checkpoint"]["pareto"] and rows["predictions"]["pareto"]  # equal points
    params = count_parameters(load_checkpoint(m1).model)
    assert rows["checkpoint"]["params"] == params
    assert rows["checkpoint"]["ms_per_image"] > 0
    # predict recorded the parameter count in the .safetensors metadata; no timing there
    assert rows["predictions"]["params"] == params
    assert rows["predictions"]["ms_per_image"] is None
