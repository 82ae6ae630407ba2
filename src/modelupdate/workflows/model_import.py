"""`modelupdate import`: wrap a model trained elsewhere into a modelupdate checkpoint.

Reads top to bottom: settle what the checkpoint must say (classes, input shape, normalisation: from the
options, else from ``--like``), read the weights (safetensors; a pickle only when the user asks, through
``torch.load(weights_only=True)``), build the architecture, load the weights strictly, check that a
forward pass gives one logit per class, and write the checkpoint atomically. The result serves wherever a
trained checkpoint does (``--old``, ``predict``, ``flip-report``, ...).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import read_safetensors, save_model, sha256_file, state_dict_error
from ..data.transforms import EvalTransform, default_crop_pct, resolve_crop_pct
from ..errors import CheckpointError, ConfigError
from ..formats import PICKLE_SUFFIXES, ModelMeta, read_meta
from ..input_files import check_regular_file, class_names_problem
from ..models import ARCHS, build_model, check_forward, count_parameters, stored_arch_args, weights_problem
from ..validation import as_list, check_crop_pct, check_field_types, check_interpolation, guard_init, parse_arch_args
from .common import check_output_path, holds_output_lock

# Wrappers a training script leaves around a state dict: DDP's and torch.compile's key prefixes, and the
# usual top-level keys of a saved training checkpoint.
KEY_PREFIXES = ("module.", "_orig_mod.")
STATE_KEYS = ("state_dict", "model_state_dict", "model")
IMPORTED_DATASET = "unknown (imported)"


@dataclass
class ImportSpec:
    """What `modelupdate import` is told; ``None`` fields come from ``like``."""

    arch: str
    weights: Path
    arch_args: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None
    input_shape: tuple[int, int, int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    like: Path | None = None
    dataset: str | None = None
    unsafe_load_pickle: bool = False
    # its evaluation transform (data/transforms.py): a centre crop of crop_pct after resizing the shorter side
    # (or to ``resize`` pixels); None: ``like``'s, else the default for the input size
    crop_pct: float | None = None
    resize: int | None = None
    interpolation: str | None = None

    def __post_init__(self) -> None:
        # every list field takes a list or the CLI's "a,b,c" (config.as_list: one rule for the whole API)
        self.classes = as_list("ImportSpec.classes", self.classes, str)
        shape = as_list("ImportSpec.input_shape", self.input_shape, int)
        self.input_shape = tuple(shape) if shape is not None else None
        self.mean, self.std = as_list("ImportSpec.mean", self.mean), as_list("ImportSpec.std", self.std)
        if isinstance(self.arch_args, str):
            self.arch_args = parse_arch_args(self.arch_args)
        for name in ("weights", "like"):
            value = getattr(self, name)
            if value is not None or name == "weights":
                if not isinstance(value, (str, os.PathLike)) or not str(value):
                    raise ConfigError(f"ImportSpec.{name}: expected a file path, got {value!r}")
                setattr(self, name, Path(value))
        check_field_types(self)


guard_init(ImportSpec)

@dataclass
class ImportResult:
    out: Path
    meta: ModelMeta
    params: int
    weights_sha256: str
    loaded_with_pickle: bool


@holds_output_lock
def import_model(spec: ImportSpec, out: Path) -> ImportResult:
    out = Path(out)  # paths may come as strings from Python
    spec = dataclasses.replace(spec, weights=Path(spec.weights), like=Path(spec.like) if spec.like else None)
    check_output_path(out, inputs={"--weights": spec.weights, "--like": spec.like})
    classes, input_shape, normalization, dataset = settle_meta_fields(spec)
    transform = settle_transform(spec, input_shape, normalization)
    state, with_pickle = read_state_dict(spec.weights, unsafe_load_pickle=spec.unsafe_load_pickle)
    with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
        torch.manual_seed(0)
        model = build_model(spec.arch, len(classes), input_shape, spec.arch_args)
        check_forward(model, input_shape, len(classes), spec.arch)  # both modes, before the weights are in
    load_strict(model, state, f"--weights {spec.weights}", spec.arch, len(classes))
    check_forward(model, input_shape, len(classes), spec.arch, modes=("eval",))
    weights_sha256 = sha256_file(spec.weights)
    meta = ModelMeta(
        arch=spec.arch, arch_args=stored_arch_args(spec.arch, spec.arch_args), classes=classes, input_shape=input_shape,
        normalization=normalization, dataset=dataset, dataset_fingerprint="",
        config={"import": {"weights": str(spec.weights), "weights_sha256": weights_sha256,
                           "arch_args": spec.arch_args, "like": str(spec.like) if spec.like else None,
                           "pickle": with_pickle}},
        eval_transform=transform.to_meta(),
    )
    save_model(out, model, meta)
    return ImportResult(out=out, meta=meta, params=count_parameters(model), weights_sha256=weights_sha256,
                        loaded_with_pickle=with_pickle)


def settle_transform(spec: ImportSpec, input_shape: tuple[int, int, int],
                     normalization: dict[str, list[float]]) -> EvalTransform:
    """The imported model's evaluation transform: as given, else ``like``'s, else the input size's default."""
    recorded = read_meta(spec.like).eval_transform if spec.like else {}
    crop_pct = resolve_crop_pct(spec.crop_pct, spec.resize, input_shape,
                                recorded.get("crop_pct", default_crop_pct(input_shape)))
    interpolation = spec.interpolation or recorded.get("interpolation", "bilinear")
    check_crop_pct("--crop-pct", crop_pct)
    check_interpolation("--interpolation", interpolation)
    return EvalTransform(input_shape, tuple(normalization["mean"]), tuple(normalization["std"]), crop_pct,
                         interpolation)


def settle_meta_fields(spec: ImportSpec) -> tuple[list[str], tuple[int, int, int], dict[str, list[float]], str]:
    """Classes, input shape, normalisation and dataset name: each option, else ``--like``'s value."""
    like = read_meta(spec.like) if spec.like is not None else None
    classes = spec.classes if spec.classes is not None else (list(like.classes) if like else None)
    shape = spec.input_shape if spec.input_shape is not None else (tuple(like.input_shape) if like else None)
    mean = spec.mean if spec.mean is not None else (like.normalization["mean"] if like else None)
    std = spec.std if spec.std is not None else (like.normalization["std"] if like else None)
    for option, value in (("--classes", classes), ("--input-shape", shape), ("--mean", mean), ("--std", std)):
        if value is None:
            raise ConfigError(f"{option}: needed (or --like CHECKPOINT to take it from another model)")
    assert classes is not None and shape is not None and mean is not None and std is not None
    check_classes(classes)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ConfigError(f"--input-shape: expected C,H,W positive integers, got {list(shape)}")
    for option, values in (("--mean", mean), ("--std", std)):
        if len(values) != shape[0]:
            raise ConfigError(f"{option}: expected {shape[0]} values (one per channel of --input-shape), "
                              f"got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{option}: expected finite numbers, got {values}")
    if any(v <= 0 for v in std):
        raise ConfigError(f"--std: expected values > 0, got {std}")
    dataset = spec.dataset or (like.dataset if like else IMPORTED_DATASET)
    return list(classes), (int(shape[0]), int(shape[1]), int(shape[2])), \
        {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}, dataset


def check_classes(classes: list[str]) -> None:
    if len(classes) < 2:
        raise ConfigError(f"--classes: expected at least 2 class names, got {len(classes)}")
    if any(not c.strip() for c in classes):
        raise ConfigError("--classes: a class name is empty")
    seen: set[str] = set()
    for name in classes:
        if name in seen:
            raise ConfigError(f"--classes: {name!r} is listed twice")
        seen.add(name)
    problem = class_names_problem(classes)
    if problem:
        raise ConfigError(f"--classes: {problem}")


def read_state_dict(path: Path, *, unsafe_load_pickle: bool) -> tuple[dict[str, torch.Tensor], bool]:
    """The state dict in ``path`` (wrapper prefixes removed) and whether a pickle was read."""
    path = check_regular_file(path, CheckpointError, "--weights ")  # never waits on a FIFO
    pickle_like = path.suffix.lower() in PICKLE_SUFFIXES
    if pickle_like and unsafe_load_pickle:
        return strip_prefixes(_torch_load(path), path), True
    if unsafe_load_pickle:
        raise ConfigError(f"--unsafe-load-pickle: {path} is not a {'/'.join(sorted(PICKLE_SUFFIXES))} file; "
                          f"safetensors files need no such option")
    if not path.is_file():
        raise CheckpointError(f"--weights {path}: file not found")
    tensors, _ = read_safetensors(path)  # refuses a pickle with a one-line hint
    if not tensors:
        raise CheckpointError(f"--weights {path}: holds no tensors")
    return strip_prefixes(tensors, path), False


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"--weights {path}: file not found")
    try:  # weights_only: torch's restricted unpickler, tensors and plain containers only
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"--weights {path}: torch.load(weights_only=True) refused it "
                              f"({str(exc).splitlines()[0][:200]})") from None
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"--weights {path}: expected a state dict (names -> tensors), or a dict holding one "
                              f"under {', '.join(STATE_KEYS)}")
    return obj


def strip_prefixes(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Drop a DDP / torch.compile prefix that every key carries."""
    for prefix in KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str, num_classes: int) -> None:
    """Load every weight, or one line naming what is missing, unexpected or of another shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} (model {list(v.shape)})" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if names:
            shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        hint = ""
        stem = [k for k in shapes if k.split(" ")[0] in ("conv1.weight", "features.0.0.weight")]
        if stem and arch in ARCHS:  # a registered family adapts its stem to small inputs
            hint = (f"; trained with torchvision's own first layer? pass --arch-args '{{\"stem\": \"standard\"}}' "
                    f"or --arch torchvision.models:{arch}")
        raise CheckpointError(f"{source}: does not fit {arch} with {num_classes} classes; " + "; ".join(problems)
                              + hint)
    problem = weights_problem(state, {k: (tuple(v.shape), v.dtype) for k, v in expected.items()})
    if problem:  # bool or integer weights would be converted silently, NaN would pass
        raise CheckpointError(f"{source}: {problem}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype torch cannot copy
        raise CheckpointError(f"{source}: does not fit {arch}: {state_dict_error(exc)}") from None
