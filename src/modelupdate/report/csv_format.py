"""CSV of the flipped samples of a flip report."""

from __future__ import annotations

from modelupdate.workflows.flip_report import FlipReport


def flips_csv(report: FlipReport) -> str:
    """Return every flipped sample as CSV ``id,target,old_pred,new_pred,flip`` (flip: negative/positive).

    Rows are in file order; the text ends in a newline.
    """
    f = report.flips
    kinds = ["negative" if k < 0 else "positive" for k in f.kind.tolist()]
    lines = ["id,target,old_pred,new_pred,flip"]
    lines += [
        f"{i},{t},{o},{n},{k}"
        for i, t, o, n, k in zip(f.ids.tolist(), f.targets.tolist(), f.old_preds.tolist(),
                                 f.new_preds.tolist(), kinds, strict=True)
    ]
    return "\n".join(lines) + "\n"
