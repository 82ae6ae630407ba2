"""`modelupdate train`: train one model (the old model, or a plain baseline) and save it."""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig, TrainConfig
from ..data import load_dataset
from ..events import EventHandler
from ..runtime import setup_runtime
from .common import TrainedModel, check_arch, check_output_path, holds_output_lock, train_one


@holds_output_lock
def train(data_cfg: DataConfig, cfg: TrainConfig, out: Path, *, resume: bool = False,
          on_event: EventHandler | None = None) -> TrainedModel:
    out = Path(out)
    check_output_path(out, resume=resume)
    runtime = setup_runtime(cfg)
    data = load_dataset(data_cfg)
    check_arch(cfg, data.info)
    return train_one(data, data_cfg, cfg, runtime, out, resume=resume, on_event=on_event)
