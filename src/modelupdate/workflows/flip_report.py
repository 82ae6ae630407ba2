"""flip-report: how many regressions does the new model bring, where, and do the gates pass?

Reads top to bottom: check the report files can be written, read the old and new predictions (a prediction
file, or a checkpoint run on a split), analyse them (``analysis.flip_report``), add the images of the negative
flips when the data is known, and write every report asked for or none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelupdate.analysis import MAX_THUMBNAILS, THUMBNAIL_SIZE, FlipImages, FlipReport, flip_report
from modelupdate.config import EvalConfig, GateSpec
from modelupdate.report import FLIP_REPORT_FORMATS, ReportFormat

if TYPE_CHECKING:
    from modelupdate.config import DataConfig


@dataclass(frozen=True)
class FlipReportRun:
    report: FlipReport
    stdout: str | None  # the report asked for on stdout ('-'), printed instead of the tables


def run_flip_report(old: Path, new: Path, eval_cfg: EvalConfig, gates: GateSpec,
                    outputs: Mapping[ReportFormat, str | Path | None]) -> FlipReportRun:
    """`modelupdate flip-report`: check the outputs, load both inputs, report (recording each input's
    path and sha256), write the requested files.

    ``outputs``: each report format asked for -> a path, ``'-'`` (stdout) or None.
    """
    from .inputs import load_inputs
    from .outputs import Outputs, deliver, input_record, step_summary_path

    plan = Outputs([old, new], outputs, extra_inputs=eval_cfg.input_files())
    summary = step_summary_path()
    datasets: dict[str, Any] = {}
    old_p, new_p = load_inputs([old, new], eval_cfg, datasets=datasets)
    result = flip_report(old_p, new_p, gates)
    images = None
    if eval_cfg.data is not None and outputs.get(ReportFormat.HTML) is not None:  # only the HTML page shows images
        images = flip_images(result, eval_cfg.data, eval_cfg.split, datasets)
    result = dataclasses.replace(result, inputs=(input_record("old", old, old_p), input_record("new", new, new_p)),
                                 reading=eval_cfg.reading(), images=images)
    return FlipReportRun(result, deliver(plan, summary, result, FLIP_REPORT_FORMATS))


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
            p = position.get(int(sample_id))  # type: ignore[call-overload]  # ids are ints here
        except (TypeError, ValueError):
            return None
        return None if p is None else samples.images[p].numpy()

    return image_of
