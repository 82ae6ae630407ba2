"""`modelupdate train`: train one model (the old model, or a plain baseline) and save it."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import save_model
from ..config import DataConfig, TrainConfig
from ..data import load_dataset
from ..engine import EventHandler, fit, setup_runtime
from ..models import build_model
from .common import JsonlLog, TrainedModel, check_output_path, log_path_for, model_meta, seeded_model, \
    state_path_for, test_metrics


def train(data_cfg: DataConfig, cfg: TrainConfig, out: Path, *, resume: bool = False,
          on_event: EventHandler | None = None) -> TrainedModel:
    out = Path(out)
    check_output_path(out, resume=resume)
    runtime = setup_runtime(cfg)
    data = load_dataset(data_cfg)
    info = data.info
    model = seeded_model(lambda: build_model(cfg.arch, info.num_classes, info.input_shape, cfg.arch_args), cfg.seed)
    log = JsonlLog(log_path_for(out) if runtime.is_main else None, on_event if runtime.is_main else None)

    result = fit(model, data, cfg, runtime, on_event=log, state_path=state_path_for(out), resume=resume)

    metrics = test_metrics(model, data, runtime, cfg) | {
        "val_error_rate": result.history[-1].get("val_error_rate") if result.history else None,
        "train_seconds": result.seconds, "images_per_second": result.images_per_second,
    }
    meta = model_meta(info, data_cfg, cfg, metrics)
    if runtime.is_main:
        save_model(out, model, meta)
        log({"type": "done", "out": str(out)} | metrics)
        state_path_for(out).unlink(missing_ok=True)
    return TrainedModel(out=out, meta=meta, history=result.history, seconds=result.seconds,
                        images_per_second=result.images_per_second)
