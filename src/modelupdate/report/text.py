"""Rich renderables of flip reports and compare results, for the terminal.

The renderers return rich objects and never print; the CLI's console shows them.
"""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from modelupdate.analysis import CompareResult, FlipReport
from modelupdate.gates import gates_set

from .common import (
    CLASS_HEADER,
    COMPARE_HEADER,
    MARGIN_HEADER,
    PAIR_HEADER,
    PAIRWISE_HEADER,
    SUMMARY_HEADER,
    class_rows,
    compare_rows,
    compare_verdict_lines,
    gate_settings_line,
    margin_rows,
    mcnemar_line,
    pair_rows,
    pairwise_rows,
    safe_text,
    summary_rows,
    verdict_lines,
    worst_classes,
)


def terminal_safe(text: str) -> str:
    """Return ``text`` with control characters (ANSI escapes, bells, carriage returns) shown as ``\\xNN``.

    Names and paths from files must not drive the terminal (``common.safe_text``, as the other formats).
    """
    return safe_text(text)


def _rich_table(title: str, header: list[str], rows: list[list[str]], caption: str | None = None,
                numeric_from: int = 1) -> Table:
    """Return a table of ``rows``; columns from ``numeric_from`` on are right-aligned."""
    table = Table(title=title, caption=caption, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i >= numeric_from else "left")
    for row in rows:
        table.add_row(*row)
    return table


def flip_report_rich(report: FlipReport, max_classes: int = 20) -> Group:
    """Return summary, per-class, top pairs, margins and the PASS/FAIL banner, as one renderable."""
    parts: list = [Text(terminal_safe(f"old: {report.old_source}\nnew: {report.new_source}"), style="dim")]
    parts.append(_rich_table("Summary", SUMMARY_HEADER, summary_rows(report.summary)))
    parts.append(Text(mcnemar_line(report.summary)))
    shown = worst_classes(report.per_class, max_classes)
    caption = None
    if len(shown) < len(report.per_class):
        caption = f"{len(shown)} of {len(report.per_class)} classes, most negative flips first"
    parts.append(_rich_table("Per class", CLASS_HEADER, class_rows(shown, report.classes),
                             caption=caption))
    if report.top_pairs:
        parts.append(_rich_table("Top flip pairs (true class -> new prediction)", PAIR_HEADER,
                                 pair_rows(report), numeric_from=2))
    else:
        parts.append(Text("Top flip pairs: no negative flips"))
    if report.margins is not None:
        parts.append(_rich_table(
            "Margin analysis (old top-1 margin; L2 change of logits new - old)",
            MARGIN_HEADER, margin_rows(report.margins)))
    else:
        parts.append(Text("Margin analysis: n/a (needs logits for both models)"))
    style = "bold green" if report.passed else "bold red"
    title = "PASS" if report.passed else "FAIL"
    if report.gates:
        title += f" (gates on {report.gate_on})"
    parts.append(Panel("\n".join(verdict_lines(report)), title=title, border_style=style,
                       title_align="left"))
    return Group(*parts)


def compare_rich(result: CompareResult) -> Group:
    """Return the candidate tables (pairwise tests, if any; the PASS/FAIL banner when gates are set) of a
    compare result, as one renderable."""
    parts: list = [Text(terminal_safe(f"old: {result.old_source}  ({result.n:,} samples)"), style="dim")]
    # two tables of at most 7 columns, so that each fits an 80-column terminal
    rows = compare_rows(result)
    split = COMPARE_HEADER.index("BTC")
    parts.append(_rich_table("Candidates: errors and flips (* = on the error-NFR Pareto front)",
                             COMPARE_HEADER[:split], [r[:split] for r in rows]))
    parts.append(_rich_table("Candidates: compatibility and cost", COMPARE_HEADER[:1] + COMPARE_HEADER[split:],
                             [r[:1] + r[split:] for r in rows]))
    if result.pairwise:
        parts.append(_rich_table("Pairwise NFR tests (McNemar exact on negative flips)",
                                 PAIRWISE_HEADER, pairwise_rows(result), numeric_from=2))
    if gates_set(result.gate_spec):
        style = "bold green" if result.passed else "bold red"
        title = ("PASS" if result.passed else "FAIL") + f": {gate_settings_line(result.gate_spec)}"
        parts.append(Panel("\n".join(compare_verdict_lines(result)), title=title,
                           border_style=style, title_align="left"))
    return Group(*parts)
