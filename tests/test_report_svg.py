"""The SVG plots: round ticks, class names on the axis, the zoomed error-vs-NFR scatter with intervals."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from modelupdate.metrics import Histogram, QuantityAnalysis
from modelupdate.predictions import Predictions
from modelupdate.report.svg import (
    nice_ticks,
    svg_class_flips,
    svg_histogram,
    svg_pareto,
    tick_labels,
    truncate_label,
)
from modelupdate.workflows.compare import compare
from modelupdate.workflows.flip_report import flip_report


def x_tick_labels(svg: str) -> list[str]:
    return re.findall(r'class="xt">([^<]*)</text>', svg)


def y_tick_labels(svg: str) -> list[str]:
    return re.findall(r'class="yl">([^<]*)</text>', svg)


# --------------------------------------------------------------------------- ticks


@pytest.mark.parametrize(("lo", "hi", "max_ticks", "min_step", "ticks"), [
    (6.01e-05, 4.45, 6, 0.0, [0, 1, 2, 3, 4, 5]),  # the margin histogram that read "6.01e-05, 2.23, 4.45"
    (0.0, 0.2, 6, 0.0, [0, 0.05, 0.1, 0.15, 0.2]),  # step 0.04 rounds up to 0.05
    (0.0657, 0.0801, 7, 0.0, [0.065, 0.07, 0.075, 0.08, 0.085]),
    (0.13, 0.91, 6, 0.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (-0.3, 0.7, 6, 0.0, [-0.5, 0, 0.5, 1.0]),  # step 0.2 would need 7 ticks
    (0, 23, 5, 1.0, [0, 10, 20, 30]),  # counts: 5 x 5 would need 6 ticks
    (0, 3, 5, 1.0, [0, 1, 2, 3]),  # counts never step by 0.5
    (0, 0, 5, 1.0, [0, 1]),  # no flips at all: one step
    (0, 12345, 6, 0.0, [0, 5000, 10000, 15000]),
])
def test_nice_ticks_by_hand(lo, hi, max_ticks, min_step, ticks):
    assert nice_ticks(lo, hi, max_ticks, min_step) == pytest.approx(ticks, abs=1e-12)


def test_nice_ticks_are_exact_decimals():
    # 3 * 0.2 is 0.6000000000000001 in floats; the ticks are the decimals themselves
    assert nice_ticks(0, 1, 6) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_nice_ticks_enclose_the_range_in_few_round_steps():
    rng = np.random.default_rng(0)
    for lo, width in zip(rng.uniform(-5, 5, 300), 10.0 ** rng.uniform(-6, 4, 300), strict=True):
        hi = lo + width
        ticks = nice_ticks(lo, hi, 6)
        assert 2 <= len(ticks) <= 6
        assert ticks[0] <= lo + 1e-9 * width and ticks[-1] >= hi - 1e-9 * width
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6, (lo, hi, ticks)


def test_nice_ticks_refuse_bad_ranges():
    with pytest.raises(ValueError, match="not finite"):
        nice_ticks(0, math.nan)
    with pytest.raises(ValueError, match="max_ticks=1"):
        nice_ticks(0, 1, max_ticks=1)


@pytest.mark.parametrize(("ticks", "percent", "labels"), [
    ([0, 0.5, 1.0], False, ["0.0", "0.5", "1.0"]),
    ([0, 1, 2, 3, 4, 5], False, ["0", "1", "2", "3", "4", "5"]),
    ([0, 0.02, 0.04], True, ["0%", "2%", "4%"]),
    ([0.065, 0.07, 0.075], True, ["6.5%", "7.0%", "7.5%"]),
    ([0, 0.0005, 0.001], True, ["0.00%", "0.05%", "0.10%"]),
    ([0, 5000, 10000], False, ["0", "5,000", "10,000"]),
    ([-0.5, -0.0, 0.5], False, ["-0.5", "0.0", "0.5"]),  # never "-0.0"
    ([0.00005, 0.0001], False, ["0.00005", "0.00010"]),
])
def test_tick_labels_by_hand(ticks, percent, labels):
    assert tick_labels(ticks, percent) == labels


@pytest.mark.parametrize(("text", "limit", "shown"), [
    ("Sneaker", 14, "Sneaker"),
    ("Ankle boot with a long name", 14, "Ankle boot wi…"),
    ("abc def", 5, "abc…"),  # no space before the ellipsis
    ("abcdefghijklmn", 14, "abcdefghijklmn"),  # exactly at the limit: kept whole
])
def test_truncate_label(text, limit, shown):
    assert truncate_label(text, limit) == shown
    assert len(shown) <= limit


def test_truncate_label_needs_room():
    with pytest.raises(ValueError, match="max_chars=1"):
        truncate_label("abc", 1)


# --------------------------------------------------------------------------- per-class chart

TARGETS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
OLD = np.array([0, 1, 2, 0, 1, 2, 1, 0, 0, 2])
NEW = np.array([0, 1, 2, 0, 2, 0, 0, 2, 1, 2])


def labelled(preds: np.ndarray, classes: list[str] | None) -> Predictions:
    return Predictions.from_arrays(np.arange(10), TARGETS, preds=preds, num_classes=3, classes=classes)


def test_class_chart_names_each_class_on_the_axis():
    svg = svg_class_flips(flip_report(labelled(OLD, ["cat", "dog <b>", "emu"]), labelled(NEW, None)))
    # most negative flips first: classes 1 and 2 (one each), then 0; names escaped, full name in <title>
    assert x_tick_labels(svg) == []  # no bare tick: every class label carries its tooltip
    labels = re.findall(r'<title>([^<]*)</title>([^<]*)</text>', svg)
    assert labels == [("1 dog &lt;b&gt;", "dog &lt;b&gt;"), ("2 emu", "emu"), ("0 cat", "cat")]
    assert 'rotate(-40' not in svg  # short names sit side by side, not slanted
    assert y_tick_labels(svg) == ["0", "1"]  # one flip at most: a count axis steps by 1


def test_class_chart_cuts_long_names_and_keeps_them_whole_in_the_tooltip():
    long = "Ankle boot with a very long name"
    svg = svg_class_flips(flip_report(labelled(OLD, ["cat", long, "emu"]), labelled(NEW, None)))
    assert f"<title>1 {long}</title>Ankle boot wi…</text>" in svg
    assert 'transform="rotate(-40' in svg  # too long to fit side by side: slanted


def test_class_chart_without_names_shows_indices():
    svg = svg_class_flips(flip_report(labelled(OLD, None), labelled(NEW, None)))
    assert re.findall(r'<title>([^<]*)</title>([^<]*)</text>', svg) == [("1", "1"), ("2", "2"), ("0", "0")]


# --------------------------------------------------------------------------- histogram


def test_histogram_ticks_are_round_numbers():
    hist = Histogram(edges=(6.01e-05, 2.23, 4.45), all_counts=(3, 1), flip_counts=(1, 1))
    svg = svg_histogram(QuantityAnalysis((0.5,), (1.0,), (1.0,), hist), "margins", "margin")
    assert x_tick_labels(svg) == ["0", "1", "2", "3", "4", "5"]
    # shares: all samples 75% / 25%, flips 50% / 50% -> a percent axis up to 80%
    assert y_tick_labels(svg) == ["0%", "20%", "40%", "60%", "80%"]
    assert "e-05" not in "".join(x_tick_labels(svg) + y_tick_labels(svg))


# --------------------------------------------------------------------------- compare scatter

# 1000 samples, one class right: old wrong on 700..999 (ER 30%); the candidate breaks 0..19 (NFR 2%)
# and fixes 700..739 (ER 28%). Wilson 95%: old ER [27.24%, 32.91%], candidate ER [25.31%, 30.86%],
# NFR [1.30%, 3.07%]. Padded by 8% of the span, the x axis runs 24%..34%, the y axis 0%..4%.
N = 1000
OLD_WIDE = np.where(np.arange(N) < 700, 0, 1)
CANDIDATE = OLD_WIDE.copy()
CANDIDATE[:20] = 1
CANDIDATE[700:740] = 0


def wide(preds: np.ndarray) -> Predictions:
    return Predictions.from_arrays(np.arange(N), np.zeros(N, dtype=np.int64), preds=preds, num_classes=2)


def test_pareto_zooms_to_the_points_and_their_intervals():
    svg = svg_pareto(compare(wide(OLD_WIDE), {"cand": wide(CANDIDATE)}))
    assert x_tick_labels(svg) == ["24%", "26%", "28%", "30%", "32%", "34%"]
    assert y_tick_labels(svg) == ["0%", "1%", "2%", "3%", "4%"]
    # pixels: x = 64 + 596 * (v - 0.24) / 0.10, y = 48 + 194 * (1 - v / 0.04)
    assert '<circle cx="302.4" cy="145.0"' in svg  # ER 28%, NFR 2%
    # 95% intervals as error bars: ER across (25.31%..30.86%), NFR up and down (1.30%..3.07%)
    assert '<path d="M141.8,145.0H473.0' in svg
    assert '<path d="M302.4,179.0V93.2' in svg


def test_pareto_marks_the_old_model_at_its_error_rate_and_nfr_zero():
    svg = svg_pareto(compare(wide(OLD_WIDE), {"cand": wide(CANDIDATE)}))
    # a square at ER 30% (x 421.6), NFR 0 (y 242), labelled "old", and a dashed line at its ER
    assert '<rect x="416.6" y="237.0" width="10" height="10"' in svg
    assert 'class="lg">old</text>' in svg
    assert '<line x1="421.6" x2="421.6" y1="48.0" y2="242.0"' in svg and "stroke-dasharray" in svg
    assert "old model: ER 30.00% [27.24%, 32.91%], NFR 0 (by definition)" in svg
    assert svg.count("<path") == 3  # old: ER bar only; the candidate: ER and NFR bars


def test_pareto_escapes_names_and_fills_only_the_front():
    svg = svg_pareto(compare(wide(OLD_WIDE), {"<b>": wide(CANDIDATE), "same": wide(OLD_WIDE)}))
    assert 'class="lg">&lt;b&gt;</text>' in svg and "<b>" not in svg
    # both are on the front (one has fewer errors, the other no flips): both filled
    assert svg.count('fill="#c0392b" stroke="#c0392b"') == 2
    svg = svg_pareto(compare(wide(OLD_WIDE), {"cand": wide(CANDIDATE), "worse": wide(CANDIDATE[::-1].copy())}))
    assert svg.count('fill="#ffffff" stroke="#c0392b"') == 1  # "worse" is dominated: hollow
