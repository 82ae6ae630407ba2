"""GitHub-flavoured Markdown of flip reports and compare results (fit for ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import html

from modelupdate.workflows.compare import CompareResult
from modelupdate.workflows.flip_report import FlipReport

from .common import (
    CLASS_HEADER,
    COMPARE_HEADER,
    MARGIN_HEADER,
    PAIR_HEADER,
    PAIRWISE_HEADER,
    SUMMARY_HEADER,
    class_rows,
    compare_rows,
    format_rate,
    margin_rows,
    mcnemar_line,
    pair_rows,
    pairwise_rows,
    summary_rows,
    worst_classes,
)

# only Markdown shows the gates as a table; the other formats list the verdict lines
GATE_HEADER = ["gate", "threshold", "compared", "result", "detail"]


def _gate_rows(report: FlipReport) -> list[list[str]]:
    """Return one row per gate: threshold and compared value in the gate's units (``GATE_HEADER``)."""
    def shown(name: str, v: float | None) -> str:
        return format_rate("rel_nfr" if name == "max-rel-nfr" else "x", v)

    return [
        [g.name, shown(g.name, g.threshold), shown(g.name, g.value),
         "PASS" if g.passed else "FAIL", g.detail]
        for g in report.gates
    ]


def _md_code(text: str) -> str:
    """Return a path or name as inline code: HTML-escaped, backticks and newlines neutralised."""
    return "`" + html.escape(text, quote=False).replace("`", "'").replace("\n", " ") + "`"


def _md_cell(text: str) -> str:
    """Return ``text`` fit for one table cell."""
    # class names and paths are data: no HTML or table syntax may leak through
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a pipe table of ``rows`` under ``header``, every cell escaped."""
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def flip_report_markdown(report: FlipReport, max_classes: int = 20) -> str:
    """Return the flip report as Markdown: verdict heading, gates, summary, classes, pairs, margins.

    Beyond ``max_classes`` classes, the full class table is folded into a ``<details>`` block.
    """
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
    out += ["### Summary", "", _md_table(SUMMARY_HEADER, summary_rows(report.summary)), "",
            mcnemar_line(report.summary), ""]
    shown = worst_classes(report.per_class, max_classes)
    out += ["### Per class (most negative flips first)", "",
            _md_table(CLASS_HEADER, class_rows(shown, report.classes)), ""]
    if len(shown) < len(report.per_class):
        out += ["<details><summary>All classes</summary>", "",
                _md_table(CLASS_HEADER, class_rows(report.per_class, report.classes)), "",
                "</details>", ""]
    out += ["### Top flip pairs (true class → new prediction)", ""]
    out += [_md_table(PAIR_HEADER, pair_rows(report)) if report.top_pairs
            else "No negative flips.", ""]
    out += ["### Margin analysis", ""]
    if report.margins is not None:
        out += ["Old model's top-1 margin (top1 − top2 logit) and L2 norm of the logit change "
                "(new − old), for all samples vs negative flips.", "",
                _md_table(MARGIN_HEADER, margin_rows(report.margins)), ""]
    else:
        out += ["n/a (needs logits for both models)", ""]
    return "\n".join(out)


def compare_markdown(result: CompareResult) -> str:
    """Return the compare result as Markdown: the candidate table, then pairwise tests if any."""
    out = ["## modelupdate compare", "", f"old: {_md_code(result.old_source)} ({result.n:,} samples)", "",
           "`*` = on the error-NFR Pareto front", "",
           _md_table(COMPARE_HEADER, compare_rows(result)), ""]
    if result.pairwise:
        out += ["### Pairwise NFR tests (McNemar exact on negative flips)", "",
                _md_table(PAIRWISE_HEADER, pairwise_rows(result)), ""]
    return "\n".join(out)
