"""`modelupdate ensemble-train`: M members with seeds seed+100..seed+100+M-1, written as one ensemble file.

Each member is trained with exactly the recipe of `train` and kept as its own
checkpoint in ``<out>.members/`` until the ensemble is assembled, so a killed
run rerun with ``--resume`` keeps the members already finished (and resumes the
one that was interrupted from its saved state). Under torchrun the members are
spread over the processes (member i on rank i mod world); rank 0 assembles.

With ``snapshots`` M, the members are instead M snapshots of one run whose cosine schedule restarts M
times (Huang et al., snapshot ensembles): the reference for the cost of one training. Snapshot k is
written to ``<out>.members/member{k}.safetensors`` at the end of its cycle; the last is the run's own
checkpoint, so a resumed run keeps the snapshots already taken.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..atomic import OutputFiles
from ..checkpoint import load_checkpoint, save_ensemble, save_model
from ..config import MEMBER_SEED_OFFSET, DataConfig, TrainConfig, with_update_dropout
from ..data import load_dataset
from ..engine import Schedule, accuracy_counts, predict_logits
from ..errors import ConfigError
from ..events import EventHandler
from ..formats import ModelMeta, read_meta
from ..recipe import check_same, recipe_of
from ..reference import EnsembleReference
from ..runtime import setup_runtime
from .common import (
    check_arch,
    check_output_path,
    holds_output_lock,
    local_runtime,
    model_meta,
    test_metrics,
    train_one,
)

# members of one ensemble: each is a model held in memory together with the others at assembly
MAX_MEMBERS = 1000


def member_seed(seed: int, index: int) -> int:
    return seed + MEMBER_SEED_OFFSET + index


@dataclass
class TrainedEnsemble:
    out: Path
    meta: ModelMeta
    member_metrics: list[dict[str, Any]]
    seconds: float


def _check_kept_member(path: Path, member_cfg: TrainConfig, data_cfg: DataConfig, fingerprint: str) -> None:
    """A member finished by an earlier run is kept only if it was trained with this command's recipe."""
    meta = read_meta(path)
    saved = recipe_of(meta.config.get("train", {}), meta.config.get("data", {}),
                      fingerprint=meta.dataset_fingerprint)
    check_same(saved, recipe_of(member_cfg.to_dict(), data_cfg.to_dict(), fingerprint=fingerprint),
               what=f"--resume: the finished member {path}",
               remedy=f"rerun with the same options, or delete {path.parent} to start over")


def _train_snapshots(data, data_cfg: DataConfig, cfg: TrainConfig, runtime, member_dir: Path, members: int,
                     resume: bool, on_event: EventHandler | None) -> float:
    """Train the one run of a snapshot ensemble: snapshot k of ``members`` into member{k}.safetensors."""
    last = member_dir / f"member{members - 1}.safetensors"
    for k in range(members):
        path = member_dir / f"member{k}.safetensors"
        if path.exists():
            _check_kept_member(path, cfg, data_cfg, data.info.fingerprint)
    if last.exists():
        if on_event:
            on_event({"type": "message", "text": f"snapshots: kept {members} in {member_dir}"})
        return 0.0

    def keep_snapshot(cycle: int, model) -> None:
        metrics = test_metrics(model, data, runtime, cfg) | {"snapshot": cycle + 1}
        save_model(member_dir / f"member{cycle}.safetensors", model, model_meta(data.info, data_cfg, cfg, metrics))

    trained = train_one(data, data_cfg, cfg, runtime, last, resume=resume, on_event=on_event,
                        label=f"{members} snapshots", on_cycle_end=keep_snapshot)
    return trained.seconds


@holds_output_lock
def ensemble_train(data_cfg: DataConfig, cfg: TrainConfig, out: Path, members: int, *, resume: bool = False,
                   on_event: EventHandler | None = None, snapshots: bool = False) -> TrainedEnsemble:
    """``snapshots``: the ``members`` are snapshots of one run with that many learning-rate cycles."""
    out = Path(out)
    option = "--snapshots" if snapshots else "--members"
    if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= MAX_MEMBERS:
        raise ConfigError(f"{option}: expected an integer in [1, {MAX_MEMBERS}], got {members!r}")
    cfg = with_update_dropout(cfg)
    if member_seed(cfg.seed, members - 1) >= 2**63:  # what torch's generators accept; said before any work
        raise ConfigError(f"--seed: member {members} would train with seed {member_seed(cfg.seed, members - 1)}; "
                          f"expected --seed below {2**63 - MEMBER_SEED_OFFSET - members + 1}")
    if snapshots:
        cfg = replace(cfg, lr_cycles=members)
    check_output_path(out, resume=resume)
    member_dir = OutputFiles(out).members
    left_over = member_dir.exists()  # every rank looks before any rank creates it (barrier below)
    runtime = setup_runtime(cfg)
    if runtime.distributed:
        dist.barrier()
    if left_over and not resume:
        raise ConfigError(f"--out {out}: an interrupted run left {member_dir}; pass --resume to keep its "
                          f"finished members, or delete it to start over")
    data = load_dataset(data_cfg)
    check_arch(cfg, data.info)
    Schedule.of(len(data.train), cfg, local_runtime(runtime))  # more --snapshots than steps: before any folder
    member_dir.mkdir(exist_ok=True)

    # Each rank trains its share of the members, alone (no gradient sync between members).
    alone = local_runtime(runtime)
    seconds = 0.0
    if snapshots and runtime.is_main:  # one run, on rank 0
        seconds += _train_snapshots(data, data_cfg, replace(cfg, seed=member_seed(cfg.seed, 0)), alone, member_dir,
                                    members, resume, on_event)
    for index in range(runtime.rank, 0 if snapshots else members, runtime.world):
        path = member_dir / f"member{index}.safetensors"
        if path.exists():
            _check_kept_member(path, replace(cfg, seed=member_seed(cfg.seed, index)), data_cfg, data.info.fingerprint)
            if on_event and runtime.is_main:
                on_event({"type": "message", "text": f"member {index + 1}/{members}: kept {path}"})
            continue
        member_cfg = replace(cfg, seed=member_seed(cfg.seed, index))
        label = f"member {index + 1}/{members}"
        trained = train_one(data, data_cfg, member_cfg, alone, path, resume=resume,
                            on_event=on_event if runtime.is_main else None, label=label)
        seconds += trained.seconds
    if runtime.distributed:
        dist.barrier()

    # Assemble (rank 0): the members' own metrics and the ensemble's.
    loaded = [load_checkpoint(member_dir / f"member{i}.safetensors", trusted_arch=cfg.arch) for i in range(members)]
    ensemble = EnsembleReference([m.model for m in loaded]).to(runtime.device)
    logits, targets, _ = predict_logits(ensemble, data.test, data.info, runtime, batch_size=cfg.eval_batch_size)
    test = accuracy_counts(logits, targets, runtime)
    seeds = [member_seed(cfg.seed, 0)] * members if snapshots else [member_seed(cfg.seed, i) for i in range(members)]
    member_metrics = [m.meta.metrics | {"seed": seeds[i]} for i, m in enumerate(loaded)]
    member_ers = [m["test_error_rate"] for m in member_metrics]
    metrics = {
        "test_error_rate": test["error_rate"], "test_n": test["n"], "test_correct": test["correct"],
        # None without a test split (an image folder of train/ and val/ only)
        "member_test_error_rate_mean": None if None in member_ers else sum(member_ers) / len(member_ers),
        "train_seconds": sum(m.get("train_seconds", 0.0) for m in member_metrics),
    }
    meta = model_meta(data.info, data_cfg, cfg, metrics)
    meta.member_seeds = seeds
    meta.member_metrics = member_metrics
    if runtime.is_main:
        save_ensemble(out, [m.model for m in loaded], meta)
        shutil.rmtree(member_dir, ignore_errors=True)
    if runtime.distributed:
        dist.barrier()
    torch.set_grad_enabled(True)
    return TrainedEnsemble(out=out, meta=meta, member_metrics=member_metrics, seconds=seconds)
