"""Renderers of flip-report and compare results: rich, JSON, Markdown, HTML (with SVG), CSV.

Every renderer returns a string or a rich renderable and never prints; the CLI
decides where things go. Undefined values are "n/a" for people and ``null`` in
JSON, never 0. One module per format; ``common`` holds the formatting and table
rows they share, so a number reads the same everywhere. The JSON schema is
documented in ``json_format``.
"""

from enum import StrEnum

from .common import (
    CLASS_HEADER,
    COMPARE_HEADER,
    MARGIN_HEADER,
    NA,
    PAIR_HEADER,
    PAIRWISE_HEADER,
    RATE_LABELS,
    SUMMARY_HEADER,
    format_ci,
    format_counts,
    format_p,
    format_percent,
    format_rate,
)
from .csv_format import flips_csv
from .html import compare_html, flip_report_html
from .json_format import (
    JSON_SCHEMA_VERSION,
    compare_json,
    compare_to_dict,
    flip_report_json,
    flip_report_to_dict,
)
from .markdown import GATE_HEADER, compare_markdown, compare_pr_comment, flip_report_markdown, flip_report_pr_comment
from .svg import svg_class_flips, svg_histogram, svg_pareto
from .text import compare_rich, flip_report_rich, terminal_safe


class ReportFormat(StrEnum):
    """A report file flip-report and compare can write; its value is the option that asks for it (and
    names it in messages)."""

    JSON = "--json"
    MARKDOWN = "--markdown"
    FLIPS_CSV = "--flips-csv"
    HTML = "--html"
    PR_COMMENT = "--pr-comment"


# the renderer of each format, per command
FLIP_REPORT_FORMATS = {ReportFormat.JSON: flip_report_json, ReportFormat.MARKDOWN: flip_report_markdown,
                       ReportFormat.FLIPS_CSV: flips_csv, ReportFormat.HTML: flip_report_html,
                       ReportFormat.PR_COMMENT: flip_report_pr_comment}
COMPARE_FORMATS = {ReportFormat.JSON: compare_json, ReportFormat.MARKDOWN: compare_markdown,
                   ReportFormat.HTML: compare_html, ReportFormat.PR_COMMENT: compare_pr_comment}

__all__ = [
    "CLASS_HEADER",
    "COMPARE_FORMATS",
    "COMPARE_HEADER",
    "FLIP_REPORT_FORMATS",
    "GATE_HEADER",
    "JSON_SCHEMA_VERSION",
    "MARGIN_HEADER",
    "NA",
    "PAIRWISE_HEADER",
    "PAIR_HEADER",
    "RATE_LABELS",
    "ReportFormat",
    "SUMMARY_HEADER",
    "compare_html",
    "compare_json",
    "compare_markdown",
    "compare_pr_comment",
    "compare_rich",
    "compare_to_dict",
    "flip_report_html",
    "flip_report_json",
    "flip_report_markdown",
    "flip_report_pr_comment",
    "flip_report_rich",
    "flip_report_to_dict",
    "flips_csv",
    "format_ci",
    "format_counts",
    "format_p",
    "format_percent",
    "format_rate",
    "svg_class_flips",
    "svg_histogram",
    "svg_pareto",
    "terminal_safe",
]
