"""GitHub-flavoured Markdown of flip reports and compare results (fit for ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import html

from modelupdate.analysis import CompareResult, FlipReport
from modelupdate.gates import gates_set

from .common import (
    CLASS_HEADER,
    COMPARE_GATE_HEADER,
    COMPARE_HEADER,
    FLIP_SAMPLE_HEADER,
    GATE_HEADER,
    GLOSSARY,
    GLOSSARY_NOTE,
    GLOSSARY_POINTER,
    MARGIN_HEADER,
    PAIR_HEADER,
    PAIRWISE_HEADER,
    RATE_LABELS,
    SUMMARY_HEADER,
    class_rows,
    compare_class_header,
    compare_class_rows,
    compare_gate_rows,
    compare_rows,
    gate_rows,
    gate_settings_line,
    margin_rows,
    mcnemar_line,
    negative_flip_caption,
    negative_flip_rows,
    pair_rows,
    pairwise_rows,
    safe_text,
    summary_rows,
    worst_classes,
)

__all__ = ["GATE_HEADER", "compare_markdown", "compare_pr_comment", "flip_report_markdown", "flip_report_pr_comment",
           "glossary_markdown"]

# rows of the short PR comment: flip pairs shown, then a pointer to the full report
PR_COMMENT_PAIRS = 5


def _md_code(text: str) -> str:
    """Return a path or name as inline code: HTML-escaped, backticks neutralised, on one line."""
    return "`" + html.escape(safe_text(text, one_line=True), quote=False).replace("`", "'") + "`"


def _md_cell(text: str) -> str:
    """Return ``text`` fit for one table cell."""
    # class names and paths are data: no HTML, table syntax, line break (LF or CR) or escape code may leak through
    return html.escape(safe_text(text, one_line=True), quote=False).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a pipe table of ``rows`` under ``header``, every cell escaped."""
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def glossary_markdown() -> list[str]:
    """Return the "Metrics" section: one line per metric, then where the full definitions are."""
    out = ["### Metrics", ""]
    out += [f"- **{_md_cell(name)}**: {_md_cell(text)}" for name, text in GLOSSARY]
    return out + ["", GLOSSARY_NOTE, GLOSSARY_POINTER, ""]


def flip_report_markdown(report: FlipReport, max_classes: int = 20) -> str:
    """Return the flip report as Markdown: verdict heading, gates, summary, classes, pairs, margins.

    Beyond ``max_classes`` classes, the full class table is folded into a ``<details>`` block.
    """
    verdict = "PASS" if report.passed else "FAIL"
    out = [
        f"## modelupdate flip report: {verdict}",
        "",
        f"old: {_md_code(report.old_source)}{_model_of(report, 'old')}  ",
        f"new: {_md_code(report.new_source)}{_model_of(report, 'new')}",
        "",
    ]
    if report.gates:
        out += [f"Gates (on {report.gate_on}):", "", _md_table(GATE_HEADER, gate_rows(report.gates)), ""]
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
    if report.top_pairs:  # folded: up to 50 rows a reviewer opens when needed
        out += ["### Negative flips by sample", "", negative_flip_caption(report) + ".", "",
                "<details><summary>Show the samples</summary>", "",
                _md_table(FLIP_SAMPLE_HEADER, negative_flip_rows(report)), "", "</details>", ""]
    out += ["### Margin analysis", ""]
    if report.margins is not None:
        out += ["Old model's top-1 margin (top1 − top2 logit) and L2 norm of the logit change "
                "(new − old), for all samples vs negative flips.", "",
                _md_table(MARGIN_HEADER, margin_rows(report.margins)), ""]
    else:
        out += ["n/a (needs logits for both models)", ""]
    out += glossary_markdown()
    return "\n".join(out)


def _model_of(report: FlipReport, role: str) -> str:
    """`` (model sha256 1a2b3c4d5e6f, dataset / split)`` for an input whose checkpoint is known, else ""."""
    record = next((r for r in report.inputs if r.role == role), None)
    if record is None or not record.checkpoint_sha256:
        return ""
    where = f", {_md_cell(record.dataset)} / {_md_cell(record.split)}" if record.dataset and record.split else ""
    kind = "ensemble" if record.kind == "ensemble" else "model"
    return f" ({kind} sha256 `{_md_cell(record.checkpoint_sha256[:12])}`{where})"


def flip_report_pr_comment(report: FlipReport) -> str:
    """Return a short Markdown comment for a pull request: verdict, gates, key rates, the top flip pairs."""
    verdict = "PASS" if report.passed else "FAIL"
    s = report.summary
    out = [f"### modelupdate flip report: {verdict}", "",
           f"new {_md_code(report.new_source)}{_model_of(report, 'new')} against old "
           f"{_md_code(report.old_source)}{_model_of(report, 'old')}", ""]
    if report.gates:
        out += [", ".join(f"{'✅' if g.passed else '❌'} {_md_cell(g.name)} {_md_cell(g.detail)}"
                          for g in report.gates), ""]
    keep = {RATE_LABELS[k] for k in ("er_old", "er_new", "nfr", "pfr")}
    rows = [r for r in summary_rows(s) if r[0] in keep]
    out += [_md_table(SUMMARY_HEADER, rows), ""]
    if report.top_pairs:
        pairs = pair_rows(report)[:PR_COMMENT_PAIRS]
        out += ["Top negative flips (true class → new prediction): "
                + "; ".join(f"{_md_cell(p[0])} → {_md_cell(p[1])}: {p[2]}" for p in pairs), ""]
    else:
        out += ["No negative flips.", ""]
    out += ["Full report: the job summary and the report artifacts."]
    return "\n".join(out)


def compare_pr_comment(result: CompareResult) -> str:
    """Return a short Markdown comment for a pull request: verdict (with gates) and the candidate table."""
    gated = gates_set(result.gate_spec)
    heading = "### modelupdate compare" + (f": {'PASS' if result.passed else 'FAIL'}" if gated else "")
    return "\n".join([heading, "", f"old: {_md_code(result.old_source)} ({result.n:,} samples)", "",
                      _md_table(COMPARE_HEADER, compare_rows(result)), "",
                      "Full report: the job summary and the report artifacts."])


def compare_markdown(result: CompareResult) -> str:
    """Return the compare result as Markdown: verdict heading (when gates are set), the candidate table,
    each candidate's gates, pairwise tests if any, and the metrics glossary."""
    gated = gates_set(result.gate_spec)
    heading = "## modelupdate compare" + (f": {'PASS' if result.passed else 'FAIL'}" if gated else "")
    out = [heading, "", f"old: {_md_code(result.old_source)} ({result.n:,} samples)", "",
           f"Gates: {_md_cell(gate_settings_line(result.gate_spec))}", "",
           "`*` = on the error-NFR Pareto front", "",
           _md_table(COMPARE_HEADER, compare_rows(result)), ""]
    if gated:
        out += ["### Gates per candidate", "", _md_table(COMPARE_GATE_HEADER, compare_gate_rows(result)), ""]
    if result.pairwise:
        out += ["### Pairwise NFR tests (McNemar exact on negative flips)", "",
                _md_table(PAIRWISE_HEADER, pairwise_rows(result)), ""]
    class_rows_ = compare_class_rows(result)
    if class_rows_:  # folded: one row per class, a reviewer opens it when a class matters
        out += ["### NFR per class", "", "<details><summary>Each candidate's NFR (negative flips) per true "
                "class</summary>", "", _md_table(compare_class_header(result), class_rows_), "", "</details>", ""]
    out += glossary_markdown()
    return "\n".join(out)
