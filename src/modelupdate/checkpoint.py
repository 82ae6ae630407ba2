"""Safetensors checkpoints: weights plus string metadata that rebuilds and vouches for a model.

Formats (docs/architecture.md):
- model:    format = "modelupdate-model/1", tensors = the state dict.
- ensemble: format = "modelupdate-ensemble/1", tensors "member{i}.<name>",
            plus member_count, member_seeds, member_metrics.
Every structured value in the header is a JSON string. Nothing is ever unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save
from torch import nn

from .atomic import atomic_write_bytes, sha256_file  # noqa: F401  (re-exported)
from .errors import CheckpointError, MismatchError
from .formats import ENSEMBLE_FORMAT, ModelMeta, read_header
from .input_files import first_difference
from .models import build_model, check_arch_allowed, check_first_logits, check_state, expected_state, without_init_args
from .runtime import unwrap


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors (memory-mapped while read) and string metadata, with one-line errors."""
    path = Path(path)
    header, _ = read_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{path}: corrupted safetensors data ({str(exc).splitlines()[0]})") from None
    return tensors, header.get("__metadata__") or {}


def save_model(path: str | Path, model: nn.Module, meta: ModelMeta) -> None:
    """Write one model checkpoint atomically, once its metadata is known to rebuild this model."""
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    check_rebuilds(meta, state)
    atomic_write_bytes(path, st_save(state, metadata=meta.to_header()))


def check_rebuilds(meta: ModelMeta, state: dict[str, torch.Tensor]) -> None:
    """The architecture and arguments the file will name build a model with exactly these tensor names and
    shapes: a checkpoint that could not be loaded again is never written."""
    rebuilt = expected_state(meta.arch, meta.num_classes, meta.input_shape, without_init_args(meta.arch_args))
    if {k: v[0] for k, v in rebuilt.items()} != {k: tuple(v.shape) for k, v in state.items()}:
        differ = sorted(k for k in set(rebuilt) | set(state)
                        if k not in rebuilt or k not in state or rebuilt[k][0] != tuple(state[k].shape))
        raise CheckpointError(f"{meta.arch} with arch_args {meta.arch_args} would not rebuild this model "
                              f"({', '.join(differ[:3])} differ); nothing was written")


def save_ensemble(path: str | Path, members: list[nn.Module], meta: ModelMeta) -> None:
    """Write every member (tensors prefixed ``member{i}.``) into one file atomically."""
    if len(members) != len(meta.member_seeds):
        raise ValueError("save_ensemble: one seed per member expected")
    meta.format = ENSEMBLE_FORMAT
    tensors: dict[str, torch.Tensor] = {}
    for i, member in enumerate(members):
        state = {k: v.detach().cpu().contiguous() for k, v in unwrap(member).state_dict().items()}
        if i == 0:
            check_rebuilds(meta, state)
        tensors.update({f"member{i}.{k}": v for k, v in state.items()})
    atomic_write_bytes(path, st_save(tensors, metadata=meta.to_header()))


@dataclass
class LoadedModel:
    """A checkpoint rebuilt: ``model`` maps normalised images to logits (an ensemble: mean logits)."""

    path: Path
    meta: ModelMeta
    model: nn.Module
    members: list[nn.Module]
    sha256: str


def load_checkpoint(path: str | Path, *, trusted_arch: str | None = None) -> LoadedModel:
    """Read, validate and rebuild a model or ensemble checkpoint (eval mode, CPU).

    The file's ``arch`` must be registered or inside a module the user allowed (``trusted_arch``: the
    one the user's own command named, e.g. for an ensemble's members it wrote itself).
    """
    path = Path(path)
    tensors, header = read_safetensors(path)
    meta = ModelMeta.from_header(header, path)
    if meta.arch != trusted_arch:
        check_arch_allowed(meta.arch, f"checkpoint {path}")
    if meta.is_ensemble:
        members = []
        for i in range(len(meta.member_seeds)):
            prefix = f"member{i}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointError(f"{path}: ensemble lists {len(meta.member_seeds)} members but has no tensors "
                                      f"for member {i}")
            members.append(_rebuild(path, meta, state))
        from .reference import EnsembleReference

        model: nn.Module = EnsembleReference(members)
    else:
        model = _rebuild(path, meta, tensors)
        members = [model]
    model.eval()
    check_first_logits(model, str(path))
    return LoadedModel(path=path, meta=meta, model=model, members=members, sha256=sha256_file(path))


def _rebuild(path: Path, meta: ModelMeta, state: dict[str, torch.Tensor]) -> nn.Module:
    """The model ``meta`` describes holding ``state``, once its names, shapes, dtypes and values are known to
    fit: a model is built for real only then, so metadata that asks for billions of parameters next to a
    few kilobytes of weights costs nothing."""
    check_state(str(path), meta.arch, meta.num_classes, meta.input_shape, without_init_args(meta.arch_args), state)
    try:
        model = build_model(meta.arch, meta.num_classes, meta.input_shape, without_init_args(meta.arch_args))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot rebuild architecture {meta.arch!r} ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture {meta.arch!r} with {meta.num_classes} "
                              f"classes: {state_dict_error(exc)}") from None
    return model.eval()


def state_dict_error(exc: RuntimeError) -> str:
    """torch's multi-line load_state_dict error as one line: its first problem (and how many more)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    problems = lines[1:] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (problems[0].rstrip(".") + more) if problems else "state dict mismatch"


def check_compatible(a: ModelMeta, a_name: str, b: ModelMeta | Any, b_name: str) -> None:
    """Raise MismatchError when two models (or a model and data: ``b`` a data.DatasetInfo) disagree on what
    they classify: the class names, in order, and the number of channels. Sizes and normalisation may
    differ: each model is fed through its own transform (data/transforms.py)."""
    b_classes = list(b.classes)
    if list(a.classes) != b_classes:
        if len(a.classes) != len(b_classes):
            raise MismatchError(f"{a_name} has {len(a.classes)} classes but {b_name} has {len(b_classes)}")
        diff = first_difference(a.classes, b_classes)
        raise MismatchError(f"class names differ between {a_name} and {b_name}: class {diff} is "
                            f"{a.classes[diff]!r} vs {b_classes[diff]!r}")
    if a.input_shape[0] != b.input_shape[0]:
        raise MismatchError(f"{a_name} expects images of {a.input_shape[0]} channel(s), {b_name} has "
                            f"{b.input_shape[0]}")
