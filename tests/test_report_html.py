"""The Jinja2-rendered HTML pages escape user text (class names, sources, candidate names)."""

from __future__ import annotations

import numpy as np

from modelupdate.predictions import Predictions
from modelupdate.report import compare_html, flip_report_html
from modelupdate.workflows.compare import compare
from modelupdate.workflows.flip_report import flip_report

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
