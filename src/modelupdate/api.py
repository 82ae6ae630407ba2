"""The Python API: what a notebook or a training script needs, in one import.

    from modelupdate import api

    old = api.load("old.safetensors")
    logits = api.predict_images(old, images)           # uint8 or float images [N, C, H, W]
    summary = api.flip_metrics(old_preds, new_preds, targets)
    print(summary.nfr.value, summary.nfr.ci95)
    results = api.check_gates(summary, max_nfr="2%")

Every function here is the one the command line calls (or a thin layer over it), so a result computed
here equals the CLI's. Errors are the exceptions of :mod:`modelupdate.errors`, each with a one-line
message; nothing here prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedModel, load_checkpoint, read_meta
from .config import DataConfig, EvalConfig, GateSpec, TrainConfig, UpdateConfig
from .engine import EventHandler
from .errors import ConfigError, ModelUpdateError
from .gates import GateResult, evaluate_gates, failed_gates, gate_spec
from .metrics import ClassRow, FlipSummary, flip_summary, per_class_table
from .predictions import Predictions, read_predictions, write_predictions
from .workflows.common import TrainedModel
from .workflows.ensemble_train import DEFAULT_MEMBERS, TrainedEnsemble
from .workflows.ensemble_train import ensemble_train as _ensemble_train
from .workflows.inputs import predictions_from_checkpoint
from .workflows.ldi_train import ldi_train as _ldi_train
from .workflows.model_import import ImportResult, ImportSpec, import_model
from .workflows.train import train as _train

__all__ = [
    "DataConfig", "EvalConfig", "GateSpec", "TrainConfig", "UpdateConfig", "ImportSpec", "Predictions",
    "FlipSummary", "GateResult", "LoadedModel", "ModelUpdateError", "ImportResult", "TrainedModel", "TrainedEnsemble",
    "load", "info", "predict", "predict_images", "flip_metrics", "per_class", "check_gates", "failed_gates",
    "read_predictions", "write_predictions", "train", "ensemble_train", "ldi_train", "import_model",
]


def load(path: str | Path) -> LoadedModel:
    """A model or ensemble checkpoint, rebuilt in eval mode on the CPU (``.model``, ``.meta``, ``.sha256``).

    A checkpoint naming code outside the registry and torchvision is refused unless its module is listed
    in ``$MODELUPDATE_ARCH_MODULES``."""
    return load_checkpoint(path)


def info(path: str | Path):
    """A checkpoint's metadata (classes, input shape, normalisation, training config, metrics) from its
    header alone: no weights are read."""
    return read_meta(path)


def predict(checkpoint: str | Path, data: DataConfig | str, *, split: str = "test",
            device: str = "auto") -> Predictions:
    """Run a checkpoint on a dataset split (``data``: a DataConfig or a dataset name such as
    ``"fashion-mnist"`` or ``"imagefolder:/path"``); the same Predictions ``modelupdate predict`` writes."""
    data_cfg = DataConfig(name=data) if isinstance(data, str) else data
    return predictions_from_checkpoint(checkpoint, data_cfg, split=split, device=device)


def predict_images(model: LoadedModel, images: torch.Tensor | np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits ``[N, num_classes]`` (float32) for images ``[N, C, H, W]`` of the checkpoint's input shape:
    uint8 pixels (0..255) or floats in 0..1, normalised here with the checkpoint's own mean and std."""
    x = torch.as_tensor(images)
    meta = model.meta
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(meta.input_shape):
        raise ConfigError(f"images: expected shape [N, {', '.join(map(str, meta.input_shape))}] for {model.path}, "
                          f"got {list(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ConfigError(f"images: dtype {x.dtype}; expected uint8 pixels (0..255) or floats in 0..1")
    if x.is_floating_point() and x.numel() and not (bool(torch.isfinite(x).all()) and x.min() >= 0 and x.max() <= 1):
        raise ConfigError(f"images: float pixels must be finite and in 0..1 (got {float(x.min()):g}.."
                          f"{float(x.max()):g}); pass uint8 for 0..255")
    mean = torch.tensor(meta.normalization["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta.normalization["std"]).view(1, -1, 1, 1)
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    outputs = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start:start + batch_size].float() / scale
            outputs.append(model.model((batch - mean) / std).float())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, meta.num_classes), np.float32)


def flip_metrics(old: np.ndarray | Predictions, new: np.ndarray | Predictions,
                 targets: np.ndarray | None = None) -> FlipSummary:
    """Every rate of a flip report (ER, NFR, PFR, relative NFR, NFI, BTC, BEC with 95% intervals, McNemar's
    p) from predicted labels ``[N]`` and ``targets``, or from two Predictions matched by sample id."""
    old_preds, new_preds, targets = _labels(old, new, targets)
    return flip_summary(old_preds, new_preds, targets)


def per_class(old: np.ndarray | Predictions, new: np.ndarray | Predictions, targets: np.ndarray | None = None,
              num_classes: int | None = None) -> list[ClassRow]:
    """Per-class accuracy and flips, as in the report's class table."""
    old_preds, new_preds, targets = _labels(old, new, targets)
    k = num_classes or int(max(old_preds.max(initial=0), new_preds.max(initial=0), targets.max(initial=0))) + 1
    return per_class_table(old_preds, new_preds, targets, k)


def check_gates(summary: FlipSummary, per_class_rows: Sequence[ClassRow] = (), *, max_nfr: str | None = None,
                max_rel_nfr: str | None = None, max_er: str | None = None, max_er_increase: str | None = None,
                min_btc: str | None = None, max_class_nfr: str | None = None,
                gate_on: str = GateSpec.gate_on) -> list[GateResult]:
    """The gates of ``flip-report``, thresholds written as on the command line ("2%", "0.02", "1.1");
    ``gate_on`` as flip-report's --gate-on (the point estimate by default). Each result has
    ``passed``; ``failed_gates(results)`` names the failures."""
    spec = gate_spec(max_nfr=max_nfr, max_rel_nfr=max_rel_nfr, max_er=max_er, max_er_increase=max_er_increase,
                     min_btc=min_btc, max_class_nfr=max_class_nfr, gate_on=gate_on)
    return evaluate_gates(summary, list(per_class_rows), spec)


def train(data: DataConfig, config: TrainConfig, out: str | Path, *, resume: bool = False,
          on_event: EventHandler | None = None) -> TrainedModel:
    """``modelupdate train``: one model, written to ``out`` (returns its path, metadata and timing)."""
    return _train(data, config, Path(out), resume=resume, on_event=on_event)


def ensemble_train(data: DataConfig, config: TrainConfig, out: str | Path, members: int = DEFAULT_MEMBERS, *,
                   resume: bool = False, on_event: EventHandler | None = None,
                   snapshots: bool = False) -> TrainedEnsemble:
    """``modelupdate ensemble-train``: ``members`` models (seeds seed+100..seed+100+members-1) in one file; with
    ``snapshots``, ``members`` snapshots of one run (``--snapshots``)."""
    return _ensemble_train(data, config, Path(out), members, resume=resume, on_event=on_event, snapshots=snapshots)


def ldi_train(data: DataConfig, config: TrainConfig, update: UpdateConfig, out: str | Path, *,
              old: str | Path | None = None, reference: str | Path | None = None, resume: bool = False,
              allow_other_data: bool = False, on_event: EventHandler | None = None) -> TrainedModel:
    """``modelupdate ldi-train``: the new model held against a reference ensemble (ELODI, the default with
    ``reference``) or trained with a baseline method; ``old`` (a checkpoint or prediction file) is what
    the flip rates are measured against."""
    return _ldi_train(data, config, update, Path(out), old=Path(old) if old else None,
                      reference=Path(reference) if reference else None, resume=resume,
                      allow_other_data=allow_other_data, on_event=on_event)


def _labels(old, new, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(old, Predictions) or isinstance(new, Predictions):
        if not (isinstance(old, Predictions) and isinstance(new, Predictions)):
            raise ConfigError("old, new: pass two Predictions or two label arrays, not one of each")
        from .predictions import align

        old, new = align(old, new)
        return old.preds, new.preds, old.targets
    if targets is None:
        raise ConfigError("targets: needed with label arrays")
    arrays = [np.asarray(a) for a in (old, new, targets)]
    if any(a.ndim != 1 for a in arrays) or len({a.shape[0] for a in arrays}) != 1 or arrays[0].shape[0] == 0:
        raise ConfigError(f"old, new, targets: expected non-empty 1-D label arrays of one length, got shapes "
                          f"{[list(a.shape) for a in arrays]}")
    for name, a in zip(("old", "new", "targets"), arrays, strict=True):
        if a.dtype.kind not in "iu" or a.min() < 0:
            raise ConfigError(f"{name}: expected class indices (integers >= 0), got dtype {a.dtype}"
                              + (f" with {a.min()}" if a.dtype.kind in "iu" else ""))
    return arrays[0].astype(np.int64), arrays[1].astype(np.int64), arrays[2].astype(np.int64)

