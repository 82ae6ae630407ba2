"""CSV of the flipped samples of a flip report."""

from __future__ import annotations

import csv
import io

from modelupdate.workflows.flip_report import FlipReport


def flips_csv(report: FlipReport) -> str:
    """Return every flipped sample as CSV ``id,target,old_pred,new_pred,flip`` (flip: negative/positive).

    Rows are in file order; ids holding commas or quotes (image paths) are quoted; the text ends in a newline.
    """
    f = report.flips
    kinds = ["negative" if k < 0 else "positive" for k in f.kind.tolist()]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "target", "old_pred", "new_pred", "flip"])
    writer.writerows(zip(f.ids.tolist(), f.targets.tolist(), f.old_preds.tolist(), f.new_preds.tolist(), kinds,
                         strict=True))
    return out.getvalue()
