"""Inline SVG plots for the HTML page: flips per class, margin histograms, error-vs-NFR scatter.

Each function returns a complete ``<svg>`` element as a string. Every piece of user text in
it (class names, candidate names) is already HTML-escaped, so the page inserts it as is.
"""

from __future__ import annotations

import math

from modelupdate.metrics import Histogram, QuantityAnalysis
from modelupdate.workflows.compare import CompareResult
from modelupdate.workflows.flip_report import FlipReport

from .common import class_label, format_percent, worst_classes
from .common import escape_html as _esc

_W, _H = 680, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 60, 20, 48, 58
_PLOT_W, _PLOT_H = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
_NEG, _POS, _ALL = "#c0392b", "#27ae60", "#7f8c8d"


def _nice_max(value: float) -> float:
    """Return the smallest "round" number (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8 x 10^k) >= ``value``.

    Each divides into four axis ticks that print briefly.
    """
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 1.2, 1.6, 2.0, 2.4, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if step * scale >= value * (1 - 1e-12):
            return step * scale
    return 10.0 * scale


def _svg_frame(title: str, y_max: float, y_format: str, body: list[str], x_label: str,
               legend: list[tuple[str, str]]) -> str:
    """Return the ``<svg>`` element: title, y grid with tick labels, ``body``, x label and legend."""
    parts = [f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img" '
             f'aria-label="{_esc(title)}">',
             f'<text x="{_PAD_L}" y="18" class="t">{_esc(title)}</text>']
    for i in range(5):
        frac = i / 4
        y = _PAD_T + _PLOT_H * (1 - frac)
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                     'class="g"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" class="yl">'
                     f'{_esc(y_format.format(y_max * frac))}</text>')
    parts += body
    parts.append(f'<text x="{(_PAD_L + _W - _PAD_R) / 2:.1f}" y="{_H - 6}" class="xl">'
                 f'{_esc(x_label)}</text>')
    for i, (name, color) in enumerate(legend):
        x = _PAD_L + 150 * i
        parts.append(f'<rect x="{x}" y="25" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="35" class="lg">{_esc(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def svg_class_flips(report: FlipReport, max_classes: int = 25) -> str:
    """Return grouped bars: negative and positive flips of the classes with most negative flips."""
    rows = worst_classes(report.per_class, max_classes)
    y_max = _nice_max(max([max(r.negative_flips, r.positive_flips) for r in rows] or [0]))
    slot = _PLOT_W / max(len(rows), 1)
    bar = slot * 0.4
    label_every = max(1, math.ceil(22 / slot))
    body = []
    for i, r in enumerate(rows):
        x0 = _PAD_L + i * slot + slot * 0.1
        for j, (count, color, kind) in enumerate(
                ((r.negative_flips, _NEG, "negative"), (r.positive_flips, _POS, "positive"))):
            h = _PLOT_H * count / y_max
            label = class_label(r.index, report.classes)
            body.append(f'<rect x="{x0 + j * bar:.1f}" y="{_PAD_T + _PLOT_H - h:.1f}" '
                        f'width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                        f'<title>{_esc(label)}: {count} {kind} flips</title></rect>')
        # the axis shows the class index (every k-th when crowded); tooltips have names
        if i % label_every == 0:
            body.append(f'<text x="{x0 + bar:.1f}" y="{_PAD_T + _PLOT_H + 14:.1f}" class="xt">'
                        f'{r.index}</text>')
    title = f"Flips per true class ({len(rows)} of {len(report.per_class)}, most negative first)"
    return _svg_frame(title, y_max, "{:g}", body, "true class", [("negative flips", _NEG),
                                                          ("positive flips", _POS)])


def svg_histogram(analysis: QuantityAnalysis, title: str, x_label: str) -> str:
    """Return overlaid histograms, each normalised to sum to 1: all samples vs negative flips."""
    hist: Histogram = analysis.histogram
    total_all = max(sum(hist.all_counts), 1)
    total_flip = sum(hist.flip_counts)
    series = [("all samples", _ALL, [c / total_all for c in hist.all_counts])]
    if total_flip:
        series.append(("negative flips", _NEG, [c / total_flip for c in hist.flip_counts]))
    y_max = _nice_max(max(max(values) for _, _, values in series))
    bins = len(hist.all_counts)
    width = _PLOT_W / bins
    body = []
    for name, color, values in series:
        for i, v in enumerate(values):
            h = _PLOT_H * v / y_max
            body.append(f'<rect x="{_PAD_L + i * width:.1f}" y="{_PAD_T + _PLOT_H - h:.1f}" '
                        f'width="{width:.1f}" height="{h:.1f}" fill="{color}" '
                        f'fill-opacity="0.55"><title>{_esc(name)}: {v:.3%} in '
                        f'[{hist.edges[i]:.3g}, {hist.edges[i + 1]:.3g})</title></rect>')
    for i in range(0, bins + 1, max(bins // 6, 1)):
        x = _PAD_L + i * width
        body.append(f'<text x="{x:.1f}" y="{_PAD_T + _PLOT_H + 16:.1f}" class="xt">'
                    f'{hist.edges[i]:.3g}</text>')
    return _svg_frame(title, y_max, "{:.1%}", body, x_label,
                      [(name, color) for name, color, _ in series])


def svg_pareto(result: CompareResult) -> str:
    """Return a scatter of candidates: error rate (x) vs NFR (y); Pareto-front points filled."""
    points = [(r.name, r.summary.er_new.value, r.summary.nfr.value, r.pareto)
              for r in result.rows
              if r.summary.er_new.value is not None and r.summary.nfr.value is not None]
    x_max = _nice_max(max([p[1] for p in points] or [0]) * 1.1)
    y_max = _nice_max(max([p[2] for p in points] or [0]) * 1.1)
    body = []
    for name, er, nfr, pareto in points:
        x = _PAD_L + _PLOT_W * er / x_max
        y = _PAD_T + _PLOT_H * (1 - nfr / y_max)
        fill = _NEG if pareto else "none"
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{_NEG}">'
                    f'<title>{_esc(name)}: ER {format_percent(er)}, NFR '
                    f'{format_percent(nfr)}</title></circle>')
        body.append(f'<text x="{x + 8:.1f}" y="{y + 4:.1f}" class="lg">{_esc(name)}</text>')
    for i in range(5):
        x = _PAD_L + _PLOT_W * i / 4
        body.append(f'<text x="{x:.1f}" y="{_PAD_T + _PLOT_H + 16:.1f}" class="xt">'
                    f'{x_max * i / 4:.3g}</text>')
    return _svg_frame("Error rate vs NFR (filled = Pareto front)", y_max, "{:.3g}", body,
                      "error rate of the candidate (fraction; y: NFR)", [("Pareto front", _NEG)])
