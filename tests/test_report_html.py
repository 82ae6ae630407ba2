"""The Jinja2-rendered HTML pages escape user text (class names, sources, candidate names)."""

from __future__ import annotations

import numpy as np
import pytest

from modelupdate.analysis import compare, flip_report
from modelupdate.predictions import Predictions
from modelupdate.report import compare_html, flip_report_html

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
IDS = np.arange(6)
TARGETS = np.array([0, 1, 0, 1, 0, 1])


def preds(values: list[int], source: str, classes: list[str] | None = None) -> Predictions:
    logits = np.zeros((len(values), 2), dtype=np.float32)
    logits[np.arange(len(values)), values] = 2.0
    return Predictions.from_arrays(IDS, TARGETS, logits=logits, classes=classes, source=source)


def test_html_template_escapes_user_text():
    old = preds([0, 1, 0, 1, 0, 1], f"{EVIL}.npz", classes=[EVIL, "dog"])
    page = flip_report_html(flip_report(old, preds([1, 1, 0, 0, 0, 1], "a\"b'c.npz")))
    assert "<script" not in page and ESCAPED in page
    assert f"<td>0 {ESCAPED}</td>" in page  # class table: escaped by the template
    assert f"<title>0 {ESCAPED}: 1 negative flips</title>" in page  # SVG tooltip: by svg.py
    assert f"<code>{ESCAPED}.npz</code>" in page
    assert "<code>a&quot;b&#x27;c.npz</code>" in page  # quotes too, as html.escape writes them

    result = compare(old, {EVIL: preds([1, 1, 0, 0, 0, 1], "cand")})
    page = compare_html(result)
    assert "<script" not in page
    assert f"<td>{ESCAPED}" in page and f'class="lg">{ESCAPED}</text>' in page


def test_compare_shows_nfr_per_class_counted_by_hand():
    import json

    from modelupdate.report import compare_json
    from modelupdate.report.common import compare_class_header, compare_class_rows

    targets = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])

    def p(values: list[int]) -> Predictions:
        return Predictions.from_arrays(np.arange(10), targets, preds=np.array(values), num_classes=3,
                                       classes=["cat", "dog", "emu"])

    # old is wrong on samples 3 (cat) and 6 (dog); a breaks 0 (cat), 5 (dog), 9 (emu); b breaks 4 and 5 (dog)
    result = compare(p([0, 0, 0, 1, 1, 1, 0, 2, 2, 2]), {"a": p([1, 0, 0, 1, 1, 0, 1, 2, 2, 0]),
                                                          "b": p([0, 0, 0, 0, 0, 0, 1, 2, 2, 2])})
    assert compare_class_header(result) == ["class", "n", "old acc", "a: NFR (flips)", "b: NFR (flips)"]
    assert compare_class_rows(result) == [
        ["0 cat", "4", "75.00%", "25.00% (1)", "0.00% (0)"],
        ["1 dog", "3", "66.67%", "33.33% (1)", "66.67% (2)"],
        ["2 emu", "3", "100.00%", "33.33% (1)", "0.00% (0)"],
    ]
    page = compare_html(result)
    assert "<h2>NFR per class</h2>" in page and "<td>1 dog</td><td>3</td><td>66.67%</td>" in page
    data = json.loads(compare_json(result))
    assert [[c["negative_flips"] for c in cand["per_class"]] for cand in data["candidates"]] == [[1, 1, 1],
                                                                                                [0, 2, 0]]
    assert data["candidates"][1]["per_class"][1]["nfr"]["value"] == pytest.approx(2 / 3)


def test_compare_folds_a_long_per_class_table():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 40, 400)

    def p(values: np.ndarray) -> Predictions:
        return Predictions.from_arrays(np.arange(400), targets, preds=values, num_classes=40)

    page = compare_html(compare(p(targets), {"a": p(rng.integers(0, 40, 400))}))
    assert "<details><summary>40 classes</summary>" in page
    short = compare_html(compare(preds([0, 1, 0, 1, 0, 1], "o"), {"a": preds([1, 1, 0, 0, 0, 1], "a")}))
    assert "<h2>NFR per class</h2>" in short and "<details>" not in short
