"""`modelupdate ldi-train`: train the new model against a reference (ELODI) or a baseline method.

Reads top to bottom: check inputs agree -> load data, old model and reference ->
build the objective of the chosen method -> train with the shared engine ->
measure error and flips against the old model -> write the checkpoint with
the method, its parameters and the sha256 of the old model and the reference.

``--old`` may also be the old model's prediction file (``.npz``, ``.csv``, predictions
``.safetensors``) where only its outputs exist: it then serves the flip metrics alone, on each split
of ``--data`` it covers (matched by sample id), and the methods held against the old model's logits
(``held_against == "old"`` in methods.py) refuse it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as st_save

from ..atomic import resolved
from ..checkpoint import (
    LoadedModel,
    atomic_write_bytes,
    check_compatible,
    load_checkpoint,
    read_safetensors,
    sha256_file,
)
from ..config import CSV_COLUMNS, DataConfig, TrainConfig
from ..data import Batch, Dataset, load_dataset
from ..data.transforms import SeenThrough, transform_of, whole_view
from ..engine import predict_logits
from ..errors import ConfigError, MismatchError
from ..events import EventHandler
from ..formats import REFERENCE_CACHE_FORMAT
from ..methods import REGISTRY, UpdateConfig, held_against, make_objective, with_method_defaults
from ..metrics import flip_counts
from ..predictions import Predictions, comparable_ids, is_predictions_file, positions, read_predictions, show_id
from ..reference import CachedReference
from ..runtime import Runtime, all_reduce_sum, setup_runtime
from .common import TrainedModel, check_arch, check_output_path, holds_output_lock, train_one


@holds_output_lock
def ldi_train(data_cfg: DataConfig, cfg: TrainConfig, update_cfg: UpdateConfig, out: Path, *,
              old: Path | None = None, reference: Path | None = None, reference_cache: Path | None = None,
              resume: bool = False, allow_other_data: bool = False, old_columns: Sequence[str] = CSV_COLUMNS,
              on_event: EventHandler | None = None) -> TrainedModel:
    """``old_columns``: the id, label and prediction columns when ``old`` is a prediction CSV."""
    out = Path(out)
    ucfg = update_cfg.for_inputs(has_reference=reference is not None, has_old=old is not None).resolved()
    method = REGISTRY[ucfg.method]
    cfg = with_method_defaults(cfg, ucfg.method)
    old_predictions = old if old is not None and is_predictions_file(old) else None
    _check_method_inputs(ucfg.method, old, reference, reference_cache)
    if old_predictions is not None:
        _check_old_predictions_usable(ucfg.method, update_cfg.method is None, old_predictions)
    if reference is not None and is_predictions_file(reference):
        raise ConfigError(f"--reference {reference}: is a prediction file; expected the reference ensemble's "
                          f"checkpoint (.safetensors, from ensemble-train)")
    check_output_path(out, resume=resume, inputs={"--old": old, "--reference": reference},
                      outputs={"--reference-cache": reference_cache})
    runtime = setup_runtime(cfg)
    data = load_dataset(data_cfg)
    check_arch(cfg, data.info)
    if ucfg.topk and ucfg.topk > data.info.num_classes:  # would quietly mean every class
        raise ConfigError(f"--topk {ucfg.topk}: more than the data's {data.info.num_classes} classes; expected "
                          f"0 (every class) to {data.info.num_classes}")

    old_labels: dict[str, np.ndarray] = {}  # the old model's labels on the splits its prediction file covers
    if old_predictions is not None:
        old_file = read_predictions(old_predictions, columns=old_columns, classes=data.info.classes)
        old_labels = old_labels_on_splits(_check_predictions_data(old_file, data, allow_other_data), data)
    old_model = _load_against_data(old, "--old", data, data_cfg, allow_other_data) \
        if old is not None and old_predictions is None else None
    if method.held_against == "reference":
        teacher: LoadedModel | None = _load_against_data(reference, "--reference", data, data_cfg, allow_other_data)
    else:  # the old model, or nothing
        teacher = old_model if method.held_against == "old" else None
    if teacher is not None:  # it sees the student's augmented view, resized and normalised its own way
        teacher = dataclasses.replace(teacher, model=SeenThrough(teacher.model, transform_of(teacher.meta),
                                                                 data.info.eval_transform))
        teacher.model.to(runtime.device)
        if cfg.channels_last:
            teacher.model.to(memory_format=torch.channels_last)
    if old_model is not None:
        old_model.model.to(runtime.device)

    cache = None
    if reference_cache is not None and teacher is not None:
        cache = load_or_build_reference_cache(reference_cache, teacher, data, runtime, cfg)
    objective = make_objective(ucfg, teacher_logits(teacher, cache), cfg.label_smoothing)

    epoch_metrics = final_metrics = None
    if old_model is not None:
        epoch_metrics = flip_metrics_on(old_model, data, "val", runtime, cfg) if len(data.val) else None
        # an image folder of train/ and val/ only has no test split: its flips on val stand at the end
        final_metrics = flip_metrics_on(old_model, data, "val" if "test" in data.absent else "test", runtime, cfg)
    elif old_labels:  # flips on every split the file covers: val each epoch, all of them at the end
        measures = {name: flip_metrics_on(labels, data, name, runtime, cfg) for name, labels in old_labels.items()}
        epoch_metrics = measures.get("val")
        final_metrics = lambda model: {k: v for m in measures.values() for k, v in m(model).items()}  # noqa: E731
    update: dict[str, Any] = {
        "method": ucfg.method, "params": ucfg.to_dict(),
        "parent_sha256": old_model.sha256 if old_model else None,
        "reference_sha256": teacher.sha256 if teacher is not None and method.held_against == "reference" else None,
        "reference_members": len(teacher.members) if teacher is not None else None,
        "reference_cache": str(reference_cache) if cache is not None else None,
    }
    if old_predictions is not None:  # the old model is known by its predictions only
        update |= {"parent_predictions": str(old_predictions),
                   "parent_predictions_sha256": sha256_file(old_predictions),
                   "parent_predictions_splits": sorted(old_labels)}
    return train_one(data, data_cfg, cfg, runtime, out, resume=resume, on_event=on_event, objective=objective,
                     epoch_metrics=epoch_metrics, final_metrics=final_metrics, update=update,
                     label=f"{ucfg.method} {cfg.arch}")


def _check_method_inputs(method: str, old: Path | None, reference: Path | None, cache: Path | None) -> None:
    for option, path in (("--old", old), ("--reference", reference)):
        if cache is not None and path is not None and resolved(cache) == resolved(path):
            raise ConfigError(f"--reference-cache {cache}: is the {option} file; expected a separate cache path")
    against = REGISTRY[method].held_against
    if against == "reference" and reference is None:
        raise ConfigError(f"--method {method}: needs --reference ENSEMBLE.safetensors (train one with ensemble-train)")
    if against == "old" and old is None:
        raise ConfigError(f"--method {method}: needs --old OLD.safetensors")
    if against != "reference" and reference is not None:
        raise ConfigError(f"--reference: only used by --method {' or '.join(held_against('reference'))} "
                          f"(got --method {method})")
    if against == "none" and cache is not None:
        raise ConfigError(f"--reference-cache: --method {method} has no reference to cache")


def _check_old_predictions_usable(method: str, defaulted: bool, old: Path) -> None:
    """A prediction file as --old serves the flip metrics only: no method held against the old logits."""
    if REGISTRY[method].held_against == "old":
        which = f"--method {method}" + (" (the default without --reference)" if defaulted else "")
        raise ConfigError(f"{which}: needs the old checkpoint (.safetensors), not the prediction file --old {old} "
                          f"(a prediction file serves only the flip metrics: use --method elodi with --reference, "
                          f"or --method ce)")


def _check_predictions_data(old: Predictions, data: Dataset, allow_other_data: bool) -> Predictions:
    """A prediction file written by `modelupdate predict` records the dataset's fingerprint: it must be --data's."""
    recorded = old.meta.get("dataset_fingerprint")
    if recorded and recorded != data.info.fingerprint and not allow_other_data:
        raise MismatchError(f"--old {old.source}: was predicted on other data than --data {data.info.name} (dataset "
                            f"fingerprint {recorded[:12]} vs {data.info.fingerprint[:12]}); pass --allow-other-data "
                            f"if that is intended")
    return old


def old_labels_on_splits(old: Predictions, data: Dataset, splits: Sequence[str] = ("val", "test")
                         ) -> dict[str, np.ndarray]:
    """The old model's predicted labels on each of ``splits`` that ``old`` covers: split name -> int64 [N_split],
    in the split's sample order.

    A split is covered when the file holds every one of its samples (by id: the dataset's integer ids, or the
    names of ``Split.id_names``) with the same target; other rows of the file are ignored. Raises MismatchError
    naming the file and, per split, what is missing when it covers none.
    """
    covered: dict[str, np.ndarray] = {}
    reasons = []
    for name in splits:
        split = getattr(data, name)
        if len(split) == 0:
            continue
        wanted, have = comparable_ids(np.asarray(split.sample_ids()), old.ids)
        rows, found = positions(have, wanted)
        if not found.all():
            missing = wanted[~found]
            reasons.append(f"{name}: {missing.size} of {wanted.size} ids missing, e.g. {show_id(missing[0].item())}")
            continue
        differ = np.flatnonzero(old.targets[rows] != split.targets.numpy())
        if differ.size:
            i = int(differ[0])
            reasons.append(f"{name}: targets differ for {differ.size} ids, e.g. id {show_id(wanted[i].item())}: "
                           f"file {int(old.targets[rows[i]])}, data {int(split.targets[i])}")
            continue
        covered[name] = old.preds[rows]
    if not covered:
        raise MismatchError(f"--old {old.source}: covers no split of --data {data.info.name} "
                            f"({'; '.join(reasons) or 'no samples'}); expected the old model's predictions on the "
                            f"val or test split, every sample by id")
    return covered


def _load_against_data(path: Path | None, option: str, data: Dataset, data_cfg: DataConfig,
                       allow_other_data: bool) -> LoadedModel:
    """Load ``path`` and check it fits ``--data``: classes and channels (its own preprocessing feeds it); and unless
    ``allow_other_data``, the same dataset (fingerprint) and validation split, so that validation
    images were never training images of the model held against."""
    assert path is not None
    loaded = load_checkpoint(path)
    check_compatible(loaded.meta, f"{option} {path}", data.info, f"--data {data.info.name}")
    if allow_other_data:
        return loaded
    if not loaded.meta.dataset_fingerprint:
        raise MismatchError(f"{option} {path}: was imported, so the data it was trained on is unknown (its training "
                            f"images may be in this validation split); pass --allow-other-data to use it")
    if loaded.meta.dataset_fingerprint != data.info.fingerprint and not _same_folder(loaded, data_cfg):
        raise MismatchError(f"{option} {path}: was trained on other data than --data {data.info.name} (dataset "
                            f"fingerprint {loaded.meta.dataset_fingerprint[:12]} vs {data.info.fingerprint[:12]}); "
                            f"pass --allow-other-data if that is intended")
    trained_on = loaded.meta.config.get("data", {})
    for key in ("val_fraction", "split_seed"):
        if key in trained_on and trained_on[key] != getattr(data_cfg, key):
            raise MismatchError(f"{option} {path}: was trained with {key} = {trained_on[key]!r}, this command has "
                                f"{getattr(data_cfg, key)!r} (its training images may be in this validation split); "
                                f"pass --allow-other-data if that is intended")
    return loaded


def _same_folder(loaded: LoadedModel, data_cfg: DataConfig) -> bool:
    """A model trained on the same image folder read at another size (its own input size) fits the data."""
    size = loaded.meta.config.get("data", {}).get("image_size")
    if not data_cfg.name.startswith("imagefolder:") or not isinstance(size, int) or size == data_cfg.image_size:
        return False
    from ..data.sources import folder_fingerprint_at

    return folder_fingerprint_at(data_cfg, size) == loaded.meta.dataset_fingerprint


# --------------------------------------------------------------------------- the teacher's logits


def teacher_logits(teacher: LoadedModel | None, cache: CachedReference | None
                   ) -> Callable[[Batch], torch.Tensor] | None:
    """The logits the student is held against, per batch: the teacher on the same augmented batch (online),
    or ``cache``'s by sample id (un-augmented images); None without a teacher."""
    if cache is not None:
        return lambda batch: cache.lookup(batch.ids)
    if teacher is None:
        return None
    model = teacher.model

    def online(batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            return model(batch.images).float()

    return online


# --------------------------------------------------------------------------- reference cache


def load_or_build_reference_cache(path: Path, teacher: LoadedModel, data: Dataset, runtime: Runtime,
                                  cfg: TrainConfig) -> CachedReference:
    """Reference logits of the un-augmented training split, keyed by sample id.

    Computed once and stored (safetensors) with the reference's sha256; reused when it still fits.
    """
    path = Path(path)
    precision = str(runtime.amp_dtype).removeprefix("torch.") if runtime.amp_dtype is not None else "float32"
    if path.exists():
        tensors, meta = read_safetensors(path)
        if meta.get("reference_sha256") != teacher.sha256 or meta.get("dataset_fingerprint") != \
                data.info.fingerprint or "logits" not in tensors or "ids" not in tensors:
            raise MismatchError(f"--reference-cache {path}: made for another reference or dataset; "
                                f"delete it to rebuild")
        if meta.get("precision", "float32") != precision:
            raise MismatchError(f"--reference-cache {path}: computed at {meta.get('precision', 'float32')}, this "
                                f"run computes at {precision} (--amp); delete it to rebuild")
        missing = set(data.train.ids.tolist()) - set(tensors["ids"].tolist())
        if missing:
            raise MismatchError(f"--reference-cache {path}: lacks {len(missing)} training ids "
                                f"(another split?); delete it to rebuild")
        return CachedReference(tensors["logits"], tensors["ids"]).to(runtime.device)
    # the whole clean image, as a training batch shows it (no evaluation crop); the teacher adapts it
    logits, _, ids = predict_logits(teacher.model, data.train, data.info, runtime, batch_size=cfg.eval_batch_size,
                                    transform=whole_view(data.info.eval_transform),
                                    shard=False)
    if runtime.is_main:
        meta = {"format": REFERENCE_CACHE_FORMAT, "reference_sha256": teacher.sha256,
                "dataset_fingerprint": data.info.fingerprint, "augmented": "false", "precision": precision}
        atomic_write_bytes(path, st_save({"logits": logits.contiguous(), "ids": ids.contiguous()}, metadata=meta))
    return CachedReference(logits, ids).to(runtime.device)


# --------------------------------------------------------------------------- flips vs the old model


def flip_metrics_on(old: LoadedModel | np.ndarray, data: Dataset, split_name: str, runtime: Runtime,
                    cfg: TrainConfig):
    """A function model -> {<split>_nfr, <split>_negative_flips, ...}: ``metrics.flip_counts`` of each
    rank's shard, pooled over ranks. ``old``: the old model, or its predicted labels on the split
    (int64 [N], in the split's order: ``old_labels_on_splits``)."""
    split = data.split(split_name)
    cached: dict[str, torch.Tensor] = {}

    def predictions(model: torch.nn.Module, **kw: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, targets, ids = predict_logits(model, split, data.info, runtime, batch_size=cfg.eval_batch_size, **kw)
        # an empty shard (tiny split, many ranks) has [0, 0] logits: no argmax
        return (logits.argmax(1) if len(targets) else targets), targets, ids

    def old_predictions(ids: torch.Tensor) -> np.ndarray:
        if isinstance(old, np.ndarray):  # this shard's samples, looked up by id
            return old[positions(split.ids.numpy(), ids.numpy())[0]]
        if "old" not in cached:  # through its own preprocessing, from the clean images
            cached["old"], _, _ = predictions(old.model, transform=transform_of(old.meta))
        return cached["old"].numpy()

    def measure(model: torch.nn.Module) -> dict[str, Any]:
        new, targets, ids = predictions(model, channels_last=cfg.channels_last)
        shard = flip_counts(old_predictions(ids), new.numpy(), targets.numpy())
        pooled = all_reduce_sum(torch.tensor([shard.n, shard.negative_flips, shard.positive_flips,
                                              shard.old_correct]), runtime)
        n, neg, pos, old_correct = (int(c) for c in pooled)
        return {f"{split_name}_nfr": neg / n if n else None, f"{split_name}_negative_flips": neg,
                f"{split_name}_positive_flips": pos, f"{split_name}_old_error_rate": 1 - old_correct / n if n else None}

    return measure
