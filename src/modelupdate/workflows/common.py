"""Building blocks shared by the training workflows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import recipe
from ..atomic import (  # noqa: F401  (output_lock, holds_output_lock: re-exported for the workflows)
    OutputFiles,
    check_output,
    check_target,
    holds_output_lock,
    open_for_append,
    output_lock,
    remove_stale_temps,
    resolved,
)
from ..config import DataConfig, TrainConfig
from ..data import Dataset, DatasetInfo
from ..engine import accuracy_counts, predict_logits
from ..errors import ConfigError, OutputComplete, OutputError
from ..events import EventHandler
from ..events.jsonl import JsonlLog
from ..formats import ModelMeta
from ..models import stored_arch_args
from ..runtime import Runtime


def check_output_path(out: Path, *, resume: bool = False, inputs: dict[str, Path | None] | None = None,
                      outputs: dict[str, Path | None] | None = None) -> None:
    """Fail before training, not after, when ``out`` or a file written beside it cannot be written.

    ``inputs``: option -> path of what the command reads (--old, --reference): ``out`` may be none of them.
    ``outputs``: option -> another file the command writes (--reference-cache): it may be none of the paths
    written for ``out`` (``paths_written_for``) and must be a regular file path too.
    Temp files that a killed write of ``out``, of its resumable state or of ``outputs`` left behind are
    removed (the workflow holds ``out``'s lock, so no other writer is using them).
    """
    check_out_name(out)
    check_output(out, "--out", suffixes=(".safetensors",), inputs=inputs, probe=True)
    check_apart_from_out(out, outputs or {})
    check_written_beside(out)
    extra = [Path(path) for path in (outputs or {}).values() if path is not None]
    for option, path in (outputs or {}).items():
        if path is not None:
            check_target(path, option)
    state = OutputFiles(out).state
    for path in (out, state, *extra):
        remove_stale_temps(path)
    if state.exists() and not resume:
        raise ConfigError(f"--out {out}: an interrupted run left {state}; pass --resume to continue it "
                          f"or delete that file to start over")
    if resume and out.exists() and not state.exists() and not _has_members_in_progress(out):
        raise OutputComplete(f"{out}: already complete (no interrupted run to resume); nothing was changed")


def check_out_name(out: Path) -> None:
    """``--out`` names a file: '' and '.' (Path('') is '.') or '..' name a folder, and every path written
    beside it is derived from its file name."""
    if not Path(out).name or Path(out).name == "..":
        raise ConfigError(f"--out {out}: names a folder, not a file; expected a path ending in .safetensors")


def _has_members_in_progress(out: Path) -> bool:
    return OutputFiles(out).members.exists()


def paths_written_for(out: Path) -> dict[str, Path]:
    """Every path a training command writes for ``out``, by how messages name it."""
    out = Path(out)
    return OutputFiles(out).by_name()


def check_apart_from_out(out: Path, others: dict[str, Path | None]) -> None:
    """Refuse another output option (--reference-cache, --tensorboard) that names a path written for ``out``."""
    check_out_name(out)
    written = {resolved(path): what for what, path in paths_written_for(out).items()}
    for option, path in others.items():
        if path is None:
            continue
        what = written.get(resolved(path))
        if what is not None:
            name = "--out itself" if what == "--out" else f"the {what} of --out {out}"
            raise ConfigError(f"{option} {path}: is {name}; expected a separate path")


def check_written_beside(out: Path) -> None:
    """The files written beside ``out`` (state, log; the members folder) may be missing or real files (a
    real folder), never a symbolic link, a FIFO or a device: the log is appended to, so a link would
    have it written into another file."""
    for what in ("training state", "training log"):
        check_target(paths_written_for(out)[what], f"--out {out}: its {what}")
    members = OutputFiles(out).members
    if members.is_symlink() or (members.exists() and not members.is_dir()):
        kind = "a symbolic link" if members.is_symlink() else "not a folder"
        raise OutputError(f"--out {out}: its members folder {members} is {kind}; expected a folder or nothing")


def check_arch(cfg: TrainConfig, info: DatasetInfo) -> None:
    """Build ``cfg.arch`` once and run it on two inputs of the data's shape, so that an unknown
    architecture, bad --arch-args or a model that cannot take this data fails before a command writes
    anything (a members folder, a reference cache). The global RNG is left as it was."""
    from ..models import build_model, check_forward

    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.arch, info.num_classes, info.input_shape, cfg.arch_args)
        check_forward(model, info.input_shape, info.num_classes, cfg.arch)


def seeded_model(build, seed: int) -> nn.Module:
    """Build a model with weights drawn from ``seed`` alone."""
    torch.manual_seed(seed)
    return build()


def test_metrics(model: nn.Module, data: Dataset, runtime: Runtime, cfg: TrainConfig) -> dict[str, Any]:
    logits, targets, _ = predict_logits(model, data.test, data.info, runtime, batch_size=cfg.eval_batch_size,
                                        channels_last=cfg.channels_last)
    counts = accuracy_counts(logits, targets, runtime)
    return {"test_error_rate": counts["error_rate"], "test_n": counts["n"], "test_correct": counts["correct"]}


def model_meta(info: DatasetInfo, data_cfg: DataConfig, cfg: TrainConfig, metrics: dict[str, Any],
               update: dict[str, Any] | None = None) -> ModelMeta:
    return ModelMeta(
        arch=cfg.arch, arch_args=stored_arch_args(cfg.arch, cfg.arch_args), classes=list(info.classes),
        input_shape=info.input_shape,
        normalization=info.normalization, dataset=info.name, dataset_fingerprint=info.fingerprint,
        config={"data": data_cfg.to_dict(), "train": cfg.to_dict()}, metrics=metrics, update=update or {},
        eval_transform=info.eval_transform.to_meta() if info.eval_transform is not None else {},
    )


def data_recipe(data_cfg: DataConfig, info: DatasetInfo) -> dict[str, Any]:
    """The data section of a run's recipe (``recipe.py``): the data options and the data's fingerprint."""
    return recipe.data_recipe(data_cfg.to_dict(), info.fingerprint)


@dataclass
class TrainedModel:
    out: Path
    meta: ModelMeta
    history: list[dict[str, Any]]
    seconds: float
    images_per_second: float


def local_runtime(runtime: Runtime) -> Runtime:
    """The same device, seen as a single process (an ensemble member trained alone on one rank)."""
    return Runtime(device=runtime.device, rank=0, world=1, amp_dtype=runtime.amp_dtype)


def train_one(data: Dataset, data_cfg: DataConfig, cfg: TrainConfig, runtime: Runtime, out: Path, *,
              resume: bool, on_event: EventHandler | None, objective=None, epoch_metrics=None,
              final_metrics=None, update: dict[str, Any] | None = None, label: str | None = None,
              on_cycle_end=None) -> TrainedModel:
    """Build a seeded model, fit it, measure it on test, and write its checkpoint (rank 0).

    ``final_metrics(model) -> dict`` adds metrics (e.g. test NFR vs the old model) to the metadata.
    """
    from ..checkpoint import save_model
    from ..engine import fit
    from ..models import build_model, set_dropout

    info = data.info
    model = seeded_model(lambda: build_model(cfg.arch, info.num_classes, info.input_shape, cfg.arch_args), cfg.seed)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    extra = {"member_label": label} if label else {}
    log = JsonlLog(OutputFiles(out).log if runtime.is_main else None, on_event if runtime.is_main else None, extra)
    # the recipe really used (defaults resolved), for trackers' hyperparameters; not written to the JSONL log
    log({"type": "config", "config": {"data": data_cfg.to_dict(), "train": cfg.to_dict() | {"lr": cfg.resolved_lr()},
                                      "update": update or {}}})

    result = fit(model, data, cfg, runtime, objective=objective, epoch_metrics=epoch_metrics, on_event=log,
                 state_path=OutputFiles(out).state, resume=resume, on_cycle_end=on_cycle_end,
                 recipe={"data": data_recipe(data_cfg, info), "update": recipe.update_recipe(update)})

    shipped = result.averaged if result.averaged is not None else model  # with --ema-epochs: the average
    metrics = test_metrics(shipped, data, runtime, cfg) | {
        "val_error_rate": result.history[-1].get("val_error_rate") if result.history else None,
        "train_seconds": result.seconds, "images_per_second": result.images_per_second,
        "epochs_completed": len(result.history),
    }
    if result.averaged is not None:  # what the trained weights would have scored, and the average's decay
        raw = test_metrics(model, data, runtime, cfg)
        metrics |= {"weights": "ema", "ema_decay": result.ema_decay, "raw_test_error_rate": raw["test_error_rate"]}
    if final_metrics is not None:
        metrics |= final_metrics(shipped)
    meta = model_meta(info, data_cfg, cfg, metrics, update)
    if runtime.is_main:
        save_model(out, shipped, meta)
        log({"type": "done", "out": str(out)} | metrics)
        OutputFiles(out).state.unlink(missing_ok=True)
    return TrainedModel(out=out, meta=meta, history=result.history, seconds=result.seconds,
                        images_per_second=result.images_per_second)
