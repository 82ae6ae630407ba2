"""The inputs of the analysis commands: prediction files, or checkpoints run on a dataset split.

Reads top to bottom: decide what each input path is (a prediction file or a checkpoint), find the
class list that CSV labels may name (``--classes``, else a checkpoint's, else another prediction
file's), read prediction files first (a bad one fails before any model runs), then load the dataset
once and run each checkpoint on the split, keeping its logits and provenance. Samples of an
``imagefolder:`` dataset are named by their image's path under the dataset root (string ids).

torch is imported only when a checkpoint has to run, so commands that work on prediction files
alone start in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..config import SPLITS, DataConfig, EvalConfig, eval_batch_size_for
from ..errors import ConfigError, MismatchError, ModelUpdateWarning
from ..formats import file_kind, header_metadata
from ..predictions import Predictions, read_predictions

# Inference timing for compare: a fixed batch of random images, a few warm-up calls (lazy
# initialisation, the ensemble's batched-or-loop choice, allocator growth), then timed calls.
TIMING_BATCH = 64
TIMING_WARMUP = 2
TIMING_BATCHES = 5


def checkpoint_kind(path: str | Path) -> str | None:
    """'model' or 'ensemble' for a modelupdate checkpoint, None for anything else.

    Anything that is not recognisably a checkpoint goes to the prediction-file reader,
    whose messages then say what is wrong with it.
    """
    kind = file_kind(path)
    return kind if kind in ("model", "ensemble") else None


def checkpoint_classes(path: str | Path) -> list[str] | None:
    """The class names in a checkpoint's header; None when it has none readable."""
    try:
        classes = json.loads((header_metadata(path) or {}).get("classes", "null"))
    except (ValueError, RecursionError):
        return None
    if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
        return classes
    return None


def read_prediction_files(paths: dict[int, str | Path], options: EvalConfig,
                          classes: list[str] | None) -> dict[int, Predictions]:
    """Read the prediction files among the inputs (index -> path), CSVs last: their label columns may
    name classes, found in ``classes`` or else in the first other file that names its classes."""
    loaded: dict[int, Predictions] = {}
    csv_last = sorted(paths, key=lambda i: Path(paths[i]).suffix.lower() == ".csv")
    for i in csv_last:
        if classes is None and Path(paths[i]).suffix.lower() == ".csv":
            classes = next((p.classes for p in loaded.values() if p.classes is not None), None)
        loaded[i] = checked_provenance(read_predictions(paths[i], columns=options.csv_columns, classes=classes))
    return loaded


# provenance a report copies from a prediction file, and the form each must have to be copied: the sha256 of
# a file, a split name, or one line of printable text (a dataset name or fingerprint, of any writer)
_SHA256 = re.compile(r"[0-9a-f]{64}")
PROVENANCE_FORMS: dict[str, tuple[str, Any]] = {
    "checkpoint_sha256": ("a sha256 (64 lowercase hex digits)", _SHA256.fullmatch),
    "split": (f"one of {', '.join(SPLITS)}", lambda v: v in SPLITS),
    "dataset": ("printable text", lambda v: 0 < len(v) <= 1000 and v.isprintable()),
    "dataset_fingerprint": ("printable text", lambda v: 0 < len(v) <= 200 and v.isprintable()),
    "trained_on_fingerprint": ("printable text", lambda v: 0 < len(v) <= 200 and v.isprintable()),
}


def checked_provenance(predictions: Predictions) -> Predictions:
    """``predictions`` without the provenance values that are not of their form: a report never repeats a
    malformed value as if it were known; one warning line names what was left out."""
    bad = [key for key, (_, ok) in PROVENANCE_FORMS.items()
           if key in predictions.meta and not (isinstance(predictions.meta[key], str) and ok(predictions.meta[key]))]
    if not bad:
        return predictions
    warnings.warn(f"{predictions.source}: provenance left out of the report: " + "; ".join(
        f"{key} is not {PROVENANCE_FORMS[key][0]}" for key in bad), ModelUpdateWarning, stacklevel=2)
    return dataclasses.replace(predictions, meta={k: v for k, v in predictions.meta.items() if k not in bad})


def check_same_data(inputs: list[tuple[str | Path, Predictions]], allow_other_data: bool) -> None:
    """Inputs that record the dataset, its fingerprint or the split they were made on must record the same:
    otherwise their flips would pair different samples. An image folder is named by a path that differs
    between machines and fingerprinted at each model's input size, so only its kind is compared.
    ``allow_other_data``: one warning line instead."""
    def recorded(meta: dict[str, str], key: str) -> str | None:
        value = meta.get(key) if isinstance(meta.get(key), str) else None
        folder = str(meta.get("dataset", "")).startswith("imagefolder:")
        if key == "dataset" and folder:
            return "imagefolder"
        return None if key == "dataset_fingerprint" and folder else value

    for key, what in (("split", "split"), ("dataset", "dataset"), ("dataset_fingerprint", "data fingerprint")):
        known = [(path, value) for path, p in inputs if (value := recorded(p.meta, key)) is not None]
        other = next(((path, value) for path, value in known[1:] if value != known[0][1]), None)
        if other is None:
            continue
        text = f"{known[0][0]} was made on {what} {known[0][1]!r}, {other[0]} on {other[1]!r}"
        if not allow_other_data:
            raise MismatchError(f"{text}; expected the same {what} (pass --allow-other-data to compare them "
                                f"anyway)")
        warnings.warn(f"{text} (--allow-other-data: compared anyway)", ModelUpdateWarning, stacklevel=2)
        return  # one line is enough: another dataset has another fingerprint too


def load_inputs(paths: list[str | Path], options: EvalConfig,
                timed: list[bool] | None = None, datasets: dict[str, Any] | None = None) -> list[Predictions]:
    """Every path as Predictions, in order. Cheap checks and prediction files come first,
    so a bad input fails before any model runs; the dataset is loaded at most once.

    ``timed[i]``: also measure the inference time of checkpoint ``i`` (meta "ms_per_image"). ``datasets``:
    where the loaded datasets are kept by configuration, for the caller to reuse (the report's images).
    """
    timed = timed or [False] * len(paths)
    kinds = [checkpoint_kind(p) for p in paths]
    for path, kind in zip(paths, kinds, strict=True):
        if kind is not None and options.data is None:
            article = "an" if kind == "ensemble" else "a"
            raise ConfigError(f"{path} is {article} {kind} checkpoint; pass --data to evaluate it")
    classes = list(options.classes) if options.classes is not None else next(
        (c for p, k in zip(paths, kinds, strict=True) if k is not None and (c := checkpoint_classes(p))), None)
    loaded = read_prediction_files({i: p for i, (p, k) in enumerate(zip(paths, kinds, strict=True)) if k is None},
                                   options, classes)
    if not options.allow_other_data:  # prediction files that disagree fail before any model runs
        check_same_data([(paths[i], p) for i, p in sorted(loaded.items())], False)
    datasets = {} if datasets is None else datasets
    for i, (path, kind) in enumerate(zip(paths, kinds, strict=True)):
        if kind is not None:
            assert options.data is not None
            loaded[i] = predictions_from_checkpoint(
                path, options.data, split=options.split, device=options.device,
                batch_size=options.batch_size, measure_speed=timed[i],
                image_size_from_checkpoint=options.image_size_from_checkpoint,
                datasets=datasets)
    check_same_data([(paths[i], loaded[i]) for i in range(len(paths))], options.allow_other_data)
    return [loaded[i] for i in range(len(paths))]


def predictions_from_checkpoint(
    path: str | Path,
    data_cfg: DataConfig,
    *,
    split: str = "test",
    device: str = "auto",
    batch_size: int | None = None,
    measure_speed: bool = False,
    image_size_from_checkpoint: bool = False,
    datasets: dict[str, Any] | None = None,
    on_batch=None,
) -> Predictions:
    """Run a model or ensemble checkpoint on one split: logits [N, C], targets, ids, classes.

    The ids are the dataset's: integers, or for ``imagefolder:`` each image's path under the root.

    Raises CheckpointError for a bad file, MismatchError naming checkpoint and dataset when
    their classes, input shape or normalisation differ, DataError for a bad dataset.
    ``meta`` records provenance (checkpoint sha256, arch, dataset, split) and ``params``;
    with ``measure_speed`` also ``ms_per_image``. ``datasets`` caches loaded datasets by config.
    """
    from ..checkpoint import check_compatible, load_checkpoint
    from ..data.transforms import transform_of
    from ..engine import predict_logits
    from ..models import count_parameters
    from ..runtime import Runtime, select_device

    path = Path(path)
    runtime = Runtime(device=select_device(device))  # a bad --device fails before any loading
    loaded = load_checkpoint(path)
    meta = loaded.meta
    transform = transform_of(meta)  # the checkpoint's own preprocessing
    if image_size_from_checkpoint and data_cfg.name.startswith("imagefolder:"):
        # decoded at the size its transform resizes to, then centre-cropped by it (as in production)
        data_cfg = dataclasses.replace(data_cfg, image_size=transform.resize_size, crop_pct=None, resize=None)
    if data_cfg.name.startswith("imagefolder:") and data_cfg.mean is None:
        # an image folder has no normalisation of its own: the checkpoint's is how its images are fed to it
        norm = meta.normalization
        data_cfg = dataclasses.replace(data_cfg, mean=",".join(map(repr, norm["mean"])),
                                       std=",".join(map(repr, norm["std"])))
    data = _dataset(data_cfg, datasets)
    check_compatible(meta, str(path), data.info, f"--data {data.info.name}")
    samples = data.split(split)

    model = loaded.model.to(runtime.device)
    logits, targets, ids = predict_logits(model, samples, data.info, runtime, shard=False, transform=transform,
                                          batch_size=batch_size or eval_batch_size_for(meta.input_shape),
                                          on_batch=on_batch)
    provenance = {
        "checkpoint": str(path),
        "checkpoint_sha256": loaded.sha256,
        "checkpoint_kind": "ensemble" if meta.is_ensemble else "model",
        "arch": meta.arch,
        "dataset": data.info.name,
        "dataset_fingerprint": data.info.fingerprint,
        "trained_on_fingerprint": meta.dataset_fingerprint,
        "split": split,
        "params": str(count_parameters(model)),
    }
    if measure_speed:
        ms = measure_ms_per_image(model, meta.input_shape, runtime.device)
        provenance["ms_per_image"] = f"{ms:.6g}"
    sample_ids = samples.sample_ids(ids) if samples.id_names is not None else ids.numpy()
    return Predictions.from_arrays(np.asarray(sample_ids), targets.numpy(), logits=logits.numpy(),
                                   classes=list(meta.classes), source=str(path), meta=provenance)


def _dataset(data_cfg: DataConfig, cache: dict[str, Any] | None):
    from ..data import load_dataset

    if cache is None:
        return load_dataset(data_cfg)
    key = data_cfg.to_json()
    if key not in cache:
        cache[key] = load_dataset(data_cfg)
    return cache[key]


def measure_ms_per_image(model, input_shape: tuple[int, ...], device, *, batch: int = TIMING_BATCH,
                         warmup: int = TIMING_WARMUP, batches: int = TIMING_BATCHES) -> float:
    """Milliseconds per image of ``model`` on ``batch`` random inputs of ``input_shape`` [C, H, W].

    ``warmup`` untimed calls, then the mean over ``batches`` timed calls (device synchronised).
    """
    import torch

    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        sync()
        seconds = time.perf_counter() - start
    model.train(was_training)
    return 1000.0 * seconds / (batches * batch)


def cost_columns(predictions: Predictions) -> dict[str, float | int | None]:
    """``params`` and ``ms_per_image`` recorded in a Predictions' meta (None when absent)."""
    def number(key: str, kind: type) -> Any:
        raw = predictions.meta.get(key)
        try:
            return kind(raw) if raw is not None else None
        except ValueError:
            return None

    return {"params": number("params", int), "ms_per_image": number("ms_per_image", float)}
