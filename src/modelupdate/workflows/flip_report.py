"""flip-report: how many regressions does the new model bring, where, and do the gates pass?

Reads top to bottom: align the two prediction sets by sample id, count flips,
break them down by class and class pair, look at margins when logits exist,
evaluate the gates. Turning checkpoints into Predictions happens before this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelupdate.config import EvalConfig, GateSpec
from modelupdate.gates import GateResult, evaluate_gates
from modelupdate.metrics import (
    ClassRow,
    FlipPair,
    FlipSummary,
    MarginAnalysis,
    flip_masks,
    flip_summary,
    margin_analysis,
    per_class_table,
    top_flip_pairs,
)
from modelupdate.predictions import Predictions, align

from .outputs import InputRecord


@dataclass(frozen=True)
class FlippedSamples:
    """Every flipped sample, in the old file's order (arrays of equal length).

    kind: +1 for a positive flip (fixed), -1 for a negative flip (regression).
    """

    ids: np.ndarray
    targets: np.ndarray
    old_preds: np.ndarray
    new_preds: np.ndarray
    kind: np.ndarray


@dataclass(frozen=True)
class FlipReport:
    """Everything a flip report shows; renderers in ``modelupdate.report``."""

    old_source: str
    new_source: str
    num_classes: int
    classes: list[str] | None
    summary: FlipSummary
    per_class: list[ClassRow]
    top_pairs: list[FlipPair]
    margins: MarginAnalysis | None  # None unless both sides have logits
    gates: list[GateResult]
    gate_on: str
    flips: FlippedSamples
    gate_spec: GateSpec = field(default_factory=GateSpec)  # the gates asked for (thresholds, gate_on)
    inputs: tuple[InputRecord, ...] = ()  # old then new, when read from files (``run_flip_report``)
    # how the prediction files were read (columns, class list): part of the provenance
    reading: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every gate passes (also when there are no gates)."""
        return all(g.passed for g in self.gates)


def flip_report(
    old: Predictions, new: Predictions, gates: GateSpec | None = None, top_k: int = 10
) -> FlipReport:
    """Compare ``new`` against ``old`` on the same samples and evaluate ``gates``.

    Raises MismatchError when the two prediction sets do not cover the same
    samples, disagree on targets or on the classes.
    """
    gates = gates or GateSpec()
    old, new = align(old, new)
    assert old.num_classes is not None  # align resolves it
    targets = old.targets

    summary = flip_summary(old.preds, new.preds, targets)
    per_class = per_class_table(old.preds, new.preds, targets, old.num_classes, old.classes)
    pairs = top_flip_pairs(old.preds, new.preds, targets, k=top_k)
    margins = None
    if old.logits is not None and new.logits is not None:
        margins = margin_analysis(old.logits, new.logits, targets, old.preds, new.preds)

    negative, positive = flip_masks(old.preds, new.preds, targets)
    flipped = np.flatnonzero(negative | positive)
    flips = FlippedSamples(
        ids=old.ids[flipped],
        targets=targets[flipped],
        old_preds=old.preds[flipped],
        new_preds=new.preds[flipped],
        kind=np.where(negative[flipped], -1, 1).astype(np.int8),
    )
    return FlipReport(
        old_source=old.source,
        new_source=new.source,
        num_classes=old.num_classes,
        classes=old.classes,
        summary=summary,
        per_class=per_class,
        top_pairs=pairs,
        margins=margins,
        gates=evaluate_gates(summary, per_class, gates),
        gate_on=gates.gate_on,
        flips=flips,
        gate_spec=gates,
    )


@dataclass(frozen=True)
class FlipReportRun:
    report: FlipReport
    stdout: str | None  # the report asked for on stdout ('-'), printed instead of the tables


def run_flip_report(old: Path, new: Path, eval_cfg: EvalConfig, gates: GateSpec,
                    outputs: dict[str, str | Path | None],
                    formats: dict[str, Callable[[FlipReport], str]]) -> FlipReportRun:
    """`modelupdate flip-report`: check the outputs, load both inputs, report (recording each input's
    path and sha256), write the requested files.

    ``outputs``: option (``--json``, ...) -> a path, ``'-'`` or None; ``formats``: option -> its renderer
    (``report.FLIP_REPORT_FORMATS``).
    """
    from .inputs import load_inputs
    from .outputs import Outputs, deliver, input_record, step_summary_path

    plan = Outputs([old, new], outputs, extra_inputs=eval_cfg.input_files())
    summary = step_summary_path()
    old_p, new_p = load_inputs([old, new], eval_cfg)
    result = flip_report(old_p, new_p, gates)
    result = dataclasses.replace(result, inputs=(input_record("old", old, old_p), input_record("new", new, new_p)),
                                 reading=eval_cfg.reading())
    return FlipReportRun(result, deliver(plan, summary, result, formats))
