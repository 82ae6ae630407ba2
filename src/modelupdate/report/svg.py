"""Inline SVG plots for the HTML page: flips per class, margin histograms, error-vs-NFR scatter.

Each plot function returns a complete ``<svg>`` element as a string. Every piece of user text in
it (class names, candidate names) is already HTML-escaped, so the page inserts it as is. The axes
carry round ticks (``nice_ticks``: multiples of 1, 2 or 5 x 10^k) labelled briefly
(``tick_labels``); class names too long for the axis are cut (``truncate_label``) with the full
name in the label's ``<title>`` tooltip. Every colour is from Okabe and Ito's colour-blind-safe
palette (``OKABE_ITO``); the compare scatter's point labels are placed clear of each other
(``place_labels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelupdate.analysis import CompareResult, FlipReport
from modelupdate.metrics import Histogram, QuantityAnalysis, Rate

from .common import class_label, format_ci, format_percent, worst_classes
from .common import escape_html as _esc

_W, _H = 680, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 20, 48, 58
_PLOT_W = _W - _PAD_L - _PAD_R

#: Okabe and Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design"); every plot colour is one
OKABE_ITO = {"orange": "#e69f00", "sky blue": "#56b4e9", "bluish green": "#009e73", "yellow": "#f0e442",
             "blue": "#0072b2", "vermillion": "#d55e00", "reddish purple": "#cc79a7", "grey": "#999999",
             "black": "#000000"}
_NEG, _POS, _ALL, _OLD = (OKABE_ITO[c] for c in ("vermillion", "blue", "grey", "black"))
#: one colour per compare candidate, in order; yellow last (faint on white); they repeat after seven candidates
CANDIDATE_COLORS = tuple(OKABE_ITO[c] for c in ("blue", "vermillion", "bluish green", "reddish purple", "orange",
                                                "sky blue", "yellow"))
# the margin histograms: half the page each, so that the two sit side by side
_HW = 500
_H_PLOT_W = _HW - _PAD_L - _PAD_R
# the compare scatter: a wider page-sized chart, candidates listed in a legend right of the plot
_SW, _SH = 920, 500
_S_LEGEND_W = 230
_S_PLOT_W = _SW - _PAD_L - _PAD_R - _S_LEGEND_W
_LABEL_CHAR_W = 7.0  # width of one character of the 12px point labels, on the generous side
_LABEL_H = 14.0
_LABEL_CHARS = 24  # a candidate name longer than this is cut beside its point (whole in the legend's tooltip)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
_CHAR_W = 6.2  # width of one character of the 11px axis font, roughly
_CLASS_LABEL_CHARS = 14  # a class name longer than this is cut on the axis (full name in the tooltip)
_CLASS_LABEL_ANGLE = 40  # degrees; class names are slanted when they do not fit side by side
HISTOGRAM_MARGIN = 0.02  # a histogram's x axis runs this share of the bins' span beyond them on each side


# --------------------------------------------------------------------------- ticks and labels


def nice_ticks(lo: float, hi: float, max_ticks: int = 6, min_step: float = 0.0) -> list[float]:
    """Return round axis ticks enclosing ``[lo, hi]``: multiples of a 1, 2 or 5 x 10^k step.

    The first tick is <= ``lo``, the last >= ``hi``, and there are at most ``max_ticks`` (>= 2) of
    them; the axis runs from the first to the last. ``min_step`` keeps the step at least that (1 for
    counts, so no tick reads 0.5 flips). An empty range (``lo == hi``) is widened to one step.
    ``nice_ticks(6.01e-05, 4.45)`` is ``[0, 1, 2, 3, 4, 5]``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"axis range [{lo}, {hi}] is not finite")
    if max_ticks < 2:
        raise ValueError(f"max_ticks={max_ticks}; expected at least 2")
    lo, hi = min(lo, hi), max(lo, hi)
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    exponent = math.floor(math.log10(span / (max_ticks - 1)))
    while True:
        for mantissa in (1, 2, 5):
            step = _decimal(mantissa, exponent)
            if step < min_step:
                continue
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if last == first:
                last += 1
            if last - first + 1 <= max_ticks:
                return [_decimal(mantissa * k, exponent) for k in range(first, last + 1)]
        exponent += 1


def _decimal(mantissa: int, exponent: int) -> float:
    """Return ``mantissa x 10^exponent`` as the float nearest the decimal (0.6, not 0.6000000000000001)."""
    return float(mantissa * 10 ** exponent) if exponent >= 0 else mantissa / 10 ** -exponent


def tick_labels(ticks: list[float], percent: bool = False) -> list[str]:
    """Return each tick with as many decimals as the step between ticks needs, and no more.

    ``percent``: the ticks are shares, shown as percentages (0.05 -> "5%"). Thousands get commas.
    ``tick_labels([0, 0.5, 1])`` is ``["0.0", "0.5", "1.0"]``; ``tick_labels([0, 0.02, 0.04], percent=True)``
    is ``["0%", "2%", "4%"]``.
    """
    scale = 100.0 if percent else 1.0
    values = [t * scale for t in ticks]
    if len(values) >= 2:
        step = min(abs(b - a) for a, b in zip(values, values[1:], strict=False)) or 1.0
    else:
        step = abs(values[0]) if values and values[0] else 1.0
    decimals = max(0, math.ceil(-math.log10(step) - 1e-9))
    suffix = "%" if percent else ""
    labels = []
    for v in values:
        text = f"{v:,.{decimals}f}"
        if text.lstrip("-").strip("0.,") == "":  # -0.0 -> 0.0
            text = text.lstrip("-")
        labels.append(text + suffix)
    return labels


def truncate_label(text: str, max_chars: int) -> str:
    """Return ``text`` cut to ``max_chars`` characters (>= 2), its end replaced by "…" when cut."""
    if max_chars < 2:
        raise ValueError(f"max_chars={max_chars}; expected at least 2")
    if len(text) <= max_chars:
        return text
    return text[:max_chars - 1].rstrip() + "…"


# --------------------------------------------------------------------------- the frame


@dataclass(frozen=True)
class _Axis:
    """A linear axis from its first tick to its last, mapped to ``[start, start + length]`` pixels."""

    ticks: list[float]
    labels: list[str]
    start: float
    length: float
    flip: bool = False  # y axes grow upwards
    domain: tuple[float, float] | None = None  # the values at either end; None: the first and last tick

    @classmethod
    def of(cls, ticks: list[float], start: float, length: float, percent: bool = False,
           flip: bool = False) -> _Axis:
        return cls(ticks, tick_labels(ticks, percent), start, length, flip)

    @classmethod
    def within(cls, lo: float, hi: float, start: float, length: float, max_ticks: int = 7) -> _Axis:
        """An axis from ``lo`` to ``hi`` exactly (the data's range), with the round ticks that fall inside it."""
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        span = hi - lo
        inside = [t for t in nice_ticks(lo, hi, max_ticks + 2) if lo - 1e-9 * span <= t <= hi + 1e-9 * span]
        ticks = inside if len(inside) >= 2 else [lo, hi]
        return cls(ticks, tick_labels(ticks), start, length, domain=(lo, hi))

    def __call__(self, value: float) -> float:
        """The pixel coordinate of ``value``."""
        lo, hi = self.domain or (self.ticks[0], self.ticks[-1])
        frac = (value - lo) / (hi - lo)
        return self.start + self.length * ((1 - frac) if self.flip else frac)


def _svg_frame(title: str, height: int, y: _Axis, body: list[str], x_label: str, y_label: str,
               legend: list[tuple[str, str]], x: _Axis | None = None, width: int = _W,
               plot_right: float = _W - _PAD_R) -> str:
    """Return the ``<svg>`` element: title, y grid with tick labels, x ticks (if ``x``), ``body``,
    axis labels and legend; the plot spans ``_PAD_L`` to ``plot_right`` of ``width`` pixels."""
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_esc(title)}">',
             f'<text x="{_PAD_L}" y="18" class="t">{_esc(title)}</text>']
    for tick, label in zip(y.ticks, y.labels, strict=True):
        py = y(tick)
        parts.append(f'<line x1="{_PAD_L}" x2="{plot_right}" y1="{py:.1f}" y2="{py:.1f}" class="g"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{py + 4:.1f}" class="yl">{_esc(label)}</text>')
    axis_y = y.start + y.length
    if x is not None:
        for tick, label in zip(x.ticks, x.labels, strict=True):
            px = x(tick)
            parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{axis_y:.1f}" y2="{axis_y + 4:.1f}" '
                         'class="k"/>')
            parts.append(f'<text x="{px:.1f}" y="{axis_y + 16:.1f}" class="xt">{_esc(label)}</text>')
    parts += body
    parts.append(f'<text x="{(_PAD_L + plot_right) / 2:.1f}" y="{height - 6}" class="xl">'
                 f'{_esc(x_label)}</text>')
    mid = y.start + y.length / 2
    parts.append(f'<text x="14" y="{mid:.1f}" class="xl" transform="rotate(-90 14 {mid:.1f})">'
                 f'{_esc(y_label)}</text>')
    for i, (name, color) in enumerate(legend):
        lx = _PAD_L + 170 * i
        parts.append(f'<rect x="{lx}" y="25" width="12" height="12" fill="{color}"/>'
                     f'<text x="{lx + 16}" y="35" class="lg">{_esc(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def svg_class_flips(report: FlipReport, max_classes: int = 25) -> str:
    """Return grouped bars: negative and positive flips of the classes with most negative flips.

    The axis names each class (its index when the inputs give no names); names that do not fit are
    slanted and cut, with the full "index name" in the label's tooltip.
    """
    rows = worst_classes(report.per_class, max_classes)
    names = [report.classes[r.index] if report.classes is not None else str(r.index) for r in rows]
    slot = _PLOT_W / max(len(rows), 1)
    slanted = any(len(n) * _CHAR_W > slot * 0.95 for n in names)
    shown = [truncate_label(n, _CLASS_LABEL_CHARS) for n in names]
    label_room = (max([len(s) for s in shown] or [1]) * _CHAR_W
                  * math.sin(math.radians(_CLASS_LABEL_ANGLE))) if slanted else 0.0
    height = _H + math.ceil(label_room)
    plot_h = height - _PAD_T - _PAD_B - math.ceil(label_room)
    top = max([max(r.negative_flips, r.positive_flips) for r in rows] or [0])
    y = _Axis.of(nice_ticks(0, top, max_ticks=5, min_step=1), _PAD_T, plot_h, flip=True)
    bar = slot * 0.4
    label_every = max(1, math.ceil(13 / slot))  # one label per 13 px at least, when very crowded
    body = []
    for i, (r, short) in enumerate(zip(rows, shown, strict=True)):
        x0 = _PAD_L + i * slot + slot * 0.1
        label = class_label(r.index, report.classes)
        for j, (count, color, kind) in enumerate(
                ((r.negative_flips, _NEG, "negative"), (r.positive_flips, _POS, "positive"))):
            h = y(0) - y(count)
            body.append(f'<rect x="{x0 + j * bar:.1f}" y="{y(count):.1f}" '
                        f'width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                        f'<title>{_esc(label)}: {count} {kind} flips</title></rect>')
        if i % label_every:
            continue
        cx, ty = x0 + bar, y(0) + 14
        if slanted:
            body.append(f'<text x="{cx:.1f}" y="{ty:.1f}" class="ct" '
                        f'transform="rotate(-{_CLASS_LABEL_ANGLE} {cx:.1f} {ty:.1f})">'
                        f'<title>{_esc(label)}</title>{_esc(short)}</text>')
        else:
            body.append(f'<text x="{cx:.1f}" y="{ty:.1f}" class="xt"><title>{_esc(label)}</title>'
                        f'{_esc(short)}</text>')
    title = f"Flips per true class ({len(rows)} of {len(report.per_class)}, most negative first)"
    return _svg_frame(title, height, y, body, "true class", "flips",
                      [("negative flips", _NEG), ("positive flips", _POS)])


def svg_histogram(analysis: QuantityAnalysis, title: str, x_label: str) -> str:
    """Return histograms, each normalised to sum to 1: all samples vs negative flips, side by side in each bin.

    The x axis spans the bins (the data's minimum to its 99th percentile, ``metrics.Histogram``) and 2% more
    on each side, so no round tick stretches it; the last bin also holds everything above its upper edge.
    """
    hist: Histogram = analysis.histogram
    total_all = max(sum(hist.all_counts), 1)
    total_flip = sum(hist.flip_counts)
    series = [("all samples", _ALL, [c / total_all for c in hist.all_counts])]
    if total_flip:
        series.append(("negative flips", _NEG, [c / total_flip for c in hist.flip_counts]))
    plot_h = _H - _PAD_T - _PAD_B
    y = _Axis.of(nice_ticks(0, max(max(values) for _, _, values in series), max_ticks=5), _PAD_T,
                 plot_h, percent=True, flip=True)
    lo, hi = hist.edges[0], hist.edges[-1]
    margin = (hi - lo) * HISTOGRAM_MARGIN
    x = _Axis.within(lo - margin, hi + margin, _PAD_L, _H_PLOT_W, max_ticks=6)
    body = []
    last = len(hist.edges) - 2
    for j, (name, color, values) in enumerate(series):
        for i, v in enumerate(values):
            left, right = x(hist.edges[i]), x(hist.edges[i + 1])
            share = (right - left) * 0.9 / len(series)  # the series side by side, a gap between bins
            bar_x = left + (right - left) * 0.05 + j * share
            where = (f"≥ {hist.edges[i]:.3g}" if i == last
                     else f"in [{hist.edges[i]:.3g}, {hist.edges[i + 1]:.3g})")
            body.append(f'<rect x="{bar_x:.1f}" y="{y(v):.1f}" width="{share:.1f}" '
                        f'height="{y(0) - y(v):.1f}" fill="{color}">'
                        f'<title>{_esc(name)}: {v:.3%} {where}</title></rect>')
    return _svg_frame(title, _H, y, body, x_label + "; the last bin also holds the top 1%", "share of the series",
                      [(name, color) for name, color, _ in series], x=x, width=_HW, plot_right=_PAD_L + _H_PLOT_W)


def _padded(values: list[float], share: float = 0.08) -> tuple[float, float]:
    """Return the range of ``values`` widened by ``share`` of its span on each side, within [0, 1]."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * share if hi > lo else max(abs(hi) * 0.1, 1e-3)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def _ends(rate: Rate) -> list[float]:
    """The value of a rate and the ends of its interval (what a plot of it must show)."""
    assert rate.value is not None
    return [rate.value, *(rate.ci95 or ())]


def _error_bars(x: _Axis, y: _Axis, px: float, py: float, er: Rate, nfr: Rate | None,
                color: str) -> list[str]:
    """Return the 95% interval whiskers (with caps) of one point: ER across, NFR up and down."""
    parts = []
    if er.ci95 is not None:
        x0, x1 = x(er.ci95[0]), x(er.ci95[1])
        parts.append(f'<path d="M{x0:.1f},{py:.1f}H{x1:.1f}M{x0:.1f},{py - 4:.1f}V{py + 4:.1f}'
                     f'M{x1:.1f},{py - 4:.1f}V{py + 4:.1f}" stroke="{color}" fill="none"/>')
    if nfr is not None and nfr.ci95 is not None:
        y0, y1 = y(nfr.ci95[0]), y(nfr.ci95[1])
        parts.append(f'<path d="M{px:.1f},{y0:.1f}V{y1:.1f}M{px - 4:.1f},{y0:.1f}H{px + 4:.1f}'
                     f'M{px - 4:.1f},{y1:.1f}H{px + 4:.1f}" stroke="{color}" fill="none"/>')
    return parts


def svg_pareto(result: CompareResult) -> str:
    """Return a scatter of candidates: error rate (x) vs NFR (y), with 95% intervals as error bars.

    Both axes are zoomed to the points and their intervals (with some padding). The old model is the
    reference: a black square at its own error rate and NFR 0 (by definition), labelled "old", and a
    dashed line at its error rate. Each candidate has its own colour (``CANDIDATE_COLORS``), named in the
    legend right of the plot; Pareto-front candidates are filled, dominated ones hollow. Each point's label
    goes where it overlaps no other label and no point (``place_labels``), else only the legend names it.
    """
    rows = [r for r in result.rows if r.summary.er_new.value is not None and r.summary.nfr.value is not None]
    colors = {r.name: CANDIDATE_COLORS[i % len(CANDIDATE_COLORS)] for i, r in enumerate(result.rows)}
    old_er = result.rows[0].summary.er_old if result.rows else None
    xs = [v for r in rows for v in _ends(r.summary.er_new)]
    if old_er is not None and old_er.value is not None:
        xs += _ends(old_er)
    else:
        old_er = None
    ys = [0.0] + [v for r in rows for v in _ends(r.summary.nfr)]
    plot_h = _SH - _PAD_T - _PAD_B
    plot = (_PAD_L, _PAD_T, _PAD_L + _S_PLOT_W, _PAD_T + plot_h)
    x = _Axis.of(nice_ticks(*_padded(xs or [0.0]), max_ticks=9), _PAD_L, _S_PLOT_W, percent=True)
    y = _Axis.of(nice_ticks(0.0, _padded(ys)[1], max_ticks=7), _PAD_T, plot_h, percent=True, flip=True)
    body: list[str] = []
    points: list[tuple[float, float, str]] = []  # where labels go: (x, y, text)
    bars: list[Box] = []  # the error bars, which labels keep off where they can
    if old_er is not None:
        assert old_er.value is not None
        ox, oy = x(old_er.value), y(0.0)
        body.append(f'<line x1="{ox:.1f}" x2="{ox:.1f}" y1="{y.start:.1f}" y2="{oy:.1f}" '
                    f'stroke="{_OLD}" stroke-dasharray="4 3"/>')
        body += _error_bars(x, y, ox, oy, old_er, None, _OLD)
        bars += _bar_boxes(x, y, ox, oy, old_er, None) + [(ox - 2, y.start, ox + 2, oy)]  # and the dashed line
        body.append(f'<g><title>old model: ER {format_percent(old_er.value)} '
                    f'{format_ci("er_old", old_er.ci95)}, NFR 0 (by definition)</title>'
                    f'<rect x="{ox - 5:.1f}" y="{oy - 5:.1f}" width="10" height="10" fill="{_OLD}"/></g>')
        points.append((ox, oy, "old"))
    for r in rows:
        er, nfr = r.summary.er_new, r.summary.nfr
        assert er.value is not None and nfr.value is not None
        px, py = x(er.value), y(nfr.value)
        color = colors[r.name]
        body += _error_bars(x, y, px, py, er, nfr, color)
        bars += _bar_boxes(x, y, px, py, er, nfr)
        fill = color if r.pareto else "#ffffff"
        body.append(f'<g><title>{_esc(r.name)}: ER {format_percent(er.value)} {format_ci("er_new", er.ci95)}, '
                    f'NFR {format_percent(nfr.value)} {format_ci("nfr", nfr.ci95)}</title>'
                    f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{fill}" stroke="{color}" '
                    f'stroke-width="2"/></g>')
        points.append((px, py, truncate_label(r.name, _LABEL_CHARS)))
    for (px, py, text), box in zip(points, place_labels(points, plot, bars), strict=True):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        cx, cy = min(max(px, x0), x1), min(max(py, y0), y1)  # the box's point nearest the marker
        if math.hypot(cx - px, cy - py) > 14:  # moved away from its point: a line back to it
            body.append(f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{cx:.1f}" y2="{cy:.1f}" class="k"/>')
        body.append(f'<text x="{x0 + 1:.1f}" y="{y1 - 3:.1f}" class="pl">{_esc(text)}</text>')
    body += _pareto_legend(result, colors, old_er is not None)
    return _svg_frame("Error rate vs NFR, 95% intervals (filled = Pareto front)", _SH, y, body,
                      "error rate of the candidate (dashed: the old model's)", "NFR", [], x=x,
                      width=_SW, plot_right=_PAD_L + _S_PLOT_W)


def _bar_boxes(x: _Axis, y: _Axis, px: float, py: float, er: Rate, nfr: Rate | None) -> list[Box]:
    """The boxes of one point's error bars (as ``_error_bars`` draws them)."""
    boxes = []
    if er.ci95 is not None:
        boxes.append((x(er.ci95[0]), py - 4, x(er.ci95[1]), py + 4))
    if nfr is not None and nfr.ci95 is not None:
        boxes.append((px - 4, y(nfr.ci95[1]), px + 4, y(nfr.ci95[0])))
    return boxes


def label_box(x: float, y: float, text: str) -> Box:
    """The box (x0, y0, x1, y1) a point label takes whose ``<text>`` sits at (x, y), anchored at its start."""
    return x - 1, y + 3 - _LABEL_H, x - 1 + len(text) * _LABEL_CHAR_W + 2, y + 3


def place_labels(points: list[tuple[float, float, str]], plot: Box, avoid: list[Box] | None = None
                 ) -> list[Box | None]:
    """Return a box (x0, y0, x1, y1) for each point's label: inside ``plot``, overlapping no point's marker
    and no label placed before; None when no such place is near the point (the legend still names it).

    Tries eight places around the point (right, left, above, below, then the corners), then the same farther
    out, first clear of ``avoid`` too (the error bars), then without it. Greedy, in order: the first points
    keep the closest places.
    """
    markers = [(px - 7, py - 7, px + 7, py + 7) for px, py, _ in points]
    placed: list[Box] = []
    boxes: list[Box | None] = []
    for px, py, text in points:
        w, h = len(text) * _LABEL_CHAR_W + 2, _LABEL_H
        found = None
        for blocked in (markers + (avoid or []), markers):
            for ring in (1, 2, 3, 4, 6):
                d = 9 * ring
                for x0, y0 in ((px + d, py - h / 2), (px - d - w, py - h / 2), (px - w / 2, py - d - h),
                               (px - w / 2, py + d), (px + d * 0.7, py - d * 0.7 - h), (px + d * 0.7, py + d * 0.7),
                               (px - d * 0.7 - w, py - d * 0.7 - h), (px - d * 0.7 - w, py + d * 0.7)):
                    box = (x0, y0, x0 + w, y0 + h)
                    if _inside(box, plot) and not any(_overlap(box, b) for b in blocked + placed):
                        found = box
                        break
                if found is not None:
                    break
            if found is not None:
                break
        if found is not None:
            placed.append(found)
        boxes.append(found)
    return boxes


def _inside(box: Box, area: Box) -> bool:
    return box[0] >= area[0] and box[1] >= area[1] and box[2] <= area[2] and box[3] <= area[3]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _pareto_legend(result: CompareResult, colors: dict[str, str], old: bool) -> list[str]:
    """The legend right of the scatter: the old model, then each candidate in its colour (hollow if dominated)."""
    lx = _PAD_L + _S_PLOT_W + 24
    parts = [f'<text x="{lx}" y="{_PAD_T + 4}" class="lg">Legend (filled: on the Pareto front)</text>']
    row = _PAD_T + 24
    if old:
        parts.append(f'<rect x="{lx}" y="{row - 5}" width="10" height="10" fill="{_OLD}"/>'
                     f'<text x="{lx + 18}" y="{row + 4}" class="lg">old model (NFR 0)</text>')
        row += 20
    for r in result.rows:
        color = colors[r.name]
        fill = color if r.pareto else "#ffffff"
        parts.append(f'<g><title>{_esc(r.name)}</title><circle cx="{lx + 5}" cy="{row}" r="5" fill="{fill}" '
                     f'stroke="{color}" stroke-width="2"/><text x="{lx + 18}" y="{row + 4}" class="lg">'
                     f'{_esc(truncate_label(r.name, 28))}</text></g>')
        row += 20
    return parts
