"""CSV of the flipped samples of a flip report; ``csv_text`` is how every CSV the tool writes is laid out."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from modelupdate.analysis import FlipReport

# a spreadsheet reads a cell starting with one of these as a formula (OWASP's CSV injection list)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """Return ``value`` fit for a CSV cell a spreadsheet may open: text starting with ``= + - @``, a tab or a
    carriage return gets a leading single quote, so that it shows as text instead of running as a formula
    (OWASP's rule); numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Return ``header`` and ``rows`` as CSV text, every cell through ``csv_cell``; cells holding commas,
    quotes or line breaks (LF or CR) are quoted; lines end in LF, the text in a newline."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # the csv module quotes only the line terminator's characters: a row holding a CR is quoted whole
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in [header, *rows]:
        cells = [csv_cell(c) for c in row]
        (quoted if any(isinstance(c, str) and "\r" in c for c in cells) else writer).writerow(cells)
    return out.getvalue()


def flips_csv(report: FlipReport) -> str:
    """Return every flipped sample as CSV ``id,target,old_pred,new_pred,flip`` (flip: negative/positive).

    Rows are in file order; ids holding commas or quotes (image paths) are quoted, ids a spreadsheet would
    run as a formula are prefixed with ``'`` (``csv_cell``); the text ends in a newline.
    """
    f = report.flips
    kinds = ["negative" if k < 0 else "positive" for k in f.kind.tolist()]
    return csv_text(["id", "target", "old_pred", "new_pred", "flip"],
                    zip(f.ids.tolist(), f.targets.tolist(), f.old_preds.tolist(), f.new_preds.tolist(), kinds,
                        strict=True))
