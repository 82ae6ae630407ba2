"""The analyses under every report: pure functions from prediction sets to the result types the renderers
in ``report/`` draw (``flip_report``: one update against the old model; ``compare``: several candidates side
by side), and what a report records of its inputs (``InputRecord``). No file is read or written here: the
workflows (``workflows/flip_report.py``, ``workflows/compare.py``) read the inputs and write the reports.

``flip_report`` aligns the two prediction sets by sample id, counts flips, breaks them down by class and class
pair, looks at margins when logits exist and evaluates the gates. ``compare`` does the same per candidate,
marks the error-NFR Pareto front and tests every pair of candidates for a real NFR difference (McNemar's
exact test on their negative-flip indicators over the same samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np

from .config import GateSpec
from .errors import ConfigError
from .gates import GateResult, evaluate_gates
from .metrics import (
    ClassRow,
    FlipPair,
    FlipSummary,
    MarginAnalysis,
    PairedTest,
    flip_masks,
    flip_summary,
    margin_analysis,
    paired_exact_test,
    pareto_front,
    per_class_table,
    top1_margin,
    top_flip_pairs,
)
from .predictions import Predictions, align

# --------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class InputRecord:
    """One input of a report, as the JSON records it.

    ``kind``: "predictions" for a prediction file, else the checkpoint's kind ("model", "ensemble").
    ``sha256``: of the file itself. ``checkpoint_sha256``: the model the predictions came from (the
    file itself for a checkpoint; what ``predict`` recorded for a prediction file; else None).
    ``dataset``, ``dataset_fingerprint``, ``split``: where the predictions were made, when known.
    """

    role: str  # "old", "new" (flip-report) or "candidate" (compare)
    name: str | None  # the candidate's name in compare, else None
    path: str
    kind: str
    sha256: str
    checkpoint_sha256: str | None
    dataset: str | None
    dataset_fingerprint: str | None
    split: str | None

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- one update

#: negative flips shown as images in the HTML report, the first ones in file order (the page stays small)
MAX_THUMBNAILS = 24
#: an image folder's flips are shown as the file's centred square resized to this many pixels (folders.read_square)
THUMBNAIL_SIZE = 96


@dataclass(frozen=True)
class FlippedSamples:
    """Every flipped sample, in the old file's order (arrays of equal length).

    kind: +1 for a positive flip (fixed), -1 for a negative flip (regression).
    old_margin, new_margin: each model's top-1 minus top-2 logit on the sample; None without logits.
    """

    ids: np.ndarray
    targets: np.ndarray
    old_preds: np.ndarray
    new_preds: np.ndarray
    kind: np.ndarray
    old_margin: np.ndarray | None = None
    new_margin: np.ndarray | None = None


@dataclass(frozen=True)
class FlipImages:
    """The images of the first negative flips (at most ``MAX_THUMBNAILS``), in the flip table's order.

    ``images[i]`` belongs to the i-th negative flip: uint8 [C, H, W], or None when the sample's image
    could not be found or read. ``source`` says where they come from ("fashion-mnist, test split").
    """

    source: str
    images: tuple[np.ndarray | None, ...]


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
    images: FlipImages | None = None  # None: no --data, so no image to show

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
    has_logits = old.logits is not None and new.logits is not None and old.logits.shape[1] >= 2
    flips = FlippedSamples(
        ids=old.ids[flipped],
        targets=targets[flipped],
        old_preds=old.preds[flipped],
        new_preds=new.preds[flipped],
        kind=np.where(negative[flipped], -1, 1).astype(np.int8),
        old_margin=top1_margin(old.logits[flipped]) if has_logits and old.logits is not None else None,
        new_margin=top1_margin(new.logits[flipped]) if has_logits and new.logits is not None else None,
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


# --------------------------------------------------------------------------- several candidates


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's flips against the old model, plus what it costs to run."""

    name: str
    source: str
    summary: FlipSummary
    params: int | None  # number of parameters, when known (checkpoints)
    ms_per_image: float | None  # inference time, when measured (checkpoints)
    pareto: bool  # on the (ER_new, NFR) Pareto front among the candidates
    gates: list[GateResult] = field(default_factory=list)  # the candidate's gates, as flip-report's
    per_class: list[ClassRow] = field(default_factory=list)  # flips by true class, in class order

    @property
    def passed(self) -> bool:
        """True when every gate passes on this candidate (also when there are no gates)."""
        return all(g.passed for g in self.gates)


@dataclass(frozen=True)
class CompareResult:
    old_source: str
    n: int
    rows: list[CandidateRow]
    pairwise: list[PairedTest]  # each pair of candidates: do they differ in negative flips?
    gate_spec: GateSpec = field(default_factory=GateSpec)  # the gates every candidate is held to
    inputs: tuple[InputRecord, ...] = ()  # old, then the candidates, when read from files (``run_compare``)
    # how the prediction files were read (columns, class list): part of the provenance
    reading: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every candidate passes every gate (also when there are no gates)."""
        return all(row.passed for row in self.rows)


def compare(
    old: Predictions,
    candidates: dict[str, Predictions],
    extra: dict[str, dict] | None = None,
    gates: GateSpec | None = None,
) -> CompareResult:
    """Summarise each candidate against ``old`` (insertion order is kept) and hold it to ``gates``.

    ``extra[name]`` may hold ``params`` (int) and ``ms_per_image`` (float).
    Raises ConfigError when there is no candidate, MismatchError when a candidate
    does not cover the old model's samples.
    """
    if not candidates:
        raise ConfigError("compare needs at least one candidate")
    extra = extra or {}
    gates = gates or GateSpec()
    summaries: dict[str, FlipSummary] = {}
    negative_flips: dict[str, np.ndarray] = {}
    gate_results: dict[str, list[GateResult]] = {}
    per_class: dict[str, list[ClassRow]] = {}
    for name, candidate in candidates.items():
        old_aligned, new_aligned = align(old, candidate)  # new in old's sample order
        summaries[name] = flip_summary(old_aligned.preds, new_aligned.preds, old.targets)
        negative_flips[name], _ = flip_masks(old.preds, new_aligned.preds, old.targets)
        assert old_aligned.num_classes is not None  # align resolves it
        per_class[name] = per_class_table(old_aligned.preds, new_aligned.preds, old.targets,
                                          old_aligned.num_classes, old_aligned.classes)
        gate_results[name] = evaluate_gates(summaries[name], per_class[name], gates)

    on_front = pareto_front([(s.er_new.value, s.nfr.value) for s in summaries.values()])
    rows = []
    for (name, summary), pareto in zip(summaries.items(), on_front, strict=True):
        info = extra.get(name, {})
        params = info.get("params")
        ms = info.get("ms_per_image")
        rows.append(CandidateRow(
            name=name,
            source=candidates[name].source,
            summary=summary,
            params=int(params) if params is not None else None,
            ms_per_image=float(ms) if ms is not None else None,
            pareto=pareto,
            gates=gate_results[name],
            per_class=per_class[name],
        ))

    pairwise = []
    for a, b in combinations(summaries, 2):
        pairwise.append(paired_exact_test(negative_flips[a], negative_flips[b], (a, b)))
    return CompareResult(old_source=old.source, n=len(old), rows=rows, pairwise=pairwise, gate_spec=gates)
