"""Pieces shared by several renderers: number formatting and the plain table rows.

Every function here returns plain strings (or lists of them); the format modules
only lay them out, so a value reads the same in the terminal, Markdown and HTML.
Undefined values are "n/a" (``NA``), never 0.
"""

from __future__ import annotations

import html
from typing import cast

from modelupdate.analysis import CompareResult, FlipReport
from modelupdate.config import GateSpec
from modelupdate.gates import GateResult, failed_gates, gate_settings, gates_set
from modelupdate.metrics import ClassRow, FlipSummary, MarginAnalysis, Rate

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

#: one line per metric for the reports' "Metrics" section (docs/ci-gate.md, ``modelupdate.metrics``); each
#: name is the one the tables use (``RATE_LABELS``). o: the old model is right; n: the new one is.
GLOSSARY = [
    ("ER", "error rate: share of all samples a model gets wrong."),
    (RATE_LABELS["nfr"], "#(o and not n) / N: share of all samples the old model gets right and the "
                         "new one wrong (regressions)."),
    (RATE_LABELS["pfr"], "#(not o and n) / N: share of all samples the old model gets wrong and the "
                         "new one right (fixes)."),
    (RATE_LABELS["rel_nfr"], "NFR / ((1 − ER old) · ER new): negative flips relative to what "
                             "independent errors would give (1.0 = as many); a ratio, not a share."),
    (RATE_LABELS["nfi"], "NFR / ER new: share of the new model's errors that are regressions."),
    (RATE_LABELS["btc"], "#(o and n) / #o: backward trust compatibility, share of the old model's "
                         "right answers the new one keeps."),
    (RATE_LABELS["bec"], "#(not o and not n) / #(not o): backward error compatibility, share of the "
                         "old model's errors the new one also gets wrong."),
]
GLOSSARY_NOTE = ("Rates are pooled over all N samples; one whose denominator is zero is n/a; intervals "
                 "are 95% Wilson intervals.")
GLOSSARY_POINTER = ("Full definitions: the \"Metrics glossary\" section of the CI-gate guide "
                    "(docs/ci-gate.md).")

SUMMARY_HEADER = ["metric", "value", "counts", "95% CI"]
CLASS_HEADER = ["class", "n", "old acc", "new acc", "neg flips", "pos flips", "NFR in class",
                "NFR 95% CI"]
PAIR_HEADER = ["true class", "new prediction", "negative flips", "share of flips"]
FLIP_SAMPLE_HEADER = ["sample", "true class", "old prediction", "new prediction"]
#: negative flips listed by sample in the Markdown and HTML reports (all of them: --flips-csv)
MAX_FLIP_SAMPLES = 50
MARGIN_HEADER = ["quantile", "old margin: all", "old margin: neg flips", "logit change: all",
                 "logit change: neg flips"]
COMPARE_HEADER = ["candidate", "ER", "NFR", "NFR 95% CI", "rel NFR", "NFI", "PFR", "BTC", "BEC",
                  "params", "ms/image", "gates"]
NO_GATES = "none set"
PAIRWISE_HEADER = ["a", "b", "only a flips", "only b flips", "p (exact)"]
GATE_HEADER = ["gate", "threshold", "compared", "result", "detail"]
COMPARE_GATE_HEADER = ["candidate", *GATE_HEADER]


# --------------------------------------------------------------------------- formatting


def format_percent(value: float | None) -> str:
    """Return 0.0213 as "2.13%"; small rates keep three decimals; None gives "n/a"."""
    if value is None:
        return NA
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3%}"
    return f"{value:.2%}"


def format_rate(name: str, value: float | None) -> str:
    """Return the rate ``name`` formatted: a percentage, but relative NFR as a ratio ("1.250").

    Relative NFR is a ratio of rates (1.0 = as many flips as independent errors).
    """
    if value is None:
        return NA
    return f"{value:.3f}" if name == "rel_nfr" else format_percent(value)


def format_ci(name: str, ci: tuple[float, float] | None) -> str:
    """Return a 95% interval as "[lo, hi]" in the units of rate ``name``, or "n/a"."""
    if ci is None:
        return NA
    return f"[{format_rate(name, ci[0])}, {format_rate(name, ci[1])}]"


def format_counts(name: str, rate: Rate, summary: FlipSummary) -> str:
    """Return the ``k/n`` behind a rate; for relative NFR: flips vs those expected if independent."""
    if name == "rel_nfr":
        c = summary.counts
        if c.n == 0 or rate.denominator == 0:
            return f"{c.negative_flips} flips, expected n/a"
        return f"{c.negative_flips} flips vs {rate.denominator / c.n:.1f} if independent"
    return f"{rate.numerator:,}/{rate.denominator:,}"


def format_p(p: float) -> str:
    """Return a p-value with three significant digits, in e-notation below 1e-4."""
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def safe_text(text: object, *, one_line: bool = False) -> str:
    """Return ``str(text)`` with control and invisible formatting characters (ESC, BEL, CR, NUL, bidi
    overrides) shown as ``\\xNN`` / ``\\uNNNN``: names, ids and paths come from files and must not drive a
    terminal, cut a table row or hide text. Tabs and newlines are kept, newlines escaped too when ``one_line``.
    """
    keep = "\t" if one_line else "\t\n"
    text = str(text)
    if text.isprintable():  # the common case: nothing to replace
        return text
    return "".join(c if c in keep or c.isprintable() else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_html(text: object) -> str:
    """Return ``str(text)`` HTML-escaped, quotes included (safe in element text and attributes), its control
    characters shown as text (``safe_text``)."""
    return html.escape(safe_text(text), quote=True)


def worst_classes(rows: list[ClassRow], limit: int | None) -> list[ClassRow]:
    """Return the ``limit`` classes with most negative flips (all when None); ties by index."""
    ordered = sorted(rows, key=lambda r: (-r.negative_flips, r.index))
    return ordered if limit is None else ordered[:limit]


def class_label(index: int, classes: list[str] | None) -> str:
    """Return "3 cat" when class names are known, else "3"."""
    if classes is None:
        return str(index)
    return f"{index} {classes[index]}"


# --------------------------------------------------------------------------- table rows
# Each returns rows of cells (strings) matching the header of the same name above.


def summary_rows(summary: FlipSummary) -> list[list[str]]:
    """Return one row per rate, in report order (``SUMMARY_HEADER``)."""
    return [
        [RATE_LABELS[name], format_rate(name, rate.value), format_counts(name, rate, summary),
         format_ci(name, rate.ci95)]
        for name, rate in summary.rates().items()
    ]


def class_rows(rows: list[ClassRow], classes: list[str] | None) -> list[list[str]]:
    """Return one row per class in ``rows``, in the given order (``CLASS_HEADER``)."""
    return [
        [class_label(r.index, classes), f"{r.n:,}", format_percent(r.old_acc.value),
         format_percent(r.new_acc.value), f"{r.negative_flips:,}", f"{r.positive_flips:,}",
         format_percent(r.nfr.value), format_ci("nfr", r.nfr.ci95)]
        for r in rows
    ]


def negative_flip_rows(report: FlipReport, limit: int = MAX_FLIP_SAMPLES) -> list[list[str]]:
    """The first ``limit`` negative flips, one row each (``FLIP_SAMPLE_HEADER``): the sample's id (for
    ``imagefolder:`` data its path under the dataset root) and the classes by name."""
    f = report.flips
    rows = []
    for i in [j for j, k in enumerate(f.kind.tolist()) if k < 0][:limit]:
        rows.append([str(f.ids[i]), class_label(int(f.targets[i]), report.classes),
                     class_label(int(f.old_preds[i]), report.classes),
                     class_label(int(f.new_preds[i]), report.classes)])
    return rows


def negative_flip_caption(report: FlipReport, limit: int = MAX_FLIP_SAMPLES) -> str:
    total = int((report.flips.kind < 0).sum())
    shown = min(total, limit)
    return (f"{total:,} negative flips" + (f"; the first {shown} in file order (every flip: --flips-csv)"
                                           if total > shown else ""))


def pair_rows(report: FlipReport) -> list[list[str]]:
    """Return one row per top (true class, new prediction) pair of negative flips (``PAIR_HEADER``)."""
    return [
        [class_label(p.true_class, report.classes), class_label(p.new_pred, report.classes),
         f"{p.count:,}", format_percent(p.share)]
        for p in report.top_pairs
    ]


def margin_rows(m: MarginAnalysis) -> list[list[str]]:
    """Return one row per quantile of margins and logit changes (``MARGIN_HEADER``)."""
    def cell(values: tuple[float, ...] | None, i: int) -> str:
        return NA if values is None else f"{values[i]:.3f}"

    return [
        [f"{q:g}", cell(m.old_margin.all, i), cell(m.old_margin.negative_flips, i),
         cell(m.logit_change.all, i), cell(m.logit_change.negative_flips, i)]
        for i, q in enumerate(m.old_margin.quantiles)
    ]


def compare_rows(result: CompareResult) -> list[list[str]]:
    """Return one row per candidate, " *" after Pareto-front names (``COMPARE_HEADER``)."""
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
            candidate_verdict(row.gates) if gates_set(result.gate_spec) else NO_GATES,
        ])
    return rows


def compare_class_header(result: CompareResult) -> list[str]:
    """The per-class NFR table's header: class, samples, the old model's accuracy, then one column per
    candidate."""
    return ["class", "n", "old acc", *(f"{row.name}: NFR (flips)" for row in result.rows)]


def compare_class_rows(result: CompareResult) -> list[list[str]]:
    """Return one row per true class, in class order: its NFR and negative flips under each candidate
    (``compare_class_header``)."""
    if not result.rows or not result.rows[0].per_class:
        return []
    first = result.rows[0].per_class
    classes = cast("list[str]", [r.name for r in first]) if all(r.name is not None for r in first) else None
    rows = []
    for k, base in enumerate(first):  # the same samples, hence the same n and old accuracy, for every candidate
        cells = [class_label(base.index, classes), f"{base.n:,}", format_percent(base.old_acc.value)]
        for row in result.rows:
            c = row.per_class[k]
            cells.append(f"{format_percent(c.nfr.value)} ({c.negative_flips:,})")
        rows.append(cells)
    return rows


def candidate_verdict(gates: list[GateResult]) -> str:
    """Return "PASS", or "FAIL: " and the failed gates' names ("FAIL: max-nfr, min-btc")."""
    failed = failed_gates(gates)
    return "FAIL: " + ", ".join(failed) if failed else "PASS"


def gate_rows(gates: list[GateResult]) -> list[list[str]]:
    """Return one row per gate: threshold and compared value in the gate's units (``GATE_HEADER``)."""
    def shown(name: str, v: float | None) -> str:
        return format_rate("rel_nfr" if name == "max-rel-nfr" else "x", v)

    return [[g.name, shown(g.name, g.threshold), shown(g.name, g.value), "PASS" if g.passed else "FAIL", g.detail]
            for g in gates]


def compare_gate_rows(result: CompareResult) -> list[list[str]]:
    """Return one row per candidate and gate (``COMPARE_GATE_HEADER``)."""
    return [[row.name, *cells] for row in result.rows for cells in gate_rows(row.gates)]


def pairwise_rows(result: CompareResult) -> list[list[str]]:
    """Return one row per pair of candidates with its exact McNemar test (``PAIRWISE_HEADER``)."""
    return [[t.a, t.b, f"{t.a_only:,}", f"{t.b_only:,}", format_p(t.p_value)]
            for t in result.pairwise]


# --------------------------------------------------------------------------- sentences


def mcnemar_line(summary: FlipSummary) -> str:
    """Return the sentence reporting McNemar's exact test of negative vs positive flips."""
    c = summary.counts
    return (f"McNemar exact test, negative vs positive flips ({c.negative_flips:,} vs "
            f"{c.positive_flips:,}): p = {format_p(summary.mcnemar_p)}")


def verdict_lines(report: FlipReport) -> list[str]:
    """Return one "PASS  name: detail" / "FAIL ..." line per gate, or ["no gates set"]."""
    if not report.gates:
        return ["no gates set"]
    return [f"{'PASS' if g.passed else 'FAIL'}  {g.name}: {g.detail}" for g in report.gates]


def compare_verdict_lines(result: CompareResult) -> list[str]:
    """Return one line per candidate: "PASS  name", or "FAIL  name: gate detail; ..." naming each failed
    gate; ["no gates set"] when there are none."""
    if not gates_set(result.gate_spec):
        return ["no gates set"]
    lines = []
    for row in result.rows:
        failed = [f"{g.name} {g.detail}" for g in row.gates if not g.passed]
        lines.append(f"FAIL  {row.name}: " + "; ".join(failed) if failed else f"PASS  {row.name}")
    return lines


def gate_settings_line(spec: GateSpec) -> str:
    """Return the gates asked for, in their units: "max-nfr ≤ 2.00%, min-btc ≥ 95.00% (on value)"."""
    parts = []
    for name, threshold in gate_settings(spec).items():
        if name == "gate_on" or threshold is None:
            continue
        assert isinstance(threshold, float)
        sign = "≥" if name.startswith("min-") else "≤"
        parts.append(f"{name} {sign} {format_rate('rel_nfr' if name == 'max-rel-nfr' else name, threshold)}")
    return ", ".join(parts) + f" (on {spec.gate_on})" if parts else "no gates set"
