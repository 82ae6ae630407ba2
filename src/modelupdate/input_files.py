"""Checks the readers of model and prediction files make (no torch): that the path is a regular file,
before opening it; that the class names it holds are usable; for a prediction file, that the sizes and
dtypes its headers declare can be read, before anything is allocated, and that the costs it states are.

Opening a FIFO for reading waits for a writer, and a device such as ``/dev/zero`` never ends: a
reader accepts a regular file (a symbolic link to one included) and refuses anything else with
the same one line, ``<path>: not a regular file (a FIFO); expected a file``.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelUpdateError, PredictionFileError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def non_regular_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a FIFO", "a directory", ...); None for a
    regular file and for a path that does not exist (each reader words "not found" its own way)."""
    try:
        mode = os.stat(path).st_mode  # follows a symbolic link: what would be opened
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike, error: type[ModelUpdateError], prefix: str = "") -> Path:
    """Raise ``error`` naming ``path`` (after ``prefix``, e.g. "--weights ") when it exists but is not a
    regular file; returns the path."""
    kind = non_regular_kind(path)
    if kind is not None:
        raise error(f"{prefix}{path}: not a regular file ({kind}); expected a file")
    return Path(path)


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> int:
    """The first index at which two lists of class names differ (the shorter's length where one extends the
    other): what a message about two models' or files' classes points to."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def class_names_problem(names: list[str]) -> str | None:
    """What is wrong with class names read from a file or an option, or None: a NUL byte ends a name early
    wherever it is passed on as C text (a terminal, a CSV cell, an HTML page), so no name holds one."""
    for i, name in enumerate(names):
        if "\0" in name:
            return f"class {i} ({name!r}) holds a NUL byte; expected names without one"
    return None


def check_class_names(names: list[str], error: type[ModelUpdateError], where: str) -> None:
    """Raise ``error`` ("<where>: class 1 (...) holds a NUL byte; ...") for names ``class_names_problem`` refuses."""
    problem = class_names_problem(names)
    if problem:
        raise error(f"{where}: {problem}")


# --------------------------------------------------------------------------- prediction files

#: the arrays of an .npz may inflate to this many bytes whatever the archive's size ...
NPZ_INFLATE_FREE = 64 << 20
#: ... and beyond that to at most this multiple of it: real logits barely compress, a zip bomb's zeros
#: inflate about 1000 times
NPZ_MAX_INFLATION = 100
#: the arrays read from an .npz, in the order they are read
NPZ_FIELDS = ("ids", "targets", "logits", "preds", "num_classes", "classes", "meta")
#: safetensors dtypes a prediction file's field may have (numpy reads no bfloat16 nor float8)
_FLOATS = ("F16", "F32", "F64")
_INTEGERS = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")


def check_npz_sizes(path: Path, source: str) -> None:
    """Before any array of an .npz is inflated: each field's .npy header must declare exactly the bytes its
    archive member holds (numpy allocates what a header declares), and all of them together may inflate
    to no more than ``NPZ_INFLATE_FREE`` or ``NPZ_MAX_INFLATION`` times the archive's size (a zip bomb).
    Raises PredictionFileError naming ``source``; a damaged zip raises what zipfile raises."""
    fmt = np.lib.format
    total, size = 0, os.stat(path).st_size
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        for name in NPZ_FIELDS:
            info = members.get(f"{name}.npy")
            if info is None:
                continue
            with archive.open(info) as member:
                try:
                    version = fmt.read_magic(member)
                    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(member)
                except (ValueError, SyntaxError, TypeError, EOFError) as exc:
                    raise file_error(source, f"field '{name}' has no readable .npy header ({exc})") from None
                if dtype.hasobject:
                    raise file_error(source, f"field '{name}' holds pickled Python objects; modelupdate never "
                                             "unpickles")
                declared, held = math.prod(shape) * dtype.itemsize, info.file_size - member.tell()
            if declared != held:
                raise file_error(source, f"field '{name}' declares shape {tuple(shape)} of {dtype} ({declared:,} "
                                         f"bytes) but its archive member holds {held:,} bytes")
            total += info.file_size
    if total > max(NPZ_INFLATE_FREE, NPZ_MAX_INFLATION * size):
        raise file_error(source, f"its arrays inflate to {total:,} bytes from a {size:,}-byte archive (more than "
                         f"{NPZ_MAX_INFLATION} times; a zip bomb?); expected an archive written by np.savez or "
                         f"np.savez_compressed")


def check_tensor_dtype(source: str, name: str, dtype: str) -> None:
    """A prediction .safetensors field's dtype, from the header, before numpy meets one it has not (BF16)."""
    allowed, expected = {"logits": (_FLOATS, "F16, F32 or F64"), "ids_utf8": (("U8",), "U8")}.get(
        name, (_INTEGERS, "an integer dtype"))
    if dtype not in allowed:
        raise file_error(source, f"field '{name}' has dtype {dtype}; expected {expected}")


def check_costs(source: str, meta: dict[str, str]) -> None:
    """The cost a prediction file states for its model, which `compare` shows and weighs: ``params`` a
    count, ``ms_per_image`` a time, neither negative nor NaN."""
    params, ms = meta.get("params"), meta.get("ms_per_image")
    if params is not None and not (params.isascii() and params.isdigit() and len(params) <= 18):
        raise file_error(source, f"metadata 'params' is {params!r}; expected a count of parameters (0 or more)")
    if ms is not None:
        try:
            value = float(ms)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise file_error(source, f"metadata 'ms_per_image' is {ms!r}; expected milliseconds (0 or more)")


def file_error(source: str, what: str) -> PredictionFileError:
    """The error about one input file: ``source: what``, on one line."""
    return PredictionFileError(f"{source}: {what}".replace("\n", " "))


def check_npz_magic(path: Path, source: str) -> None:
    """An .npz is a zip archive: a lone .npy array or a pickle is named as what it is."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise file_error(source, "is a single .npy array; expected an .npz archive of named arrays")
    if magic[:1] == b"\x80":
        raise file_error(source, "is a Python pickle; modelupdate never unpickles files")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise file_error(source, "is not an .npz (zip) archive")


def npz_meta(source: str, value: Any) -> dict[str, str]:
    """An .npz's provenance: a 0-d string array holding a JSON object of strings (absent: none)."""
    if value is None:
        return {}
    try:
        meta = json.loads(str(value.reshape(()))) if value.dtype.kind == "U" and value.size == 1 else None
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise file_error(source, "field 'meta' must be one string holding a JSON object of strings (the provenance)")
    check_costs(source, meta)
    return meta
