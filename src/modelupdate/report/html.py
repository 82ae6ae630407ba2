"""Self-contained HTML pages of flip reports and compare results: tables plus inline SVG plots.

The pages are rendered from the Jinja2 templates in ``templates/``; this module only
gathers their data. No scripts, no network: one file that opens anywhere.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from modelupdate.gates import gates_set
from modelupdate.workflows.compare import CompareResult
from modelupdate.workflows.flip_report import FlipReport

from .common import (
    CLASS_HEADER,
    COMPARE_GATE_HEADER,
    COMPARE_HEADER,
    FLIP_SAMPLE_HEADER,
    GLOSSARY,
    GLOSSARY_NOTE,
    GLOSSARY_POINTER,
    MARGIN_HEADER,
    PAIR_HEADER,
    PAIRWISE_HEADER,
    SUMMARY_HEADER,
    class_rows,
    compare_gate_rows,
    compare_rows,
    compare_verdict_lines,
    escape_html,
    gate_settings_line,
    margin_rows,
    mcnemar_line,
    negative_flip_caption,
    negative_flip_rows,
    pair_rows,
    pairwise_rows,
    summary_rows,
    verdict_lines,
    worst_classes,
)
from .svg import svg_class_flips, svg_histogram, svg_pareto

if TYPE_CHECKING:
    import jinja2


@functools.cache
def _environment() -> jinja2.Environment:
    """Return the Jinja2 environment of the report templates (built once)."""
    # jinja2 is imported here, not at the top: the CLI imports this package on every run
    import jinja2
    import markupsafe

    def finalize(value: object) -> object:
        # escape as the SVG plots do (html.escape: &quot; &#x27;) so the page is escaped one way;
        # Markup (|safe, macro output) passes as is, and autoescape stays on as the backstop
        if hasattr(value, "__html__"):
            return value
        return markupsafe.Markup(escape_html(value))

    return jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _table(header: list[str], rows: list[list[str]]) -> dict:
    """Return one table for the templates' ``table`` macro."""
    return {"header": header, "rows": rows}


def _render(template: str, **context: object) -> str:
    """Return ``template`` rendered with ``context`` and the metrics glossary."""
    glossary = {"lines": GLOSSARY, "note": GLOSSARY_NOTE, "pointer": GLOSSARY_POINTER}
    return _environment().get_template(template).render(metrics_glossary=glossary, **context)


def flip_report_html(report: FlipReport, max_classes: int = 25) -> str:
    """Return the flip report as one self-contained HTML page.

    The per-class plot shows the ``max_classes`` classes with most negative flips; the
    per-class table shows all of them.
    """
    margins = None
    if report.margins is not None:
        m = report.margins
        margins = {
            "old_margin_svg": svg_histogram(m.old_margin, "Old model's top-1 margin",
                                            "top1 - top2 logit (old)"),
            "logit_change_svg": svg_histogram(m.logit_change, "Logit change",
                                              "L2 norm of new - old logits"),
            "table": _table(MARGIN_HEADER, margin_rows(m)),
        }
    return _render(
        "flip_report.html.j2",
        verdict="PASS" if report.passed else "FAIL",
        gates_on=f" (gates on {report.gate_on})" if report.gates else "",
        verdict_lines=verdict_lines(report),
        old_source=report.old_source,
        new_source=report.new_source,
        summary=_table(SUMMARY_HEADER, summary_rows(report.summary)),
        mcnemar=mcnemar_line(report.summary),
        class_flips_svg=svg_class_flips(report, max_classes),
        classes=_table(CLASS_HEADER, class_rows(worst_classes(report.per_class, None), report.classes)),
        pairs=_table(PAIR_HEADER, pair_rows(report)) if report.top_pairs else None,
        flip_samples=_table(FLIP_SAMPLE_HEADER, negative_flip_rows(report)) if report.top_pairs else None,
        flip_samples_caption=negative_flip_caption(report),
        margins=margins,
    )


def compare_html(result: CompareResult) -> str:
    """Return the compare result as one self-contained HTML page: verdict (when gates are set), table,
    error-vs-NFR plot, each candidate's gates, pairwise tests."""
    gated = gates_set(result.gate_spec)
    return _render(
        "compare.html.j2",
        verdict=("PASS" if result.passed else "FAIL") if gated else None,
        gates_line=gate_settings_line(result.gate_spec),
        verdict_lines=compare_verdict_lines(result),
        old_source=result.old_source,
        n=f"{result.n:,}",
        candidates=_table(COMPARE_HEADER, compare_rows(result)),
        pareto_svg=svg_pareto(result),
        gates=_table(COMPARE_GATE_HEADER, compare_gate_rows(result)) if gated else None,
        pairwise=_table(PAIRWISE_HEADER, pairwise_rows(result)) if result.pairwise else None,
    )


