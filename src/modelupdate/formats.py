"""The file formats, read without torch: the format names, a safetensors header (read and checked byte by
byte: a huge or sparse file costs no memory), a checkpoint's metadata (``ModelMeta``) and what kind of file a
path holds (``file_kind``). ``checkpoint.py`` saves and loads the weights (torch); ``predictions.py`` reads
and writes prediction files. docs/ci-gate.md describes each format for users.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CheckpointError, ConfigError
from .input_files import check_regular_file, class_names_problem, non_regular_kind

PREDICTIONS_FORMAT = "modelupdate-predictions/1"
REFERENCE_CACHE_FORMAT = "modelupdate-reference-cache/1"
MODEL_FORMAT = "modelupdate-model/1"
ENSEMBLE_FORMAT = "modelupdate-ensemble/1"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}
REQUIRED_KEYS = (
    "format", "arch", "arch_args", "num_classes", "classes", "input_shape", "normalization",
    "dataset", "dataset_fingerprint", "config", "metrics", "modelupdate_version", "torch_version",
)
JSON_KEYS = {"arch_args", "num_classes", "classes", "input_shape", "normalization", "config", "metrics",
             "member_count", "member_seeds", "member_metrics", "update", "eval_transform"}


@dataclass
class ModelMeta:
    """Everything needed to rebuild and trust a model, beside its weights."""

    arch: str
    arch_args: dict[str, Any]
    classes: list[str]
    input_shape: tuple[int, int, int]
    normalization: dict[str, list[float]]
    dataset: str
    dataset_fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # for an updated model: method, parameters, parent_sha256, reference_sha256
    update: dict[str, Any] = field(default_factory=dict)
    format: str = MODEL_FORMAT
    member_seeds: list[int] = field(default_factory=list)
    member_metrics: list[dict[str, Any]] = field(default_factory=list)
    # how the model sees an image beyond input_shape and normalization (data/transforms.py):
    # crop_pct, resize (shorter side) and interpolation; empty: the whole image resized (older files)
    eval_transform: dict[str, Any] = field(default_factory=dict)
    modelupdate_version: str = __version__
    torch_version: str = field(default_factory=lambda: _torch_version())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_ensemble(self) -> bool:
        return self.format == ENSEMBLE_FORMAT

    def to_header(self) -> dict[str, str]:
        header = {
            "format": self.format,
            "arch": self.arch,
            "arch_args": json.dumps(self.arch_args, sort_keys=True),
            "num_classes": json.dumps(self.num_classes),
            "classes": json.dumps(self.classes),
            "input_shape": json.dumps(list(self.input_shape)),
            "normalization": json.dumps(self.normalization),
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "config": json.dumps(self.config, sort_keys=True),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "modelupdate_version": self.modelupdate_version,
            "torch_version": self.torch_version,
        }
        if self.eval_transform:
            header["eval_transform"] = json.dumps(self.eval_transform, sort_keys=True)
        if self.update:
            header["update"] = json.dumps(self.update, sort_keys=True)
            for key in ("parent_sha256", "reference_sha256"):
                if self.update.get(key):
                    header[key] = self.update[key]
        if self.is_ensemble:
            header["member_count"] = json.dumps(len(self.member_seeds))
            header["member_seeds"] = json.dumps(self.member_seeds)
            header["member_metrics"] = json.dumps(self.member_metrics, sort_keys=True)
        return header

    @classmethod
    def from_header(cls, header: dict[str, str], path: Path) -> ModelMeta:
        missing = [k for k in REQUIRED_KEYS if k not in header]
        if missing:
            hint = "; a plain state dict? wrap it with `modelupdate import`" if "format" in missing else ""
            raise CheckpointError(f"{path}: not a modelupdate checkpoint (metadata lacks {', '.join(missing)}){hint}")
        if header["format"] not in (MODEL_FORMAT, ENSEMBLE_FORMAT):
            raise CheckpointError(
                f"{path}: metadata field 'format' is {header['format']!r}; "
                f"expected {MODEL_FORMAT} or {ENSEMBLE_FORMAT}")
        values: dict[str, Any] = {}
        for key, raw in header.items():
            if key in JSON_KEYS:
                try:
                    values[key] = json.loads(raw)
                except (ValueError, RecursionError):  # also nested too deep, or an integer of 5,000 digits
                    raise CheckpointError(f"{path}: metadata field {key!r} is not valid JSON") from None
            else:
                values[key] = raw
        _expect(path, "arch_args", values["arch_args"], dict)
        _expect(path, "classes", values["classes"], list)
        if not values["classes"] or not all(isinstance(c, str) for c in values["classes"]):
            raise CheckpointError(f"{path}: metadata field 'classes' must be a non-empty list of strings")
        problem = class_names_problem(values["classes"])
        if problem:
            raise CheckpointError(f"{path}: metadata field 'classes': {problem}")
        if values["num_classes"] != len(values["classes"]):
            raise CheckpointError(f"{path}: metadata 'num_classes' = {values['num_classes']} but 'classes' lists "
                                  f"{len(values['classes'])}")
        shape = values["input_shape"]
        if not (isinstance(shape, list) and len(shape) == 3
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise CheckpointError(f"{path}: metadata field 'input_shape' must be [C, H, W] positive integers, "
                                  f"got {shape}")
        norm = values["normalization"]
        if not _valid_normalization(norm, shape[0]):
            raise CheckpointError(f"{path}: metadata field 'normalization' must hold 'mean' and 'std' with one value "
                                  f"per channel ({shape[0]}): finite numbers, std > 0")
        _expect(path, "config", values["config"], dict)
        _expect(path, "metrics", values["metrics"], dict)
        _check_eval_transform(path, values.get("eval_transform") or {})
        _expect(path, "update", values.get("update") or {}, dict)
        for key in ("parent_sha256", "reference_sha256"):  # shown and compared as text
            value = (values.get("update") or {}).get(key)
            if value is not None and not isinstance(value, str):
                raise CheckpointError(f"{path}: metadata field 'update': {key!r} is {value!r}; expected a sha256 "
                                      f"as a hex string")
        meta = cls(
            arch=values["arch"], arch_args=values["arch_args"], classes=values["classes"],
            input_shape=tuple(shape), normalization=norm, dataset=values["dataset"],
            dataset_fingerprint=values["dataset_fingerprint"], config=values["config"],
            metrics=values["metrics"], update=values.get("update", {}) or {}, format=values["format"],
            modelupdate_version=values["modelupdate_version"], torch_version=values["torch_version"],
            eval_transform=values.get("eval_transform") or {},
        )
        if meta.is_ensemble:
            seeds = values.get("member_seeds")
            if not isinstance(seeds, list) or not seeds or values.get("member_count") != len(seeds):
                raise CheckpointError(f"{path}: ensemble metadata 'member_count' / 'member_seeds' "
                                      "missing or inconsistent")
            meta.member_seeds = seeds
            meta.member_metrics = values.get("member_metrics") or []
        return meta


def _check_eval_transform(path: Path, value: Any) -> None:
    from .validation import check_crop_pct, check_interpolation

    _expect(path, "eval_transform", value, dict)
    try:
        check_crop_pct("crop_pct", value.get("crop_pct", 1.0))
        check_interpolation("interpolation", value.get("interpolation", "bilinear"))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: metadata field 'eval_transform': {exc}") from None


def _valid_normalization(norm: Any, channels: int) -> bool:
    def numbers(xs: Any) -> bool:
        return isinstance(xs, list) and len(xs) == channels and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs)

    return isinstance(norm, dict) and numbers(norm.get("mean")) and numbers(norm.get("std")) \
        and all(x > 0 for x in norm["std"])


def _expect(path: Path, key: str, value: Any, typ: type) -> None:
    if not isinstance(value, typ):
        raise CheckpointError(f"{path}: metadata field {key!r} must be a JSON {typ.__name__}")


# --------------------------------------------------------------------------- files


def read_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the file's size, reading only the header's bytes
    (a huge or sparse file costs no memory); one-line errors for every way a file can be wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    check_regular_file(path, CheckpointError)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(16)
            looks_like_pickle = _looks_like_pickle(head)
            header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None
            valid_len = header_len is not None and header_len <= size - 8 and header_len <= 100_000_000
            raw = f.read(header_len - 8) if valid_len and header_len is not None and header_len > 8 else b""
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    if head[:4] == b"PK\x03\x04" and _is_npz(path):
        raise CheckpointError(f"{path}: is a numpy .npz archive (a prediction file?), not a safetensors "
                              f"checkpoint")
    if looks_like_pickle or (path.suffix.lower() in PICKLE_SUFFIXES and head[8:9] != b"{"):
        raise CheckpointError(
            f"{path}: looks like a PyTorch pickle; modelupdate never unpickles files. Convert it where you trust it "
            f"(safetensors.torch.save_file(model.state_dict(), 'model.safetensors')) and wrap it with `modelupdate "
            f"import`, or import it directly with `modelupdate import --unsafe-load-pickle`")
    if header_len is None:
        raise CheckpointError(f"{path}: truncated ({size} bytes); expected a safetensors file")
    if not valid_len:
        raise CheckpointError(f"{path}: truncated or not a safetensors file (header length {header_len}, "
                              f"file size {size})")
    try:
        header = json.loads((head[8:] + raw)[:header_len])
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: safetensors metadata must map strings to strings")
    problem = _tensor_layout_problem(header, size - 8 - header_len)
    if problem:
        raise CheckpointError(f"{path}: corrupted safetensors data ({problem})")
    return header, size


DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def _tensor_layout_problem(header: dict[str, Any], data_bytes: int) -> str | None:
    """What is wrong with the header's tensor entries (dtype, shape, byte range), or None: every tensor's
    bytes must lie inside the file and the data must end where the last tensor does."""
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in DTYPE_BYTES:
            return f"tensor {name!r}: unknown dtype {entry.get('dtype') if isinstance(entry, dict) else entry!r}"
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            return f"tensor {name!r}: bad shape {shape!r}"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            return f"tensor {name!r}: bytes {offsets!r} outside the file's {data_bytes} data bytes"
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[entry["dtype"]]:
            return f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} of {entry['dtype']}"
        end = max(end, offsets[1])
    if end != data_bytes:
        return f"the tensors take {end} bytes, the file holds {data_bytes}"
    return None


def _is_npz(path: Path) -> bool:
    """A zip whose members are .npy arrays (numpy's .npz), told apart from torch's zip format by the
    member names alone (nothing is extracted)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def _looks_like_pickle(data: bytes) -> bool:
    # A safetensors header of 0x0280..0x0580 bytes also starts with 0x80 0x02..0x05; its JSON starts at byte 8.
    if data[8:9] == b"{":
        return False
    return data[:2] == b"\x80\x02" or data[:1] == b"\x80" and len(data) > 1 and data[1] in (2, 3, 4, 5) \
        or data[:4] == b"PK\x03\x04"


def read_meta(path: str | Path) -> ModelMeta:
    """A checkpoint's metadata, from its header alone (no tensor is read)."""
    header, _ = read_header(path)
    return ModelMeta.from_header(header.get("__metadata__") or {}, Path(path))


def _torch_version() -> str:
    import torch  # only where a model's metadata is made, which happens beside torch anyway

    return torch.__version__


def header_metadata(path: str | Path) -> dict[str, str] | None:
    """The string metadata of a ``.safetensors`` file's header (no tensor read); None for any other or
    unreadable file, for the prediction reader or the checkpoint loader to explain."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or non_regular_kind(path) is not None or not path.is_file():
        return None  # a FIFO would wait for a writer
    try:
        header, _ = read_header(path)
    except CheckpointError:
        return None
    return header.get("__metadata__") or {}


def file_kind(path: str | Path) -> str | None:
    """"model" or "ensemble" (a modelupdate checkpoint), "predictions" (``.npz``, ``.csv``, or a
    ``.safetensors`` whose metadata says so), or None for anything else (the loaders explain what)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".npz", ".csv"):
        return "predictions"
    fmt = (header_metadata(path) or {}).get("format")
    return {MODEL_FORMAT: "model", ENSEMBLE_FORMAT: "ensemble", PREDICTIONS_FORMAT: "predictions"}.get(fmt or "")
