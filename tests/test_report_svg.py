"""The SVG plots: round ticks, class names on the axis, the zoomed error-vs-NFR scatter with intervals."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pytest

from modelupdate.analysis import compare, flip_report
from modelupdate.metrics import Histogram, QuantityAnalysis, margin_analysis
from modelupdate.predictions import Predictions
from modelupdate.report.svg import (
    CANDIDATE_COLORS,
    OKABE_ITO,
    label_box,
    nice_ticks,
    place_labels,
    svg_class_flips,
    svg_histogram,
    svg_pareto,
    tick_labels,
    truncate_label,
)


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
    # the axis spans the bins and 2% more (-0.09..4.54): the ticks inside it, none stretching it to 5
    assert x_tick_labels(svg) == ["0", "1", "2", "3", "4"]
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
    assert 'width="920" height="500"' in svg  # page-wide, the legend right of the plot
    assert x_tick_labels(svg) == ["24%", "26%", "28%", "30%", "32%", "34%"]
    assert y_tick_labels(svg) == ["0%", "1%", "2%", "3%", "4%"]
    # pixels: x = 64 + 606 * (v - 0.24) / 0.10, y = 48 + 394 * (1 - v / 0.04)
    assert '<circle cx="306.4" cy="245.0"' in svg  # ER 28%, NFR 2%
    # 95% intervals as error bars: ER across (25.31%..30.86%), NFR up and down (1.30%..3.07%)
    assert '<path d="M143.1,245.0H479.9' in svg
    assert '<path d="M306.4,314.1V139.7' in svg


def test_pareto_marks_the_old_model_at_its_error_rate_and_nfr_zero():
    svg = svg_pareto(compare(wide(OLD_WIDE), {"cand": wide(CANDIDATE)}))
    # a square at ER 30% (x 427.6), NFR 0 (y 442), labelled "old", and a dashed line at its ER
    assert '<rect x="422.6" y="437.0" width="10" height="10"' in svg
    assert 'class="pl">old</text>' in svg
    assert '<line x1="427.6" x2="427.6" y1="48.0" y2="442.0"' in svg and "stroke-dasharray" in svg
    assert "old model: ER 30.00% [27.24%, 32.91%], NFR 0 (by definition)" in svg
    assert svg.count("<path") == 3  # old: ER bar only; the candidate: ER and NFR bars


def test_pareto_escapes_names_and_fills_only_the_front():
    svg = svg_pareto(compare(wide(OLD_WIDE), {"<b>": wide(CANDIDATE), "same": wide(OLD_WIDE)}))
    assert 'class="pl">&lt;b&gt;</text>' in svg and "<b>" not in svg
    # both are on the front (one has fewer errors, the other no flips): both filled, each in its colour
    blue, vermillion = CANDIDATE_COLORS[:2]
    assert svg.count(f'fill="{blue}" stroke="{blue}"') == 2  # the point and its legend entry
    assert svg.count(f'fill="{vermillion}" stroke="{vermillion}"') == 2
    svg = svg_pareto(compare(wide(OLD_WIDE), {"cand": wide(CANDIDATE), "worse": wide(CANDIDATE[::-1].copy())}))
    assert svg.count(f'fill="#ffffff" stroke="{vermillion}"') == 2  # "worse" is dominated: hollow


# --------------------------------------------------------------------------- palette, ranges, labels


def colours(svg: str) -> set[str]:
    return set(re.findall(r'(?:fill|stroke)="(#[0-9a-f]{6})"', svg))


def test_plots_use_only_the_colour_blind_safe_palette():
    report = flip_report(labelled(OLD, ["cat", "dog", "emu"]), labelled(NEW, None))
    rng = np.random.default_rng(0)
    old_logits, new_logits = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    hist = margin_analysis(old_logits, new_logits, rng.integers(0, 3, 200)).old_margin
    result = compare(wide(OLD_WIDE), {f"c{i}": wide(np.roll(CANDIDATE, 37 * i)) for i in range(5)})
    allowed = set(OKABE_ITO.values()) | {"#ffffff"}  # white: the hollow dominated points
    for svg in (svg_class_flips(report), svg_histogram(hist, "m", "m"), svg_pareto(result)):
        assert colours(svg) <= allowed, colours(svg) - allowed
    assert OKABE_ITO == {"orange": "#e69f00", "sky blue": "#56b4e9", "bluish green": "#009e73",
                         "yellow": "#f0e442", "blue": "#0072b2", "vermillion": "#d55e00",
                         "reddish purple": "#cc79a7", "grey": "#999999", "black": "#000000"}
    assert set(CANDIDATE_COLORS) <= set(OKABE_ITO.values()) and len(set(CANDIDATE_COLORS)) == 7


def plot_domain(svg: str) -> tuple[float, float]:
    """The values at the plot's left and right ends, from the x ticks' labels and positions."""
    found = re.findall(r'<text x="([\d.]+)" y="[\d.]+" class="xt">([^<]*)<', svg)
    ticks = [(float(x), float(label)) for x, label in found]
    (x0, v0), (x1, v1) = ticks[0], ticks[-1]
    per_px = (v1 - v0) / (x1 - x0)
    return v0 + (64 - x0) * per_px, v0 + (64 + 416 - x0) * per_px  # the plot: 64..480 px


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (13.0, 0.0), (0.01, 100.0), (3.0, 117.0)])
def test_histogram_x_axis_spans_the_data_and_bars_do_not_overlap(scale, shift):
    rng = np.random.default_rng(1)
    values = shift + scale * rng.gamma(2.0, size=3000)
    old = np.zeros((3000, 2))
    old[:, 0] = values  # top1 - top2 margin = values
    targets = np.zeros(3000, dtype=np.int64)
    new = old.copy()
    new[:300, 1] = values[:300] + 1  # 300 negative flips
    hist = margin_analysis(old, new, targets).old_margin.histogram
    svg = svg_histogram(margin_analysis(old, new, targets).old_margin, "old margin", "margin")
    lo, hi = hist.edges[0], hist.edges[-1]  # the data's minimum, its 99th percentile
    assert lo == pytest.approx(values.min(), rel=1e-5)
    left, right = plot_domain(svg)
    span = hi - lo
    assert lo - 0.05 * span <= left <= lo and hi <= right <= hi + 0.05 * span, (left, right, lo, hi)
    plot_bars = sorted((float(x), float(x) + float(w))
                       for x, y, w in re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height', svg)
                       if y != "25")  # y 25: the legend's swatches, above the plot
    assert len(plot_bars) == 2 * (len(hist.edges) - 1)  # all samples and negative flips, one bar each per bin
    for (_, a_end), (b_start, _) in zip(plot_bars, plot_bars[1:], strict=False):
        assert a_end <= b_start + 0.11, "bars overlap"  # rounding to 0.1 px
    assert 64 <= plot_bars[0][0] and plot_bars[-1][1] <= 64 + 416


def test_compare_gives_each_candidate_its_own_colour_and_labels_do_not_collide():
    # seven candidates crowded together (ER and NFR within a point of each other) and long names
    names = [f"candidate-{i}-{'x' * (3 * i)}" for i in range(7)]
    result = compare(wide(OLD_WIDE), {n: wide(np.roll(CANDIDATE, i)) for i, n in enumerate(names)})
    svg = svg_pareto(result)
    points = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="5" fill="(#[0-9a-f]{6})" stroke="(#[0-9a-f]{6})"',
                        svg)[:len(names)]  # the plot's points; then the legend's
    assert len({stroke for *_, stroke in points}) == len(names)  # one distinct colour each
    labels = [(float(x), float(y), html.unescape(t))
              for x, y, t in re.findall(r'<text x="([\d.]+)" y="([\d.]+)" class="pl">([^<]*)</text>', svg)]
    boxes = [label_box(x, y, t) for x, y, t in labels]
    markers = [(float(x) - 5, float(y) - 5, float(x) + 5, float(y) + 5) for x, y, *_ in points]
    old = re.search(r'<rect x="([\d.]+)" y="([\d.]+)" width="10" height="10"', svg)
    markers.append((float(old[1]), float(old[2]), float(old[1]) + 10, float(old[2]) + 10))

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    assert len(labels) >= 5  # most are placed beside their points
    for i, a in enumerate(boxes):
        assert 64 <= a[0] and a[2] <= 64 + 606 and 48 <= a[1] and a[3] <= 500 - 58  # inside the plot
        assert not any(overlap(a, b) for b in boxes[i + 1:]), "two labels overlap"
        assert not any(overlap(a, m) for m in markers), "a label covers a point"
    for name in names:  # each is named in the legend, whether or not beside its point
        assert f'<title>{name}</title><circle' in svg


def test_labels_are_placed_apart_even_when_points_coincide():
    points = [(300.0, 200.0, "alpha"), (300.0, 200.0, "beta"), (301.0, 201.0, "gamma"), (302.0, 199.0, "delta")]
    boxes = [b for b in place_labels(points, (64, 48, 670, 442)) if b is not None]
    assert len(boxes) == 4
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])
