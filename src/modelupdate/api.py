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

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import LoadedModel, load_checkpoint
from .config import CSV_COLUMNS, DEFAULT_MEMBERS, DataConfig, EvalConfig, GateSpec, TrainConfig, as_list
from .data.transforms import normalize_pixels
from .errors import ConfigError, ModelUpdateError, PredictionFileError
from .events import EventHandler
from .formats import read_meta
from .gates import GateResult, evaluate_gates, gate_spec
from .gates import failed_gates as _failed_gates
from .methods import UpdateConfig
from .metrics import ClassRow, FlipSummary, flip_summary, per_class_table
from .predictions import Predictions
from .predictions import read_predictions as _read_predictions
from .predictions import write_predictions as _write_predictions
from .workflows.common import TrainedModel
from .workflows.ensemble_train import TrainedEnsemble
from .workflows.ensemble_train import ensemble_train as _ensemble_train
from .workflows.inputs import predictions_from_checkpoint
from .workflows.ldi_train import ldi_train as _ldi_train
from .workflows.model_import import ImportResult, ImportSpec
from .workflows.model_import import import_model as _import_model
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
    return load_checkpoint(_path("path", path))


def info(path: str | Path):
    """A checkpoint's metadata (classes, input shape, normalisation, training config, metrics) from its
    header alone: no weights are read."""
    return read_meta(_path("path", path))


def predict(checkpoint: str | Path, data: DataConfig | str, *, split: str = "test",
            device: str = "auto") -> Predictions:
    """Run a checkpoint on a dataset split (``data``: a DataConfig or a dataset name such as
    ``"fashion-mnist"`` or ``"imagefolder:/path"``); the same Predictions ``modelupdate predict`` writes."""
    _strings(split=split, device=device)
    return predictions_from_checkpoint(_path("checkpoint", checkpoint), _data(data), split=split, device=device)


def predict_images(model: LoadedModel, images: torch.Tensor | np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits ``[N, num_classes]`` (float32) for images ``[N, C, H, W]`` of the checkpoint's input shape:
    uint8 pixels (0..255) or floats in 0..1, normalised here with the checkpoint's own mean and std."""
    if not isinstance(model, LoadedModel):
        raise ConfigError(f"model: expected a LoadedModel (api.load(path)), got {type(model).__name__}")
    batch_size = _positive_int("batch_size", batch_size)
    try:
        x = torch.as_tensor(images)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"images: expected a tensor or array [N, C, H, W], got {type(images).__name__}") from None
    meta = model.meta
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(meta.input_shape):
        raise ConfigError(f"images: expected shape [N, {', '.join(map(str, meta.input_shape))}] for {model.path}, "
                          f"got {list(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ConfigError(f"images: dtype {x.dtype}; expected uint8 pixels (0..255) or floats in 0..1")
    if x.is_floating_point() and x.numel() and not (bool(torch.isfinite(x).all()) and x.min() >= 0 and x.max() <= 1):
        raise ConfigError(f"images: float pixels must be finite and in 0..1 (got {float(x.min()):g}.."
                          f"{float(x.max()):g}); pass uint8 for 0..255")
    mean, std = meta.normalization["mean"], meta.normalization["std"]
    outputs = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            outputs.append(model.model(normalize_pixels(x[start:start + batch_size], mean, std)).float())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, meta.num_classes), np.float32)


def flip_metrics(old: np.ndarray | Predictions, new: np.ndarray | Predictions,
                 targets: np.ndarray | None = None) -> FlipSummary:
    """Every rate of a flip report (ER, NFR, PFR, relative NFR, NFI, BTC, BEC with 95% intervals, McNemar's
    p) from predicted labels ``[N]`` (class indices) and ``targets``, or from two Predictions matched by
    sample id."""
    old_preds, new_preds, targets, _ = _labels(old, new, targets)
    return flip_summary(old_preds, new_preds, targets)


def per_class(old: np.ndarray | Predictions, new: np.ndarray | Predictions, targets: np.ndarray | None = None,
              num_classes: int | None = None, classes: Sequence[str] | str | None = None) -> list[ClassRow]:
    """Per-class accuracy and flips, as in the report's class table: one row per class ``0..num_classes-1``.

    ``classes``: the class names in index order (a list or ``"a,b,c"``); each row is then named, the labels
    may be names instead of indices, and ``num_classes`` is their number. Without either, the classes are
    those of the Predictions, else ``0..`` the largest label."""
    names = as_list("classes", classes, str)
    if names is not None and (len(names) < 1 or len(set(names)) != len(names) or not all(n.strip() for n in names)):
        raise ConfigError(f"classes: expected distinct, non-empty class names, got {names[:8]}")
    if num_classes is not None:
        num_classes = _positive_int("num_classes", num_classes)
        if num_classes > MAX_CLASSES:
            raise ConfigError(f"num_classes: expected at most {MAX_CLASSES}, got {num_classes}")
    old_preds, new_preds, targets, known = _labels(old, new, targets, names)
    if names is None and known is not None and known.classes is not None:
        names = list(known.classes)
    if num_classes is not None and names is not None and num_classes != len(names):
        raise ConfigError(f"num_classes: {num_classes}, but there are {len(names)} class names")
    largest = int(max(old_preds.max(), new_preds.max(), targets.max()))
    k = num_classes or (len(names) if names is not None else None) or (known.num_classes if known else None) \
        or largest + 1
    if largest >= k:  # a row per class: a label beyond them would be dropped silently
        raise ConfigError(f"num_classes: {k}, but the labels hold class {largest}; expected num_classes > {largest}")
    return per_class_table(old_preds, new_preds, targets, k, list(names) if names is not None else None)


def check_gates(summary: FlipSummary, per_class_rows: Sequence[ClassRow] = (), *, gate_on: str = GateSpec.gate_on,
                **thresholds: str | None) -> list[GateResult]:
    """The gates of ``flip-report``, one keyword per gate (``max_nfr``, ``max_rel_nfr``, ``max_er``,
    ``max_er_increase``, ``min_btc``, ``max_class_nfr``, ``max_nfi``: ``gates.GATES``), thresholds written as
    on the command line ("2%", "0.02", "1.1"); ``gate_on`` as flip-report's --gate-on (the point estimate by
    default). Each result has ``passed``; ``failed_gates(results)`` names the failures."""
    if not isinstance(summary, FlipSummary):
        raise ConfigError(f"summary: expected a FlipSummary (api.flip_metrics), got {type(summary).__name__}")
    rows = _items("per_class_rows", per_class_rows, ClassRow, "ClassRow rows (api.per_class)")
    return evaluate_gates(summary, rows, gate_spec(gate_on, **thresholds))


def failed_gates(results: Sequence[GateResult]) -> list[str]:
    """The names of the gates in ``results`` (from ``check_gates``) that failed, in order."""
    return _failed_gates(_items("results", results, GateResult, "GateResult items (api.check_gates)"))


def read_predictions(path: str | Path, *, columns: Sequence[str] | str = CSV_COLUMNS,
                     classes: Sequence[str] | str | None = None) -> Predictions:
    """A ``.npz``, ``.csv`` or predictions ``.safetensors`` file, validated, as ``flip-report`` reads it.

    ``columns``: for a CSV, the names of its id, true-label and predicted-label columns, in that order
    (matched without regard to case; ``("id", "target", "pred")`` unless given; a list or ``"a,b,c"``).
    ``classes``: the class names in index order; a CSV's label columns may then hold names, and a file
    that names its own classes must name the same ones."""
    path = _path("path", path)
    names = as_list("columns", columns, str)
    if names is None or len(names) != 3 or not all(n.strip() for n in names) \
            or len({n.strip().lower() for n in names}) != 3:
        raise ConfigError(f"columns: expected three different column names (id, label, prediction), got {columns!r}")
    try:
        return _read_predictions(path, columns=names, classes=as_list("classes", classes, str))
    except PredictionFileError as exc:  # the reader's hint names the CLI's options; here it is a parameter
        message = str(exc).replace("--id-column, --label-column, --pred-column", "columns=(id, label, pred)")
        raise PredictionFileError(message) from None


def write_predictions(path: str | Path, predictions: Predictions) -> Path:
    """Write ``predictions`` atomically as ``.npz`` or ``.safetensors`` (the files ``modelupdate predict``
    writes); returns the path."""
    if not isinstance(predictions, Predictions):
        raise ConfigError(f"predictions: expected Predictions, got {type(predictions).__name__}")
    return _write_predictions(_path("path", path), predictions)


def train(data: DataConfig, config: TrainConfig, out: str | Path, *, resume: bool = False,
          on_event: EventHandler | None = None) -> TrainedModel:
    """``modelupdate train``: one model, written to ``out`` (returns its path, metadata and timing). ``data``:
    a DataConfig or a dataset name, as in ``predict``."""
    _flags(resume=resume)
    return _train(_data(data), _config(config), _path("out", out), resume=resume, on_event=_handler(on_event))


def ensemble_train(data: DataConfig, config: TrainConfig, out: str | Path, members: int = DEFAULT_MEMBERS, *,
                   resume: bool = False, on_event: EventHandler | None = None,
                   snapshots: bool = False) -> TrainedEnsemble:
    """``modelupdate ensemble-train``: ``members`` models (seeds seed+100..seed+100+members-1) in one file; with
    ``snapshots``, ``members`` snapshots of one run (``--snapshots``)."""
    _flags(resume=resume, snapshots=snapshots)
    return _ensemble_train(_data(data), _config(config), _path("out", out), _positive_int("members", members),
                           resume=resume, on_event=_handler(on_event), snapshots=snapshots)


def ldi_train(data: DataConfig, config: TrainConfig, update: UpdateConfig, out: str | Path, *,
              old: str | Path | None = None, reference: str | Path | None = None, resume: bool = False,
              allow_other_data: bool = False, on_event: EventHandler | None = None) -> TrainedModel:
    """``modelupdate ldi-train``: the new model held against a reference ensemble (ELODI, the default with
    ``reference``) or trained with a baseline method; ``old`` (a checkpoint or prediction file) is what
    the flip rates are measured against."""
    _flags(resume=resume, allow_other_data=allow_other_data)
    if not isinstance(update, UpdateConfig):
        raise ConfigError(f"update: expected an UpdateConfig, got {type(update).__name__}")
    return _ldi_train(_data(data), _config(config), update, _path("out", out),
                      old=None if old is None else _path("old", old),
                      reference=None if reference is None else _path("reference", reference), resume=resume,
                      allow_other_data=allow_other_data, on_event=_handler(on_event))


def import_model(spec: ImportSpec, out: str | Path) -> ImportResult:
    """``modelupdate import``: wrap a model trained elsewhere (``spec``) into a checkpoint at ``out``."""
    if not isinstance(spec, ImportSpec):
        raise ConfigError(f"spec: expected an ImportSpec, got {type(spec).__name__}")
    return _import_model(spec, _path("out", out))


# The entry points check what Python lets through and the CLI never passes (a wrong type, a bool for a count):
# one line naming the parameter, as docs/api.md promises, instead of a TypeError deep inside.

# class indices beyond this are refused: a per-class table allocates one row per class
MAX_CLASSES = 2**20


def _path(name: str, value: Any) -> Path:
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{name}: expected a file path (str or os.PathLike), got {value!r}")
    return Path(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 1 <= value < 2**63:  # type: ignore[operator]  # an Integral compares with ints; its stub omits it
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _flags(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected True or False, got {value!r}")


def _strings(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")


def _data(data: Any) -> DataConfig:
    if isinstance(data, str):
        return DataConfig(name=data)
    if not isinstance(data, DataConfig):
        raise ConfigError(f"data: expected a DataConfig or a dataset name, got {type(data).__name__}")
    return data


def _config(config: Any) -> TrainConfig:
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config: expected a TrainConfig, got {type(config).__name__}")
    return config


def _handler(on_event: Any) -> EventHandler | None:
    if on_event is not None and not callable(on_event):
        raise ConfigError(f"on_event: expected a callable or None, got {type(on_event).__name__}")
    return on_event


def _items(name: str, values: Any, kind: type, noun: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"{name}: expected a list of {noun}, got {type(values).__name__}")
    wrong = [type(v).__name__ for v in values if not isinstance(v, kind)]
    if wrong:
        raise ConfigError(f"{name}: expected a list of {noun}, got one holding {wrong[0]}")
    return list(values)


def _labels(old, new, targets, classes: list[str] | None = None):
    """Old and new predicted labels and the targets as int64 class indices (names mapped through ``classes``),
    and the aligned old Predictions (None for arrays)."""
    if isinstance(old, Predictions) or isinstance(new, Predictions):
        if not (isinstance(old, Predictions) and isinstance(new, Predictions)):
            raise ConfigError("old, new: pass two Predictions or two label arrays, not one of each")
        from .predictions import align

        old, new = align(old, new)
        if classes is not None and old.classes is not None and list(old.classes) != classes:
            raise ConfigError(f"classes: the Predictions name other classes ({list(old.classes)[:8]})")
        return old.preds, new.preds, old.targets, old
    if targets is None:
        raise ConfigError("targets: needed with label arrays")
    arrays = []
    for name, a in (("old", old), ("new", new), ("targets", targets)):
        try:
            arrays.append(np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a))
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"{name}: expected a 1-D array of class indices, got {type(a).__name__}") from None
    if any(a.ndim != 1 for a in arrays) or len({a.shape[0] for a in arrays}) != 1 or arrays[0].shape[0] == 0:
        raise ConfigError(f"old, new, targets: expected non-empty 1-D label arrays of one length, got shapes "
                          f"{[list(a.shape) for a in arrays]}")
    labels = []
    for name, a in zip(("old", "new", "targets"), arrays, strict=True):
        if classes is not None and a.dtype.kind in "UO" and all(isinstance(v, str) for v in a.tolist()):
            index = {c: i for i, c in enumerate(classes)}
            unknown = sorted({v for v in a.tolist() if v not in index})
            if unknown:
                raise ConfigError(f"{name}: {unknown[0]!r} is not one of classes ({', '.join(classes[:8])}"
                                  f"{', ...' if len(classes) > 8 else ''})")
            a = np.array([index[v] for v in a.tolist()], dtype=np.int64)
        if a.dtype.kind not in "iu":
            hint = "" if classes is not None or a.dtype.kind not in "UO" else " (class names need classes=)"
            raise ConfigError(f"{name}: expected class indices (integers >= 0), got dtype {a.dtype}{hint}")
        low, high = int(a.min()), int(a.max())  # Python ints: a uint64 beyond int64 is not wrapped
        if low < 0 or high >= MAX_CLASSES:
            raise ConfigError(f"{name}: expected class indices in 0..{MAX_CLASSES - 1}, got "
                              f"{low if low < 0 else high}")
        labels.append(a.astype(np.int64))
    return labels[0], labels[1], labels[2], None
