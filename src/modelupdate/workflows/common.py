"""Building blocks shared by the training workflows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import ModelMeta
from ..config import DataConfig, TrainConfig
from ..data import Dataset, DatasetInfo
from ..engine import EventHandler, Runtime, accuracy_counts, predict_logits
from ..errors import ConfigError, OutputError


def check_output_path(out: Path, *, resume: bool = False) -> None:
    """Fail before training, not after, when ``out`` cannot be written."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"--out {out}: folder {parent} is not writable")
    if out.exists() and out.is_dir():
        raise OutputError(f"--out {out}: is a folder; expected a .safetensors file path")
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {out}: expected a path ending in .safetensors")
    state = state_path_for(out)
    if state.exists() and not resume:
        raise ConfigError(f"--out {out}: an interrupted run left {state}; pass --resume to continue it "
                          f"or delete that file to start over")


def state_path_for(out: Path) -> Path:
    """Where a run writing ``out`` keeps its resumable state."""
    return out.with_name(out.name.removesuffix(".safetensors") + ".state.safetensors")


def log_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".safetensors") + ".log.jsonl")


class JsonlLog:
    """Per-epoch JSON lines beside the checkpoint (rank 0 only); forwards every event."""

    def __init__(self, path: Path | None, forward: EventHandler | None, extra: dict[str, Any] | None = None):
        self.path, self.forward, self.extra = path, forward, extra or {}

    def __call__(self, event: dict[str, Any]) -> None:
        if self.path is not None and event.get("type") in ("epoch", "resume", "done"):
            with open(self.path, "a") as f:
                f.write(json.dumps(self.extra | event, sort_keys=True) + "\n")
        if self.forward is not None:
            self.forward(self.extra | event)


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
        arch=cfg.arch, arch_args=cfg.arch_args, classes=list(info.classes), input_shape=info.input_shape,
        normalization=info.normalization, dataset=info.name, dataset_fingerprint=info.fingerprint,
        config={"data": data_cfg.to_dict(), "train": cfg.to_dict()}, metrics=metrics, update=update or {},
    )


@dataclass
class TrainedModel:
    out: Path
    meta: ModelMeta
    history: list[dict[str, Any]]
    seconds: float
    images_per_second: float
