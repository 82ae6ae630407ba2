"""The resumable state of a training run: model, optimizer (and weight average) tensors plus a JSON
progress record, in one safetensors file (nothing is ever unpickled), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save
from torch import nn

from .atomic import atomic_write_bytes
from .checkpoint import read_safetensors, state_dict_error
from .errors import CheckpointError
from .formats import read_header
from .runtime import unwrap

TRAIN_STATE_FORMAT = "modelupdate-train-state/1"


def save_train_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any],
                     extra: dict[str, nn.Module] | None = None) -> None:
    """Model + optimizer tensors + JSON progress, in one safetensors file (no pickle), atomically.
    ``extra``: other modules of the run (the weight average), saved under their names."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    for name, module in (extra or {}).items():
        tensors |= {f"{name}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    opt_state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, pstate in opt_state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    meta = {
        "format": TRAIN_STATE_FORMAT,
        "progress": json.dumps(progress, sort_keys=True),
        "optim_groups": json.dumps([{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                                    for g in opt_state["param_groups"]]),
        "optim_scalars": json.dumps(scalars),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def state_is_finite(model: nn.Module, optimizer: torch.optim.Optimizer, *others: nn.Module) -> bool:
    """No NaN / Inf in the model's (and ``others``') floating-point weights and buffers, nor in the
    optimizer's state."""
    tensors = [t for m in (model, *others) for t in unwrap(m).state_dict().values()]
    tensors += [v for pstate in optimizer.state.values() for v in pstate.values() if torch.is_tensor(v)]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def read_train_progress(path: Path) -> dict[str, Any]:
    """The JSON progress of a training state (its recipe included), read before any tensor is loaded."""
    header, _ = read_header(Path(path))
    meta = header.get("__metadata__") or {}
    if meta.get("format") != TRAIN_STATE_FORMAT:
        raise CheckpointError(f"{path}: not a modelupdate training state (format {meta.get('format')!r})")
    try:
        progress = json.loads(meta["progress"])
    except (KeyError, ValueError):
        progress = None
    if not isinstance(progress, dict):
        raise CheckpointError(f"{path}: damaged training state (its progress record is not a JSON object)")
    return progress


def load_train_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     extra: dict[str, nn.Module] | None = None) -> dict[str, Any]:
    """Load what ``save_train_state`` wrote into model, optimizer and the ``extra`` modules; the progress."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != TRAIN_STATE_FORMAT:
        raise CheckpointError(f"{path}: not a modelupdate training state (format {meta.get('format')!r})")
    for name, module in {"model": model, **(extra or {})}.items():
        prefix = f"{name}."
        module_state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            unwrap(module).load_state_dict(module_state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: saved state does not fit this model ({state_dict_error(exc)}); "
                                  f"was the command changed since the run started?") from None
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in json.loads(meta["optim_scalars"]).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
    return json.loads(meta["progress"])
