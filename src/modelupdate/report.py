"""Renderers of flip-report and compare results: rich, JSON, Markdown, HTML, CSV.

Every renderer returns a string or a rich renderable and never prints; the CLI
decides where things go. Undefined values are "n/a" for people and ``null`` in
JSON, never 0.

JSON of a flip report (``"schema": 1``; documented in docs/ci-gate.md)::

    {"schema": 1,
     "counts": {"n", "old_correct", "new_correct", "negative_flips", "positive_flips"},
     "metrics": {"er_old" | "er_new" | "nfr" | "pfr" | "rel_nfr" | "nfi" | "btc" | "bec":
                 {"value": number|null, "ci95": [lo, hi]|null}},
     "mcnemar_p": number,
     "per_class": [{"class": int, "name": str|null, "n", "old_correct", "new_correct",
                    "negative_flips", "positive_flips",
                    "old_acc" | "new_acc" | "nfr": {"value": number|null, "ci95": [lo, hi]|null}}],
     "gates": [{"name": str, "threshold": number, "value": number|null, "passed": bool}],
     "passed": bool}

JSON of a compare result (``"schema": 1``)::

    {"schema": 1, "old": str, "n": int,
     "candidates": [{"name", "source", "counts": {...as above}, "metrics": {...as above},
                     "mcnemar_p", "params": int|null, "ms_per_image": number|null,
                     "pareto": bool}],
     "pairwise": [{"a", "b", "a_only_negative_flips", "b_only_negative_flips", "p_value"}]}
"""

from __future__ import annotations

import html
import json
import math

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from modelupdate.metrics import (
    ClassRow,
    FlipSummary,
    Histogram,
    MarginAnalysis,
    QuantityAnalysis,
    Rate,
)
from modelupdate.workflows.compare import CompareResult
from modelupdate.workflows.flip_report import FlipReport

JSON_SCHEMA_VERSION = 1

#: people-facing names of the rates, in report order
RATE_LABELS = {
    "er_old": "ER old",
    "er_new": "ER new",
    "nfr": "NFR (negative flips)",
    "pfr": "PFR (positive flips)",
    "rel_nfr": "relative NFR",
    "nfi": "NFI (new errors that are flips)",
    "btc": "BTC (old-correct kept)",
    "bec": "BEC (old-wrong still wrong)",
}

NA = "n/a"


# --------------------------------------------------------------------------- formatting


def format_percent(value: float | None) -> str:
    """0.0213 -> "2.13%"; small rates keep three decimals; None -> "n/a"."""
    if value is None:
        return NA
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3%}"
    return f"{value:.2%}"


def format_rate(name: str, value: float | None) -> str:
    """Relative NFR is a ratio of rates (1.0 = as many flips as independent errors)."""
    if value is None:
        return NA
    return f"{value:.3f}" if name == "rel_nfr" else format_percent(value)


def format_ci(name: str, ci: tuple[float, float] | None) -> str:
    if ci is None:
        return NA
    return f"[{format_rate(name, ci[0])}, {format_rate(name, ci[1])}]"


def format_counts(name: str, rate: Rate, summary: FlipSummary) -> str:
    """``k/n`` behind a rate; for relative NFR: flips vs those expected if independent."""
    if name == "rel_nfr":
        c = summary.counts
        if c.n == 0 or rate.denominator == 0:
            return f"{c.negative_flips} flips, expected n/a"
        return f"{c.negative_flips} flips vs {rate.denominator / c.n:.1f} if independent"
    return f"{rate.numerator:,}/{rate.denominator:,}"


def format_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def _worst_classes(rows: list[ClassRow], limit: int | None) -> list[ClassRow]:
    ordered = sorted(rows, key=lambda r: (-r.negative_flips, r.index))
    return ordered if limit is None else ordered[:limit]


def _class_label(index: int, classes: list[str] | None) -> str:
    if classes is None:
        return str(index)
    return f"{index} {classes[index]}"


# --------------------------------------------------------------------------- JSON


def _rate_dict(rate: Rate) -> dict:
    return {"value": rate.value, "ci95": list(rate.ci95) if rate.ci95 is not None else None}


def _summary_dicts(summary: FlipSummary) -> tuple[dict, dict]:
    return summary.counts.as_dict(), {k: _rate_dict(r) for k, r in summary.rates().items()}


def flip_report_to_dict(report: FlipReport) -> dict:
    """The stable JSON object of a flip report (see the module docstring)."""
    counts, metrics = _summary_dicts(report.summary)
    return {
        "schema": JSON_SCHEMA_VERSION,
        "counts": counts,
        "metrics": metrics,
        "mcnemar_p": report.summary.mcnemar_p,
        "per_class": [
            {
                "class": row.index,
                "name": row.name,
                "n": row.n,
                "old_correct": row.old_correct,
                "new_correct": row.new_correct,
                "negative_flips": row.negative_flips,
                "positive_flips": row.positive_flips,
                "old_acc": _rate_dict(row.old_acc),
                "new_acc": _rate_dict(row.new_acc),
                "nfr": _rate_dict(row.nfr),
            }
            for row in report.per_class
        ],
        "gates": [g.as_dict() for g in report.gates],
        "passed": report.passed,
    }


def flip_report_json(report: FlipReport) -> str:
    # allow_nan=False: an undefined value must be null, never NaN
    return json.dumps(flip_report_to_dict(report), indent=2, allow_nan=False) + "\n"


def compare_to_dict(result: CompareResult) -> dict:
    candidates = []
    for row in result.rows:
        counts, metrics = _summary_dicts(row.summary)
        candidates.append({
            "name": row.name,
            "source": row.source,
            "counts": counts,
            "metrics": metrics,
            "mcnemar_p": row.summary.mcnemar_p,
            "params": row.params,
            "ms_per_image": row.ms_per_image,
            "pareto": row.pareto,
        })
    return {
        "schema": JSON_SCHEMA_VERSION,
        "old": result.old_source,
        "n": result.n,
        "candidates": candidates,
        "pairwise": [
            {"a": t.a, "b": t.b, "a_only_negative_flips": t.a_only,
             "b_only_negative_flips": t.b_only, "p_value": t.p_value}
            for t in result.pairwise
        ],
    }


def compare_json(result: CompareResult) -> str:
    return json.dumps(compare_to_dict(result), indent=2, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- CSV


def flips_csv(report: FlipReport) -> str:
    """Every flipped sample: ``id,target,old_pred,new_pred,flip`` (flip: negative/positive)."""
    f = report.flips
    kinds = ["negative" if k < 0 else "positive" for k in f.kind.tolist()]
    lines = ["id,target,old_pred,new_pred,flip"]
    lines += [
        f"{i},{t},{o},{n},{k}"
        for i, t, o, n, k in zip(f.ids.tolist(), f.targets.tolist(), f.old_preds.tolist(),
                                 f.new_preds.tolist(), kinds, strict=True)
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- table rows
# Plain rows shared by the rich, Markdown and HTML renderers.


def _summary_rows(summary: FlipSummary) -> list[list[str]]:
    return [
        [RATE_LABELS[name], format_rate(name, rate.value), format_counts(name, rate, summary),
         format_ci(name, rate.ci95)]
        for name, rate in summary.rates().items()
    ]


SUMMARY_HEADER = ["metric", "value", "counts", "95% CI"]
CLASS_HEADER = ["class", "n", "old acc", "new acc", "neg flips", "pos flips", "NFR in class",
                "NFR 95% CI"]
PAIR_HEADER = ["true class", "new prediction", "negative flips", "share of flips"]
GATE_HEADER = ["gate", "threshold", "compared", "result", "detail"]


def _class_rows(rows: list[ClassRow], classes: list[str] | None) -> list[list[str]]:
    return [
        [_class_label(r.index, classes), f"{r.n:,}", format_percent(r.old_acc.value),
         format_percent(r.new_acc.value), f"{r.negative_flips:,}", f"{r.positive_flips:,}",
         format_percent(r.nfr.value), format_ci("nfr", r.nfr.ci95)]
        for r in rows
    ]


def _pair_rows(report: FlipReport) -> list[list[str]]:
    return [
        [_class_label(p.true_class, report.classes), _class_label(p.new_pred, report.classes),
         f"{p.count:,}", format_percent(p.share)]
        for p in report.top_pairs
    ]


def _gate_rows(report: FlipReport) -> list[list[str]]:
    def shown(name: str, v: float | None) -> str:
        return format_rate("rel_nfr" if name == "max-rel-nfr" else "x", v)

    return [
        [g.name, shown(g.name, g.threshold), shown(g.name, g.value),
         "PASS" if g.passed else "FAIL", g.detail]
        for g in report.gates
    ]


def _margin_header() -> list[str]:
    return ["quantile", "old margin: all", "old margin: neg flips", "logit change: all",
            "logit change: neg flips"]


def _margin_rows(m: MarginAnalysis) -> list[list[str]]:
    def cell(values: tuple[float, ...] | None, i: int) -> str:
        return NA if values is None else f"{values[i]:.3f}"

    return [
        [f"{q:g}", cell(m.old_margin.all, i), cell(m.old_margin.negative_flips, i),
         cell(m.logit_change.all, i), cell(m.logit_change.negative_flips, i)]
        for i, q in enumerate(m.old_margin.quantiles)
    ]


def _mcnemar_line(summary: FlipSummary) -> str:
    c = summary.counts
    return (f"McNemar exact test, negative vs positive flips ({c.negative_flips:,} vs "
            f"{c.positive_flips:,}): p = {format_p(summary.mcnemar_p)}")


def _verdict_lines(report: FlipReport) -> list[str]:
    if not report.gates:
        return ["no gates set"]
    return [f"{'PASS' if g.passed else 'FAIL'}  {g.name}: {g.detail}" for g in report.gates]


# --------------------------------------------------------------------------- rich


def terminal_safe(text: str) -> str:
    """``text`` with control characters (ANSI escapes, bells, carriage returns) shown as ``\\xNN``:
    names and paths from files must not drive the terminal."""
    return "".join(c if c in "\n\t" or c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _rich_table(title: str, header: list[str], rows: list[list[str]], caption: str | None = None,
                numeric_from: int = 1) -> Table:
    table = Table(title=title, caption=caption, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i >= numeric_from else "left")
    for row in rows:
        table.add_row(*row)
    return table


def flip_report_rich(report: FlipReport, max_classes: int = 20) -> Group:
    """Summary, per-class, top pairs, margins and the PASS/FAIL banner, as one renderable."""
    parts: list = [Text(terminal_safe(f"old: {report.old_source}\nnew: {report.new_source}"), style="dim")]
    parts.append(_rich_table("Summary", SUMMARY_HEADER, _summary_rows(report.summary)))
    parts.append(Text(_mcnemar_line(report.summary)))
    shown = _worst_classes(report.per_class, max_classes)
    caption = None
    if len(shown) < len(report.per_class):
        caption = f"{len(shown)} of {len(report.per_class)} classes, most negative flips first"
    parts.append(_rich_table("Per class", CLASS_HEADER, _class_rows(shown, report.classes),
                             caption=caption))
    if report.top_pairs:
        parts.append(_rich_table("Top flip pairs (true class -> new prediction)", PAIR_HEADER,
                                 _pair_rows(report), numeric_from=2))
    else:
        parts.append(Text("Top flip pairs: no negative flips"))
    if report.margins is not None:
        parts.append(_rich_table(
            "Margin analysis (old top-1 margin; L2 change of logits new - old)",
            _margin_header(), _margin_rows(report.margins)))
    else:
        parts.append(Text("Margin analysis: n/a (needs logits for both models)"))
    style = "bold green" if report.passed else "bold red"
    title = "PASS" if report.passed else "FAIL"
    if report.gates:
        title += f" (gates on {report.gate_on})"
    parts.append(Panel("\n".join(_verdict_lines(report)), title=title, border_style=style,
                       title_align="left"))
    return Group(*parts)


def _compare_rows(result: CompareResult) -> list[list[str]]:
    rows = []
    for row in result.rows:
        s = row.summary
        rows.append([
            row.name + (" *" if row.pareto else ""),
            format_percent(s.er_new.value),
            format_percent(s.nfr.value),
            format_ci("nfr", s.nfr.ci95),
            format_rate("rel_nfr", s.rel_nfr.value),
            format_percent(s.nfi.value),
            format_percent(s.pfr.value),
            format_percent(s.btc.value),
            format_percent(s.bec.value),
            f"{row.params:,}" if row.params is not None else NA,
            f"{row.ms_per_image:.3f}" if row.ms_per_image is not None else NA,
        ])
    return rows


COMPARE_HEADER = ["candidate", "ER", "NFR", "NFR 95% CI", "rel NFR", "NFI", "PFR", "BTC", "BEC",
                  "params", "ms/image"]
PAIRWISE_HEADER = ["a", "b", "only a flips", "only b flips", "p (exact)"]


def _pairwise_rows(result: CompareResult) -> list[list[str]]:
    return [[t.a, t.b, f"{t.a_only:,}", f"{t.b_only:,}", format_p(t.p_value)]
            for t in result.pairwise]


def compare_rich(result: CompareResult) -> Group:
    parts: list = [Text(terminal_safe(f"old: {result.old_source}  ({result.n:,} samples)"), style="dim")]
    # two tables of at most 7 columns, so that each fits an 80-column terminal
    rows = _compare_rows(result)
    split = COMPARE_HEADER.index("BTC")
    parts.append(_rich_table("Candidates: errors and flips (* = on the error-NFR Pareto front)",
                             COMPARE_HEADER[:split], [r[:split] for r in rows]))
    parts.append(_rich_table("Candidates: compatibility and cost", COMPARE_HEADER[:1] + COMPARE_HEADER[split:],
                             [r[:1] + r[split:] for r in rows]))
    if result.pairwise:
        parts.append(_rich_table("Pairwise NFR tests (McNemar exact on negative flips)",
                                 PAIRWISE_HEADER, _pairwise_rows(result), numeric_from=2))
    return Group(*parts)


# --------------------------------------------------------------------------- Markdown


def _md_code(text: str) -> str:
    """A path or name shown as inline code: HTML-escaped, backticks and newlines neutralised."""
    return "`" + html.escape(text, quote=False).replace("`", "'").replace("\n", " ") + "`"


def _md_cell(text: str) -> str:
    # class names and paths are data: no HTML or table syntax may leak through
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def flip_report_markdown(report: FlipReport, max_classes: int = 20) -> str:
    """A GitHub-flavoured Markdown report (fit for ``$GITHUB_STEP_SUMMARY``)."""
    verdict = "PASS" if report.passed else "FAIL"
    out = [
        f"## modelupdate flip report: {verdict}",
        "",
        f"old: {_md_code(report.old_source)}  ",
        f"new: {_md_code(report.new_source)}",
        "",
    ]
    if report.gates:
        out += [f"Gates (on {report.gate_on}):", "", _md_table(GATE_HEADER, _gate_rows(report)), ""]
    else:
        out += ["No gates set.", ""]
    out += ["### Summary", "", _md_table(SUMMARY_HEADER, _summary_rows(report.summary)), "",
            _mcnemar_line(report.summary), ""]
    shown = _worst_classes(report.per_class, max_classes)
    out += ["### Per class (most negative flips first)", "",
            _md_table(CLASS_HEADER, _class_rows(shown, report.classes)), ""]
    if len(shown) < len(report.per_class):
        out += ["<details><summary>All classes</summary>", "",
                _md_table(CLASS_HEADER, _class_rows(report.per_class, report.classes)), "",
                "</details>", ""]
    out += ["### Top flip pairs (true class → new prediction)", ""]
    out += [_md_table(PAIR_HEADER, _pair_rows(report)) if report.top_pairs
            else "No negative flips.", ""]
    out += ["### Margin analysis", ""]
    if report.margins is not None:
        out += ["Old model's top-1 margin (top1 − top2 logit) and L2 norm of the logit change "
                "(new − old), for all samples vs negative flips.", "",
                _md_table(_margin_header(), _margin_rows(report.margins)), ""]
    else:
        out += ["n/a (needs logits for both models)", ""]
    return "\n".join(out)


def compare_markdown(result: CompareResult) -> str:
    out = ["## modelupdate compare", "", f"old: {_md_code(result.old_source)} ({result.n:,} samples)", "",
           "`*` = on the error-NFR Pareto front", "",
           _md_table(COMPARE_HEADER, _compare_rows(result)), ""]
    if result.pairwise:
        out += ["### Pairwise NFR tests (McNemar exact on negative flips)", "",
                _md_table(PAIRWISE_HEADER, _pairwise_rows(result)), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- SVG

_W, _H = 680, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 60, 20, 48, 58
_NEG, _POS, _ALL = "#c0392b", "#27ae60", "#7f8c8d"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(value: float) -> float:
    """Smallest "round" number (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8 x 10^k) >= ``value``.

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
    plot_h = _H - _PAD_T - _PAD_B
    parts = [f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img" '
             f'aria-label="{_esc(title)}">',
             f'<text x="{_PAD_L}" y="18" class="t">{_esc(title)}</text>']
    for i in range(5):
        frac = i / 4
        y = _PAD_T + plot_h * (1 - frac)
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
    """Grouped bars: negative and positive flips of the classes with most negative flips."""
    rows = _worst_classes(report.per_class, max_classes)
    y_max = _nice_max(max([max(r.negative_flips, r.positive_flips) for r in rows] or [0]))
    plot_w = _W - _PAD_L - _PAD_R
    plot_h = _H - _PAD_T - _PAD_B
    slot = plot_w / max(len(rows), 1)
    bar = slot * 0.4
    label_every = max(1, math.ceil(22 / slot))
    body = []
    for i, r in enumerate(rows):
        x0 = _PAD_L + i * slot + slot * 0.1
        for j, (count, color, kind) in enumerate(
                ((r.negative_flips, _NEG, "negative"), (r.positive_flips, _POS, "positive"))):
            h = plot_h * count / y_max
            label = _class_label(r.index, report.classes)
            body.append(f'<rect x="{x0 + j * bar:.1f}" y="{_PAD_T + plot_h - h:.1f}" '
                        f'width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                        f'<title>{_esc(label)}: {count} {kind} flips</title></rect>')
        # the axis shows the class index (every k-th when crowded); tooltips have names
        if i % label_every == 0:
            body.append(f'<text x="{x0 + bar:.1f}" y="{_PAD_T + plot_h + 14:.1f}" class="xt">'
                        f'{r.index}</text>')
    title = f"Flips per true class ({len(rows)} of {len(report.per_class)}, most negative first)"
    return _svg_frame(title, y_max, "{:g}", body, "true class", [("negative flips", _NEG),
                                                          ("positive flips", _POS)])


def svg_histogram(analysis: QuantityAnalysis, title: str, x_label: str) -> str:
    """Overlaid histograms, each normalised to sums of 1: all samples vs negative flips."""
    hist: Histogram = analysis.histogram
    total_all = max(sum(hist.all_counts), 1)
    total_flip = sum(hist.flip_counts)
    series = [("all samples", _ALL, [c / total_all for c in hist.all_counts])]
    if total_flip:
        series.append(("negative flips", _NEG, [c / total_flip for c in hist.flip_counts]))
    y_max = _nice_max(max(max(values) for _, _, values in series))
    plot_w = _W - _PAD_L - _PAD_R
    plot_h = _H - _PAD_T - _PAD_B
    bins = len(hist.all_counts)
    width = plot_w / bins
    body = []
    for name, color, values in series:
        for i, v in enumerate(values):
            h = plot_h * v / y_max
            body.append(f'<rect x="{_PAD_L + i * width:.1f}" y="{_PAD_T + plot_h - h:.1f}" '
                        f'width="{width:.1f}" height="{h:.1f}" fill="{color}" '
                        f'fill-opacity="0.55"><title>{_esc(name)}: {v:.3%} in '
                        f'[{hist.edges[i]:.3g}, {hist.edges[i + 1]:.3g})</title></rect>')
    for i in range(0, bins + 1, max(bins // 6, 1)):
        x = _PAD_L + i * width
        body.append(f'<text x="{x:.1f}" y="{_PAD_T + plot_h + 16:.1f}" class="xt">'
                    f'{hist.edges[i]:.3g}</text>')
    return _svg_frame(title, y_max, "{:.1%}", body, x_label,
                      [(name, color) for name, color, _ in series])


def svg_pareto(result: CompareResult) -> str:
    """Scatter of candidates: error rate (x) vs NFR (y); Pareto-front points filled."""
    points = [(r.name, r.summary.er_new.value, r.summary.nfr.value, r.pareto)
              for r in result.rows
              if r.summary.er_new.value is not None and r.summary.nfr.value is not None]
    x_max = _nice_max(max([p[1] for p in points] or [0]) * 1.1)
    y_max = _nice_max(max([p[2] for p in points] or [0]) * 1.1)
    plot_w = _W - _PAD_L - _PAD_R
    plot_h = _H - _PAD_T - _PAD_B
    body = []
    for name, er, nfr, pareto in points:
        x = _PAD_L + plot_w * er / x_max
        y = _PAD_T + plot_h * (1 - nfr / y_max)
        fill = _NEG if pareto else "none"
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{_NEG}">'
                    f'<title>{_esc(name)}: ER {format_percent(er)}, NFR '
                    f'{format_percent(nfr)}</title></circle>')
        body.append(f'<text x="{x + 8:.1f}" y="{y + 4:.1f}" class="lg">{_esc(name)}</text>')
    for i in range(5):
        x = _PAD_L + plot_w * i / 4
        body.append(f'<text x="{x:.1f}" y="{_PAD_T + plot_h + 16:.1f}" class="xt">'
                    f'{x_max * i / 4:.3g}</text>')
    return _svg_frame("Error rate vs NFR (filled = Pareto front)", y_max, "{:.3g}", body,
                      "error rate of the candidate (fraction; y: NFR)", [("Pareto front", _NEG)])


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;
max-width:1100px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
.banner{padding:0.6em 1em;border-radius:6px;color:#fff;font-weight:bold}
.pass{background:#27ae60}.fail{background:#c0392b}
.banner ul{margin:0.3em 0 0;font-weight:normal}
svg{display:block;margin:0.5em 0 1.5em;font-size:11px}
svg .t{font-size:13px;font-weight:bold}
svg .g{stroke:#e5e5e5}
svg .yl{text-anchor:end}
svg .xl,svg .xt{text-anchor:middle}
code{background:#f3f3f3;padding:1px 4px}
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_page(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        *body,
        "</body></html>",
        "",
    ])


def flip_report_html(report: FlipReport, max_classes: int = 25) -> str:
    """One self-contained HTML file: tables plus inline SVG plots; no scripts, no network."""
    verdict = "PASS" if report.passed else "FAIL"
    gates = "".join(f"<li>{_esc(line)}</li>" for line in _verdict_lines(report))
    on = f" (gates on {report.gate_on})" if report.gates else ""
    body = [
        "<h1>modelupdate flip report</h1>",
        f"<p>old: <code>{_esc(report.old_source)}</code><br>"
        f"new: <code>{_esc(report.new_source)}</code></p>",
        f'<div class="banner {verdict.lower()}">{verdict}{_esc(on)}<ul>{gates}</ul></div>',
        "<h2>Summary</h2>",
        _html_table(SUMMARY_HEADER, _summary_rows(report.summary)),
        f"<p>{_esc(_mcnemar_line(report.summary))}</p>",
        "<h2>Flips per class</h2>",
        svg_class_flips(report, max_classes),
        _html_table(CLASS_HEADER, _class_rows(_worst_classes(report.per_class, None),
                                              report.classes)),
        "<h2>Top flip pairs (true class → new prediction)</h2>",
        _html_table(PAIR_HEADER, _pair_rows(report)) if report.top_pairs
        else "<p>No negative flips.</p>",
        "<h2>Margin analysis</h2>",
    ]
    if report.margins is not None:
        m = report.margins
        body += [
            "<p>Do negative flips sit near the old model's decision boundary? Old top-1 "
            "margin (top1 − top2 logit) and L2 norm of the logit change (new − old).</p>",
            svg_histogram(m.old_margin, "Old model's top-1 margin", "top1 - top2 logit (old)"),
            svg_histogram(m.logit_change, "Logit change", "L2 norm of new - old logits"),
            _html_table(_margin_header(), _margin_rows(m)),
        ]
    else:
        body.append("<p>n/a (needs logits for both models)</p>")
    return _html_page(f"modelupdate flip report: {verdict}", body)


def compare_html(result: CompareResult) -> str:
    body = [
        "<h1>modelupdate compare</h1>",
        f"<p>old: <code>{_esc(result.old_source)}</code> ({result.n:,} samples); "
        "* = on the error-NFR Pareto front</p>",
        _html_table(COMPARE_HEADER, _compare_rows(result)),
        svg_pareto(result),
    ]
    if result.pairwise:
        body += ["<h2>Pairwise NFR tests (McNemar exact on negative flips)</h2>",
                 _html_table(PAIRWISE_HEADER, _pairwise_rows(result))]
    return _html_page("modelupdate compare", body)
