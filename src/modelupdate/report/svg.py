"""Inline SVG plots for the HTML page: flips per class, margin histograms, error-vs-NFR scatter.

Each plot function returns a complete ``<svg>`` element as a string. Every piece of user text in
it (class names, candidate names) is already HTML-escaped, so the page inserts it as is. The axes
carry round ticks (``nice_ticks``: multiples of 1, 2 or 5 x 10^k) labelled briefly
(``tick_labels``); class names too long for the axis are cut (``truncate_label``) with the full
name in the label's ``<title>`` tooltip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelupdate.metrics import Histogram, QuantityAnalysis, Rate
from modelupdate.workflows.compare import CompareResult
from modelupdate.workflows.flip_report import FlipReport

from .common import class_label, format_ci, format_percent, worst_classes
from .common import escape_html as _esc

_W, _H = 680, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 20, 48, 58
_PLOT_W = _W - _PAD_L - _PAD_R
_NEG, _POS, _ALL, _OLD = "#c0392b", "#27ae60", "#7f8c8d", "#222222"
_CHAR_W = 6.2  # width of one character of the 11px axis font, roughly
_CLASS_LABEL_CHARS = 14  # a class name longer than this is cut on the axis (full name in the tooltip)
_CLASS_LABEL_ANGLE = 40  # degrees; class names are slanted when they do not fit side by side


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

    @classmethod
    def of(cls, ticks: list[float], start: float, length: float, percent: bool = False,
           flip: bool = False) -> _Axis:
        return cls(ticks, tick_labels(ticks, percent), start, length, flip)

    def __call__(self, value: float) -> float:
        """The pixel coordinate of ``value``."""
        lo, hi = self.ticks[0], self.ticks[-1]
        frac = (value - lo) / (hi - lo)
        return self.start + self.length * ((1 - frac) if self.flip else frac)


def _svg_frame(title: str, height: int, y: _Axis, body: list[str], x_label: str, y_label: str,
               legend: list[tuple[str, str]], x: _Axis | None = None) -> str:
    """Return the ``<svg>`` element: title, y grid with tick labels, x ticks (if ``x``), ``body``,
    axis labels and legend."""
    parts = [f'<svg width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" role="img" '
             f'aria-label="{_esc(title)}">',
             f'<text x="{_PAD_L}" y="18" class="t">{_esc(title)}</text>']
    for tick, label in zip(y.ticks, y.labels, strict=True):
        py = y(tick)
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{py:.1f}" y2="{py:.1f}" class="g"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{py + 4:.1f}" class="yl">{_esc(label)}</text>')
    axis_y = y.start + y.length
    if x is not None:
        for tick, label in zip(x.ticks, x.labels, strict=True):
            px = x(tick)
            parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{axis_y:.1f}" y2="{axis_y + 4:.1f}" '
                         'class="k"/>')
            parts.append(f'<text x="{px:.1f}" y="{axis_y + 16:.1f}" class="xt">{_esc(label)}</text>')
    parts += body
    parts.append(f'<text x="{(_PAD_L + _W - _PAD_R) / 2:.1f}" y="{height - 6}" class="xl">'
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
    """Return overlaid histograms, each normalised to sum to 1: all samples vs negative flips."""
    hist: Histogram = analysis.histogram
    total_all = max(sum(hist.all_counts), 1)
    total_flip = sum(hist.flip_counts)
    series = [("all samples", _ALL, [c / total_all for c in hist.all_counts])]
    if total_flip:
        series.append(("negative flips", _NEG, [c / total_flip for c in hist.flip_counts]))
    plot_h = _H - _PAD_T - _PAD_B
    y = _Axis.of(nice_ticks(0, max(max(values) for _, _, values in series), max_ticks=5), _PAD_T,
                 plot_h, percent=True, flip=True)
    x = _Axis.of(nice_ticks(hist.edges[0], hist.edges[-1], max_ticks=7), _PAD_L, _PLOT_W)
    body = []
    for name, color, values in series:
        for i, v in enumerate(values):
            left, right = x(hist.edges[i]), x(hist.edges[i + 1])
            body.append(f'<rect x="{left:.1f}" y="{y(v):.1f}" width="{right - left:.1f}" '
                        f'height="{y(0) - y(v):.1f}" fill="{color}" fill-opacity="0.55">'
                        f'<title>{_esc(name)}: {v:.3%} in [{hist.edges[i]:.3g}, '
                        f'{hist.edges[i + 1]:.3g})</title></rect>')
    return _svg_frame(title, _H, y, body, x_label, "share of the series",
                      [(name, color) for name, color, _ in series], x=x)


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
    dashed line at its error rate. Pareto-front candidates are filled.
    """
    rows = [r for r in result.rows if r.summary.er_new.value is not None and r.summary.nfr.value is not None]
    old_er = result.rows[0].summary.er_old if result.rows else None
    xs = [v for r in rows for v in _ends(r.summary.er_new)]
    if old_er is not None and old_er.value is not None:
        xs += _ends(old_er)
    else:
        old_er = None
    ys = [0.0] + [v for r in rows for v in _ends(r.summary.nfr)]
    plot_h = _H - _PAD_T - _PAD_B
    x = _Axis.of(nice_ticks(*_padded(xs or [0.0]), max_ticks=7), _PAD_L, _PLOT_W, percent=True)
    y = _Axis.of(nice_ticks(0.0, _padded(ys)[1], max_ticks=5), _PAD_T, plot_h, percent=True, flip=True)
    body = []
    if old_er is not None:
        assert old_er.value is not None
        ox, oy = x(old_er.value), y(0.0)
        body.append(f'<line x1="{ox:.1f}" x2="{ox:.1f}" y1="{y.start:.1f}" y2="{oy:.1f}" '
                    f'stroke="{_OLD}" stroke-dasharray="4 3"/>')
        body += _error_bars(x, y, ox, oy, old_er, None, _OLD)
        body.append(f'<g><title>old model: ER {format_percent(old_er.value)} '
                    f'{format_ci("er_old", old_er.ci95)}, NFR 0 (by definition)</title>'
                    f'<rect x="{ox - 5:.1f}" y="{oy - 5:.1f}" width="10" height="10" fill="{_OLD}"/></g>')
        body.append(f'<text x="{ox + 8:.1f}" y="{oy - 8:.1f}" class="lg">old</text>')
    for r in rows:
        er, nfr = r.summary.er_new, r.summary.nfr
        assert er.value is not None and nfr.value is not None
        px, py = x(er.value), y(nfr.value)
        body += _error_bars(x, y, px, py, er, nfr, _NEG)
        fill = _NEG if r.pareto else "#ffffff"
        body.append(f'<g><title>{_esc(r.name)}: ER {format_percent(er.value)} {format_ci("er_new", er.ci95)}, '
                    f'NFR {format_percent(nfr.value)} {format_ci("nfr", nfr.ci95)}</title>'
                    f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{fill}" stroke="{_NEG}"/></g>')
        body.append(f'<text x="{px + 8:.1f}" y="{py - 6:.1f}" class="lg">{_esc(r.name)}</text>')
    return _svg_frame("Error rate vs NFR, 95% intervals (filled = Pareto front)", _H, y, body,
                      "error rate of the candidate (dashed: the old model's)", "NFR",
                      [("Pareto front", _NEG), ("old model (NFR 0)", _OLD)], x=x)
