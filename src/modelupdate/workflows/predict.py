"""`modelupdate predict`: run a checkpoint on a dataset split and write its predictions.

Reads top to bottom: lock the output path as the training commands do, check it, refuse a prediction
file as the checkpoint, run the checkpoint on the split (``inputs.predictions_from_checkpoint``), write
the prediction file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import check_output, holds_output_lock, remove_stale_temps, resolved
from ..config import DataConfig
from ..errors import ConfigError
from ..predictions import Predictions, is_predictions_file, write_predictions
from .inputs import predictions_from_checkpoint

WRITABLE_SUFFIXES = (".npz", ".safetensors")


def check_prediction_output(out: str | Path) -> Path:
    """Fail before any work when ``out`` cannot take a prediction file; remove the temp files a killed
    write of it left (call with ``out`` locked)."""
    out = check_output(out, "--out", suffixes=WRITABLE_SUFFIXES)
    remove_stale_temps(out)
    return out


@dataclass(frozen=True)
class PredictResult:
    out: Path
    predictions: Predictions

    @property
    def error_rate(self) -> float:
        p = self.predictions
        return float(np.count_nonzero(p.preds != p.targets)) / len(p)


@holds_output_lock
def predict(checkpoint: str | Path, data_cfg: DataConfig, out: str | Path, *, split: str = "test",
            device: str = "auto", batch_size: int | None = None,
            image_size_from_checkpoint: bool = False, on_batch=None) -> PredictResult:
    """Run ``checkpoint`` on ``split`` and write logits, preds, targets and ids to ``out``.
    ``batch_size`` None: by the model's input size; ``on_batch(done, total)``: progress, in images."""
    out = check_prediction_output(out)
    if is_predictions_file(checkpoint):
        raise ConfigError(f"{checkpoint} is a prediction file; predict needs a model or "
                          "ensemble checkpoint")
    if resolved(checkpoint) == resolved(out):
        raise ConfigError(f"--out {out} is the checkpoint itself")
    predictions = predictions_from_checkpoint(checkpoint, data_cfg, split=split, device=device,
                                              batch_size=batch_size,
                                              image_size_from_checkpoint=image_size_from_checkpoint,
                                              on_batch=on_batch)
    write_predictions(out, predictions)
    return PredictResult(out=out, predictions=predictions)
