#!/usr/bin/env python3
"""Merge ensemble checkpoints trained with the same recipe into one (a larger reference, no retraining).

    python scripts/merge_ensembles.py A.safetensors B.safetensors --out AB.safetensors
    python scripts/merge_ensembles.py AB.safetensors --first 2 --out A2.safetensors   # a smaller reference

The inputs must agree on everything but the seeds (architecture and its arguments, classes, input
shape, normalisation, dataset and its fingerprint, data and training options); the seeds must not
repeat. The merged file lists every member's seed and metrics; its own test metrics are measured
again on the test split of the inputs' dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from modelupdate.checkpoint import load_checkpoint, save_ensemble
from modelupdate.config import DataConfig
from modelupdate.data import load_dataset
from modelupdate.engine import accuracy_counts, predict_logits
from modelupdate.errors import ConfigError, MismatchError
from modelupdate.formats import ModelMeta
from modelupdate.recipe import check_same, recipe_of
from modelupdate.reference import EnsembleReference
from modelupdate.runtime import Runtime

SAME = ("arch", "arch_args", "classes", "input_shape", "normalization", "eval_transform", "dataset",
        "dataset_fingerprint")


def recipe(meta: ModelMeta) -> dict:
    """The training recipe but the seed (modelupdate.recipe: the rule resume and kept members follow too)."""
    found = recipe_of(meta.config.get("train", {}), meta.config.get("data", {}), fingerprint=meta.dataset_fingerprint)
    del found["train"]["seed"]  # the seeds differ by design
    return found


def merge(paths: list[Path], out: Path, keep_first: int | None = None) -> ModelMeta:
    """``keep_first``: keep only the first members of the inputs, in order (a smaller reference, no retraining)."""
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0]
    for path, other in zip(paths[1:], loaded[1:], strict=True):
        if not other.meta.is_ensemble or not first.meta.is_ensemble:
            raise MismatchError(f"{path}: not an ensemble checkpoint")
        for key in SAME:
            if getattr(other.meta, key) != getattr(first.meta, key):
                raise MismatchError(f"{path}: {key} differs from {paths[0]}")
        try:
            check_same(recipe(first.meta), recipe(other.meta), what=str(paths[0]),
                       remedy=f"{path} has another recipe")
        except ConfigError as exc:
            raise MismatchError(str(exc)) from None
    seeds = [s for m in loaded for s in m.meta.member_seeds]
    if len(set(seeds)) != len(seeds):
        raise MismatchError(f"member seeds repeat: {seeds}")
    members = [member for m in loaded for member in m.members]
    keep = len(members) if keep_first is None else keep_first
    if not 1 <= keep <= len(members):
        raise MismatchError(f"--first {keep_first}: expected 1 to {len(members)} members")
    members, seeds = members[:keep], seeds[:keep]
    data = load_dataset(DataConfig.from_dict(first.meta.config["data"]))
    runtime = Runtime(torch.device("cpu"))
    logits, targets, _ = predict_logits(EnsembleReference(members), data.test, data.info, runtime)
    test = accuracy_counts(logits, targets, runtime)
    member_metrics = [mm for m in loaded for mm in m.meta.member_metrics][:keep]
    meta = ModelMeta(**{key: getattr(first.meta, key) for key in SAME}, config=first.meta.config)
    meta.member_seeds = seeds
    meta.member_metrics = member_metrics
    meta.metrics = {
        "test_error_rate": test["error_rate"], "test_n": test["n"], "test_correct": test["correct"],
        "member_test_error_rate_mean": None if any(m.get("test_error_rate") is None for m in member_metrics)
        else sum(m["test_error_rate"] for m in member_metrics) / len(member_metrics),
        "train_seconds": sum(m.get("train_seconds", 0.0) for m in member_metrics),
        "merged_from": [str(p) for p in paths],
    }
    save_ensemble(out, members, meta)
    return meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--first", type=int, help="keep only the first N members")
    a = p.parse_args()
    if len(a.inputs) < 2 and a.first is None:
        sys.exit("error: give at least two ensemble files, or one with --first N")
    try:
        meta = merge(a.inputs, a.out, a.first)
    except MismatchError as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {a.out}: {len(meta.member_seeds)} members (seeds {meta.member_seeds}), "
          f"test error rate {100 * meta.metrics['test_error_rate']:.2f}%")


if __name__ == "__main__":
    main()
