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
from typing import TYPE_CHECKING, Any

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
    top1_margin,
    top_flip_pairs,
)
from modelupdate.predictions import Predictions, align

from .outputs import InputRecord

if TYPE_CHECKING:
    from modelupdate.config import DataConfig

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
        old_margin=top1_margin(old.logits[flipped]) if has_logits else None,
        new_margin=top1_margin(new.logits[flipped]) if has_logits else None,
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
    datasets: dict[str, Any] = {}
    old_p, new_p = load_inputs([old, new], eval_cfg, datasets=datasets)
    result = flip_report(old_p, new_p, gates)
    images = None
    if eval_cfg.data is not None and outputs.get("--html") is not None:  # only the HTML page shows images
        images = flip_images(result, eval_cfg.data, eval_cfg.split, datasets)
    result = dataclasses.replace(result, inputs=(input_record("old", old, old_p), input_record("new", new, new_p)),
                                 reading=eval_cfg.reading(), images=images)
    return FlipReportRun(result, deliver(plan, summary, result, formats))


def flip_images(report: FlipReport, data_cfg: DataConfig, split: str, datasets: dict[str, Any] | None = None,
                limit: int = MAX_THUMBNAILS) -> FlipImages:
    """The images of the first ``limit`` negative flips of ``report``, found by sample id in ``split`` of
    ``data_cfg``'s dataset.

    An image folder's are read from disk (the id is the file's path under the folder; one outside it is not
    read): the centred square resized to ``THUMBNAIL_SIZE`` px. A built-in dataset's are its uint8 images as
    they are. ``datasets``: datasets already loaded (``load_inputs``), so none is loaded twice.
    """
    ids = report.flips.ids[report.flips.kind < 0][:limit].tolist()
    if data_cfg.name.startswith("imagefolder:"):
        image_of = _folder_images(data_cfg)
    else:
        image_of = _split_images(data_cfg, split, datasets)
    return FlipImages(f"{data_cfg.name}, {split} split", tuple(image_of(i) for i in ids))


def _folder_images(data_cfg: DataConfig) -> Callable[[object], np.ndarray | None]:
    from modelupdate.data.folders import folder_root, read_square
    from modelupdate.errors import DataError

    root = folder_root(data_cfg.name).resolve()

    def image_of(sample_id: object) -> np.ndarray | None:
        path = (root / str(sample_id)).resolve()
        if not path.is_relative_to(root):  # ids may come from a prediction file: never read outside the folder
            return None
        try:
            return read_square(path, THUMBNAIL_SIZE, data_cfg.max_image_pixels).numpy()
        except (DataError, OSError):
            return None

    return image_of


def _split_images(data_cfg: DataConfig, split: str, datasets: dict[str, Any] | None
                  ) -> Callable[[object], np.ndarray | None]:
    from modelupdate.data import load_dataset

    loaded = next((d for d in (datasets or {}).values() if d.info.name == data_cfg.name), None)
    samples = (loaded or load_dataset(data_cfg)).split(split)
    position = {int(i): p for p, i in enumerate(samples.ids.tolist())}

    def image_of(sample_id: object) -> np.ndarray | None:
        try:
            p = position.get(int(sample_id))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return None
        return None if p is None else samples.images[p].numpy()

    return image_of
