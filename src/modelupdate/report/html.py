"""Self-contained HTML pages of flip reports and compare results: tables plus inline SVG plots.

The pages are rendered from the Jinja2 templates in ``templates/``; this module only
gathers their data. No scripts, no network: one file that opens anywhere. The flip report's
images of negative flips (``FlipReport.images``, at most ``MAX_THUMBNAILS``) are small PNGs
inside the page as ``data:`` URIs.
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from modelupdate.analysis import CompareResult, FlipReport
from modelupdate.gates import gates_set

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
    class_label,
    class_rows,
    compare_class_header,
    compare_class_rows,
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

#: compare's per-class table is folded into a <details> block beyond this many classes
FOLD_CLASSES = 30
#: pixels a thumbnail is shown at; smaller images (28 px fashion-mnist) are scaled up with square pixels
THUMBNAIL_PX = 96


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
    per-class table shows all of them. ``report.images``, when set, are shown as thumbnails
    of the first negative flips; without them the section says why in one line.
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
        thumbnails=_thumbnails(report),
        margins=margins,
    )


def png_data_uri(image: np.ndarray) -> str:
    """Return uint8 [C, H, W] (C = 1: grey, or 3: RGB) as a ``data:image/png;base64,`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def png_bytes(image: np.ndarray) -> bytes:
    """Return uint8 [C, H, W] (C = 1 or 3) as a PNG file: 8 bits per channel, no interlacing."""
    # written with zlib here: rendering a page needs neither torch nor an imaging library
    c, h, w = image.shape
    if c not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected uint8 [1 or 3, H, W], got {image.dtype} {list(image.shape)}")
    rows = np.ascontiguousarray(image.transpose(1, 2, 0)).reshape(h, w * c)
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def _thumbnails(report: FlipReport) -> dict:
    """The "Negative flips, as images" section: a note, and one card per image (image, id, classes, margins)."""
    if report.images is None:
        return {"note": "No images of the flipped samples: pass --data (the dataset the predictions are on) to "
                        "see them.", "cards": []}
    f = report.flips
    negative = np.flatnonzero(f.kind < 0)[:len(report.images.images)]
    total = int((f.kind < 0).sum())
    if total == 0:
        return {"note": "No negative flips.", "cards": []}

    def name(index: int) -> str:
        return report.classes[index] if report.classes is not None else str(index)

    cards = []
    for i, image in zip(negative.tolist(), report.images.images, strict=True):
        margins = None
        if f.old_margin is not None and f.new_margin is not None:
            margins = f"margin {f.old_margin[i]:.2f} → {f.new_margin[i]:.2f}"
        cards.append({
            "uri": png_data_uri(image) if image is not None else None,
            "id": str(f.ids[i]),
            "old": name(int(f.old_preds[i])),
            "new": name(int(f.new_preds[i])),
            "old_label": class_label(int(f.old_preds[i]), report.classes),
            "new_label": class_label(int(f.new_preds[i]), report.classes),
            "margins": margins,
        })
    shown = f"the first {len(cards)} of {total:,}" if total > len(cards) else f"all {total:,}"
    margin_note = ", and each model's top-1 − top-2 logit margin, old → new" if f.old_margin is not None else ""
    note = (f"{shown} negative flips in file order, images from {report.images.source}. Under each: the sample, "
            f"the old → new prediction (the old one is the true class){margin_note}.")
    return {"note": note[0].upper() + note[1:], "cards": cards, "px": THUMBNAIL_PX}


def compare_html(result: CompareResult) -> str:
    """Return the compare result as one self-contained HTML page: verdict (when gates are set), table,
    error-vs-NFR plot, NFR per class and candidate, each candidate's gates, pairwise tests."""
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
        per_class=_table(compare_class_header(result), compare_class_rows(result)) if result.rows else None,
        fold_classes=FOLD_CLASSES,
        gates=_table(COMPARE_GATE_HEADER, compare_gate_rows(result)) if gated else None,
        pairwise=_table(PAIRWISE_HEADER, pairwise_rows(result)) if result.pairwise else None,
    )


