"""flip_report / compare workflows and their renderers (JSON, Markdown, HTML, rich, CSV)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.console import Console

from modelupdate.analysis import compare, flip_report
from modelupdate.errors import ConfigError, MismatchError
from modelupdate.gates import GateSpec
from modelupdate.predictions import Predictions
from modelupdate.report import (
    compare_html,
    compare_json,
    compare_markdown,
    compare_rich,
    flip_report_html,
    flip_report_json,
    flip_report_markdown,
    flip_report_rich,
    flip_report_to_dict,
    flips_csv,
)

# Hand case of test_metrics, as logits (one-hot at the predicted class), three classes.
TARGETS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
OLD = np.array([0, 1, 2, 0, 1, 2, 1, 0, 0, 2])
NEW = np.array([0, 1, 2, 0, 2, 0, 0, 2, 1, 2])
IDS = np.arange(1000, 1010)


def one_hot(preds: np.ndarray, scale: float = 2.0) -> np.ndarray:
    logits = np.zeros((preds.size, 3), dtype=np.float32)
    logits[np.arange(preds.size), preds] = scale
    return logits


def predictions(preds: np.ndarray, source: str, logits: bool = True,
                classes: list[str] | None = None) -> Predictions:
    if logits:
        return Predictions.from_arrays(IDS, TARGETS, logits=one_hot(preds), classes=classes,
                                       source=source)
    return Predictions.from_arrays(IDS, TARGETS, preds=preds, source=source)


@pytest.fixture
def report():
    return flip_report(predictions(OLD, "old.npz", classes=["cat", "dog <b>", "emu"]),
                       predictions(NEW, "new.npz"),
                       GateSpec(max_nfr=0.25, max_er=0.4, min_btc=0.5))


def render(renderable) -> str:
    console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


# --------------------------------------------------------------------------- workflow


def test_flip_report_hand_case(report):
    c = report.summary.counts
    assert (c.n, c.negative_flips, c.positive_flips) == (10, 2, 1)
    assert [g.passed for g in report.gates] == [True, False, True]  # ER_new 0.5 > 0.4
    assert not report.passed
    assert report.margins is not None
    assert report.classes == ["cat", "dog <b>", "emu"]
    # flipped samples in file order: 4 (neg), 5 (neg), 6 (pos)
    assert report.flips.ids.tolist() == [1004, 1005, 1006]
    assert report.flips.kind.tolist() == [-1, -1, 1]


def test_flip_report_aligns_by_id_and_skips_margins_without_logits():
    order = np.array([9, 3, 1, 0, 2, 4, 5, 6, 7, 8])
    new = Predictions.from_arrays(IDS[order], TARGETS[order], preds=NEW[order], source="n.csv")
    r = flip_report(predictions(OLD, "o.csv", logits=False), new)
    assert r.summary.counts.negative_flips == 2
    assert r.margins is None and r.passed and r.gates == []
    assert "n/a (needs logits" in render(flip_report_rich(r))


def test_flip_report_rejects_mismatched_ids():
    new = Predictions.from_arrays(IDS + 1, TARGETS, preds=NEW)
    with pytest.raises(MismatchError, match="sample ids differ"):
        flip_report(predictions(OLD, "o"), new)


def test_compare_rows_pareto_and_pairwise():
    old = predictions(OLD, "old")
    same = predictions(OLD, "same")  # no flips, ER 0.4
    worse = predictions(NEW, "worse")  # NFR 0.2, ER 0.5: dominated by "same"
    fixer = predictions(TARGETS, "perfect")  # ER 0, NFR 0: dominates everything
    result = compare(old, {"same": same, "worse": worse, "perfect": fixer},
                     {"worse": {"params": 1234, "ms_per_image": 0.5}})
    assert [r.name for r in result.rows] == ["same", "worse", "perfect"]
    assert [r.pareto for r in result.rows] == [False, False, True]
    assert result.rows[1].params == 1234 and result.rows[1].ms_per_image == 0.5
    assert result.rows[0].params is None
    assert result.rows[2].summary.rel_nfr.value is None  # no new errors: undefined
    pairs = {(t.a, t.b): t for t in result.pairwise}
    assert set(pairs) == {("same", "worse"), ("same", "perfect"), ("worse", "perfect")}
    # "worse" flips samples 4 and 5, the others none: 0 vs 2 -> p = 2 * 1/4 = 0.5
    assert (pairs[("same", "worse")].a_only, pairs[("same", "worse")].b_only) == (0, 2)
    assert pairs[("same", "worse")].p_value == pytest.approx(0.5)


def test_compare_needs_a_candidate():
    with pytest.raises(ConfigError, match="at least one candidate"):
        compare(predictions(OLD, "old"), {})


# --------------------------------------------------------------------------- JSON


def test_json_schema_keys_and_values(report):
    data = json.loads(flip_report_json(report))
    assert set(data) == {"schema", "counts", "metrics", "mcnemar_p", "per_class", "gates",
                         "passed", "provenance"}
    assert data["schema"] == 1
    assert data["counts"] == {"n": 10, "old_correct": 6, "new_correct": 5,
                              "negative_flips": 2, "positive_flips": 1}
    assert set(data["metrics"]) == {"er_old", "er_new", "nfr", "pfr", "rel_nfr", "nfi", "btc",
                                    "bec"}
    for metric in data["metrics"].values():
        assert set(metric) == {"value", "ci95"}
        assert len(metric["ci95"]) == 2
    assert data["metrics"]["nfr"]["value"] == pytest.approx(0.2)
    assert data["mcnemar_p"] == 1.0
    assert data["passed"] is False
    assert data["gates"][1] == {"name": "max-er", "threshold": 0.4, "value": 0.5,
                                "passed": False}
    row = data["per_class"][1]
    assert row["class"] == 1 and row["name"] == "dog <b>" and row["negative_flips"] == 1
    assert row["nfr"]["value"] == pytest.approx(1 / 3)


def test_json_undefined_values_are_null_not_zero():
    # new model perfect: rel_nfr and nfi undefined; old model never right on class 1 ...
    r = flip_report(predictions(OLD, "o"), predictions(TARGETS, "n"), GateSpec(max_rel_nfr=1.0))
    data = json.loads(flip_report_json(r))
    assert data["metrics"]["rel_nfr"] == {"value": None, "ci95": None}
    assert data["metrics"]["nfi"] == {"value": None, "ci95": None}
    assert data["metrics"]["er_new"]["value"] == 0.0  # a real zero stays 0
    assert data["gates"] == [{"name": "max-rel-nfr", "threshold": 1.0, "value": None,
                              "passed": False}]
    assert "NaN" not in flip_report_json(r)


def test_json_class_without_samples_is_null():
    old = Predictions.from_arrays(IDS, TARGETS, logits=np.pad(one_hot(OLD), ((0, 0), (0, 1))))
    new = Predictions.from_arrays(IDS, TARGETS, logits=np.pad(one_hot(NEW), ((0, 0), (0, 1))))
    data = flip_report_to_dict(flip_report(old, new))
    assert data["per_class"][3]["n"] == 0
    assert data["per_class"][3]["old_acc"] == {"value": None, "ci95": None}


def test_compare_json():
    data = json.loads(compare_json(compare(predictions(OLD, "o"), {"a": predictions(NEW, "a"),
                                                                   "b": predictions(OLD, "b")})))
    assert data["schema"] == 1 and data["n"] == 10
    assert [c["name"] for c in data["candidates"]] == ["a", "b"]
    assert set(data["candidates"][0]) == {"name", "source", "counts", "metrics", "mcnemar_p",
                                          "params", "ms_per_image", "pareto", "gates", "passed", "per_class"}
    assert data["candidates"][0]["gates"] == [] and data["passed"] is True  # no gates: all pass
    assert data["candidates"][0]["params"] is None
    assert data["pairwise"][0]["a_only_negative_flips"] == 2


# --------------------------------------------------------------------------- text


def test_markdown_contains_tables_and_verdict(report):
    md = flip_report_markdown(report)
    assert md.startswith("## modelupdate flip report: FAIL")
    assert "| metric | value | counts | 95% CI |" in md
    assert "| NFR (negative flips) | 20.00% | 2/10 | [5.67%, 50.98%] |" in md
    assert "| max-er | 40.00% | 50.00% | FAIL |" in md
    assert "| 1 dog &lt;b&gt; | 3 |" in md  # per-class row, class name escaped
    assert "### Margin analysis" in md


def test_markdown_folds_long_class_tables():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 30, 300)
    old = Predictions.from_arrays(np.arange(300), targets, preds=rng.integers(0, 30, 300),
                                  num_classes=30)
    new = Predictions.from_arrays(np.arange(300), targets, preds=rng.integers(0, 30, 300),
                                  num_classes=30)
    md = flip_report_markdown(flip_report(old, new), max_classes=5)
    assert "<details><summary>All classes</summary>" in md


def test_rich_report_shows_na_and_banner():
    r = flip_report(predictions(OLD, "o"), predictions(TARGETS, "n"), GateSpec(max_rel_nfr=1.0))
    text = render(flip_report_rich(r))
    assert "relative NFR" in text and "n/a" in text
    assert "FAIL" in text and "max-rel-nfr" in text and "undefined" in text
    text = render(flip_report_rich(flip_report(predictions(OLD, "o"), predictions(OLD, "n"))))
    assert "PASS" in text and "no gates set" in text


def test_rich_compare_marks_pareto():
    result = compare(predictions(OLD, "o"), {"a": predictions(NEW, "a"),
                                             "b": predictions(TARGETS, "b")})
    text = render(compare_rich(result))
    assert "b *" in text and "Pairwise" in text
    assert "compare" in compare_markdown(result) and "| b * |" in compare_markdown(result)


def test_flips_csv(report):
    assert flips_csv(report).splitlines() == [
        "id,target,old_pred,new_pred,flip",
        "1004,1,1,2,negative",
        "1005,2,2,0,negative",
        "1006,0,1,0,positive",
    ]


# --------------------------------------------------------------------------- HTML


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action") and value:
                self.urls.append(value)


def check_self_contained(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "svg" in parser.tags
    assert "script" not in parser.tags and "link" not in parser.tags
    assert parser.urls == []  # nothing to fetch: no src/href at all
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page)
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page
    return parser


def test_html_is_one_self_contained_file_with_svg(report):
    page = flip_report_html(report)
    parser = check_self_contained(page)
    assert parser.tags.count("svg") == 3  # per-class flips + two margin histograms
    assert "dog &lt;b&gt;" in page and "dog <b>" not in page  # class names are escaped


def test_html_without_logits_and_compare_html():
    r = flip_report(predictions(OLD, "o", logits=False), predictions(NEW, "n", logits=False))
    parser = check_self_contained(flip_report_html(r))
    assert parser.tags.count("svg") == 1
    result = compare(predictions(OLD, "o"), {"a": predictions(NEW, "a")})
    check_self_contained(compare_html(result))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(path, profile) -> subprocess.CompletedProcess:
    """Render ``path`` in headless chromium (own profile, no network side traffic), dump the DOM;
    ``--enable-logging=stderr --v=0`` puts console errors such as 'Uncaught ...' on stderr."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
         path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="no headless chromium here")
def test_html_opens_in_headless_browser(report, tmp_path):
    pages = {
        "report.html": (flip_report_html(report), "modelupdate flip report"),
        "compare.html": (compare_html(compare(predictions(OLD, "o"),
                                              {"a": predictions(NEW, "a"),
                                               "b": predictions(OLD, "b")})),
                         "modelupdate compare"),
    }
    for name, (page, title) in pages.items():
        path = tmp_path / name
        path.write_text(page, encoding="utf-8")
        done = open_in_chromium(path, tmp_path / f"profile-{name}")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "<svg" in done.stdout and title in done.stdout and "<table>" in done.stdout
        assert "Uncaught" not in done.stderr and "Failed to load resource" not in done.stderr


# --------------------------------------------------------------------------- compare gates


@pytest.fixture
def gated():
    """Two candidates held to max-nfr 10% and min-btc 60%: "same" (no flips, BTC 6/6) passes; "worse"
    (NFR 2/10 = 20%, BTC 4/6) fails max-nfr only."""
    return compare(predictions(OLD, "old"), {"same": predictions(OLD, "same"), "worse": predictions(NEW, "worse")},
                   gates=GateSpec(max_nfr=0.1, min_btc=0.6))


def test_compare_holds_every_candidate_to_the_gates(gated):
    same, worse = gated.rows
    assert [(g.name, g.passed) for g in same.gates] == [("max-nfr", True), ("min-btc", True)]
    assert [(g.name, g.passed) for g in worse.gates] == [("max-nfr", False), ("min-btc", True)]
    assert worse.gates[0].value == pytest.approx(0.2) and worse.gates[1].value == pytest.approx(4 / 6)
    assert same.passed and not worse.passed and not gated.passed
    assert compare(predictions(OLD, "old"), {"same": predictions(OLD, "same")},
                   gates=GateSpec(max_nfr=0.1)).passed


def test_compare_gates_by_class_too():
    # worst class NFR of "worse": 1/3 (classes 1 and 2); 0.3 fails, 0.34 passes
    def row(limit):
        return compare(predictions(OLD, "o"), {"w": predictions(NEW, "w")},
                       gates=GateSpec(max_class_nfr=limit)).rows[0]
    assert not row(0.3).passed and row(0.34).passed
    assert row(0.3).gates[0].value == pytest.approx(1 / 3)


def test_compare_gates_in_every_format(gated):
    data = json.loads(compare_json(gated))
    assert data["passed"] is False
    assert [(c["name"], c["passed"]) for c in data["candidates"]] == [("same", True), ("worse", False)]
    assert data["candidates"][1]["gates"][0] == {"name": "max-nfr", "threshold": 0.1,
                                                 "value": pytest.approx(0.2), "passed": False}
    md = compare_markdown(gated)
    assert md.startswith("## modelupdate compare: FAIL")
    assert "Gates: max-nfr ≤ 10.00%, min-btc ≥ 60.00% (on value)" in md
    assert md.splitlines()[md.splitlines().index("| candidate | ER | NFR | NFR 95% CI | rel NFR | NFI | PFR | BTC "
                                                 "| BEC | params | ms/image | gates |") + 3].endswith(
        "| FAIL: max-nfr |")
    assert "| worse | max-nfr | 10.00% | 20.00% | FAIL |" in md
    page = compare_html(gated)
    assert '<div class="banner fail">FAIL: max-nfr ≤ 10.00%' in page
    assert "<td>FAIL: max-nfr</td>" in page and "<td>PASS</td>" in page
    assert "<li>FAIL  worse: max-nfr value 20.000% &gt; allowed 10.000%</li>" in page
    text = render(compare_rich(gated))
    assert "FAIL: max-nfr" in text and "PASS  same" in text


def test_compare_without_gates_says_so():
    result = compare(predictions(OLD, "o"), {"a": predictions(NEW, "a")})
    md = compare_markdown(result)
    assert md.startswith("## modelupdate compare\n") and "Gates: no gates set" in md
    assert md.splitlines()[md.splitlines().index(
        "| candidate | ER | NFR | NFR 95% CI | rel NFR | NFI | PFR | BTC | BEC | params | ms/image | gates |"
    ) + 2].endswith("| none set |")
    assert "### Gates per candidate" not in md and 'class="banner' not in compare_html(result)


# --------------------------------------------------------------------------- glossary


def test_glossary_names_the_metrics_as_the_tables_do():
    from modelupdate.report.common import GLOSSARY, RATE_LABELS

    names = [name for name, _ in GLOSSARY]
    assert names == ["ER", RATE_LABELS["nfr"], RATE_LABELS["pfr"], RATE_LABELS["rel_nfr"], RATE_LABELS["nfi"],
                     RATE_LABELS["btc"], RATE_LABELS["bec"]]
    lines = dict(GLOSSARY)
    assert lines[RATE_LABELS["nfr"]].startswith("#(o and not n) / N")  # the glossary of docs/ci-gate.md, word for word
    assert lines[RATE_LABELS["rel_nfr"]].startswith("NFR / ((1 − ER old) · ER new)")
    assert lines[RATE_LABELS["btc"]].startswith("#(o and n) / #o")
    assert lines[RATE_LABELS["bec"]].startswith("#(not o and not n) / #(not o)")


def test_glossary_in_markdown_and_html(report):
    for md in (flip_report_markdown(report), compare_markdown(compare(predictions(OLD, "o"),
                                                                      {"a": predictions(NEW, "a")}))):
        section = md[md.index("### Metrics"):]
        assert "- **NFR (negative flips)**: #(o and not n) / N" in section
        assert "- **NFI (new errors that are flips)**: NFR / ER new" in section
        assert section.rstrip().endswith('the "Metrics glossary" section of the CI-gate guide (docs/ci-gate.md).')
    page = flip_report_html(report)
    assert "<h2>Metrics</h2>" in page
    assert "<dt>BTC (old-correct kept)</dt><dd>#(o and n) / #o" in page
    assert "&quot;Metrics glossary&quot; section of the CI-gate guide (docs/ci-gate.md)" in page
    assert page.count("<dt>") == 7


# --------------------------------------------------------------------------- provenance


def write_npz(path, preds, scale=2.0):
    np.savez(path, ids=IDS, targets=TARGETS, logits=one_hot(preds, scale))
    return path


def test_flip_report_json_records_every_input_and_the_gates(tmp_path):
    import hashlib

    from modelupdate import __version__
    from modelupdate.config import EvalConfig
    from modelupdate.report import ReportFormat
    from modelupdate.workflows.flip_report import run_flip_report

    old, new = write_npz(tmp_path / "old.npz", OLD), write_npz(tmp_path / "new.npz", NEW)
    spec = GateSpec(max_nfr=0.25, gate_on="upper")

    def provenance():
        done = run_flip_report(old, new, EvalConfig(), spec, {ReportFormat.JSON: "-"})
        return done.stdout, json.loads(done.stdout)["provenance"]

    text, prov = provenance()
    assert prov["tool"] == "modelupdate" and prov["version"] == __version__
    assert prov["gates"] == {"gate_on": "upper", "max-nfr": 0.25, "max-rel-nfr": None, "max-er": None,
                             "max-er-increase": None, "min-btc": None, "max-class-nfr": None, "max-nfi": None}
    assert prov["inputs"] == [
        {"role": role, "name": None, "path": str(path), "kind": "predictions",
         "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "checkpoint_sha256": None,
         "dataset": None, "dataset_fingerprint": None, "split": None}
        for role, path in (("old", old), ("new", new))]
    assert provenance()[0] == text  # same inputs, same JSON: nothing in it depends on the time
    write_npz(new, NEW, scale=3.0)  # same predictions, other logits: another file
    _, changed = provenance()
    assert changed["inputs"][1]["sha256"] == hashlib.sha256(new.read_bytes()).hexdigest() \
        != prov["inputs"][1]["sha256"]
    assert changed["inputs"][0] == prov["inputs"][0]


def test_input_record_of_a_checkpoint_takes_the_loaders_sha256(tmp_path, monkeypatch):
    from modelupdate.workflows import outputs

    path = tmp_path / "m.safetensors"
    path.write_bytes(b"not read")
    monkeypatch.setattr(outputs, "checkpoint_kind", lambda p: "ensemble")
    p = Predictions.from_arrays(IDS, TARGETS, preds=OLD, num_classes=3, meta={
        "checkpoint_sha256": "ab" * 32, "dataset": "fashion-mnist", "dataset_fingerprint": "f1", "split": "val"})
    record = outputs.input_record("candidate", path, p, name="elodi").as_dict()
    assert record == {"role": "candidate", "name": "elodi", "path": str(path), "kind": "ensemble",
                      "sha256": "ab" * 32, "checkpoint_sha256": "ab" * 32, "dataset": "fashion-mnist",
                      "dataset_fingerprint": "f1", "split": "val"}


def test_negative_flips_are_listed_by_sample_name_in_every_report():
    """imagefolder-style string ids reach the flips CSV (quoted where needed), Markdown and HTML (escaped)."""
    ids = np.array(["test/cat/a,1.png", "test/dog/<b>.png", "test/cat/c.png", "test/dog/d|e.png"])
    targets = np.array([0, 1, 0, 1])
    old = Predictions.from_arrays(ids, targets, preds=np.array([0, 1, 0, 0]), classes=["cat", "dog"])
    new = Predictions.from_arrays(ids, targets, preds=np.array([1, 0, 0, 1]), classes=["cat", "dog"])
    report = flip_report(old, new)  # negative flips: samples 0 and 1; positive: sample 3
    lines = flips_csv(report).splitlines()
    assert lines == ["id,target,old_pred,new_pred,flip", '"test/cat/a,1.png",0,0,1,negative',
                     "test/dog/<b>.png,1,1,0,negative", "test/dog/d|e.png,1,0,1,positive"]
    markdown = flip_report_markdown(report)
    assert "### Negative flips by sample" in markdown and "2 negative flips." in markdown
    assert "| test/cat/a,1.png | 0 cat | 0 cat | 1 dog |" in markdown and "test/dog/d|e.png" not in markdown
    assert "test/dog/&lt;b&gt;.png" in markdown  # no raw HTML in a Markdown cell
    page = flip_report_html(report)
    assert "test/dog/&lt;b&gt;.png" in page and "<b>.png" not in page
    assert page.count("test/cat/a,1.png") == 1


def test_compare_markdown_folds_each_candidates_nfr_per_class():
    result = compare(predictions(OLD, "o"), {"a": predictions(NEW, "a"), "b": predictions(TARGETS, "b")})
    md = compare_markdown(result)
    assert "### NFR per class" in md and "<details>" in md
    section = md.split("### NFR per class", 1)[1].split("</details>", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| class")]
    assert len(rows) == len(result.rows[0].per_class)
    for row, (a, b) in zip(rows, zip(result.rows[0].per_class, result.rows[1].per_class, strict=True), strict=True):
        assert f"({a.negative_flips:,})" in row and f"({b.negative_flips:,})" in row
