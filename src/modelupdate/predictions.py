"""Prediction files: how any framework's model joins a flip report.

Three formats are read, two written:

- ``.npz`` (read/write): arrays ``ids`` [N] (integers, or a unicode string array such as
  ``img_00000.png``), ``targets`` int [N], and ``logits`` float [N, C] and/or ``preds`` int [N];
  optional ``num_classes`` (scalar int), ``classes`` (1-D string array) and ``meta`` (a 0-d string
  array: a JSON object of provenance strings, as the safetensors metadata holds them). Loaded with
  ``allow_pickle=False``: a pickle (an object array) is refused, never run.
- ``.csv`` (read): a header naming the columns ``id,target,pred`` (any order, any case, extra
  columns ignored; other names through ``columns``, the CLI's ``--id-column``, ``--label-column``,
  ``--pred-column``), one row per sample. Ids are integers when every id is one, else strings.
  Labels are class indices when every value in the column is an integer, else every value must
  be a class name of ``classes`` (the ``--classes`` list or a checkpoint's), mapped to its index.
  No logits, so no margin analysis; without class names the class count is inferred from the labels.
- ``.safetensors`` (read/write), the tool's own: tensors ``targets``, ``preds`` (int64),
  ``logits`` (float32, optional) and either ``ids`` (int64) or, for string ids, ``ids_utf8``
  (uint8: the UTF-8 bytes of the ids joined by NUL; an id is never empty and holds no NUL);
  string metadata ``format = "modelupdate-predictions/1"``, ``num_classes``, ``classes`` (a JSON
  list, or absent) and free provenance keys (checkpoint sha256, dataset, split, ...).

Ids are unique within a file; old and new files are matched by id (an integer id matches the
string of its decimal digits when the other file's ids are strings). Every problem raises
:class:`PredictionFileError` with one line naming the file and the field (for a CSV, the row);
old and new files that do not fit together raise :class:`MismatchError`. Writes are atomic (temp
file in the same folder, fsync, rename).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from modelupdate import input_files
from modelupdate.atomic import atomic_write_bytes
from modelupdate.config import CSV_COLUMNS
from modelupdate.errors import MismatchError, PredictionFileError
from modelupdate.formats import PREDICTIONS_FORMAT, file_kind
from modelupdate.input_files import file_error, first_difference
from modelupdate.prediction_csv import read_csv_columns

SUFFIXES = (".npz", ".csv", ".safetensors")

#: rows checked at a time for NaN/Inf, so no [N, C] bool temporary is made
_CHUNK_ROWS = 65_536


@dataclass
class Predictions:
    """One model's outputs on a labelled set, one entry per sample.

    ids: int64 [N] or unicode strings [N] (unique); targets: int64 [N]; preds: int64 [N];
    logits: float32 [N, C] or None (label-only files); num_classes: C, or None
    when a label-only file does not say (``align`` then infers it);
    classes: C names or None; source: where it came from, for messages;
    meta: free string provenance (written to and read from safetensors metadata).
    """

    ids: np.ndarray
    targets: np.ndarray
    preds: np.ndarray
    logits: np.ndarray | None
    num_classes: int | None
    classes: list[str] | None = None
    source: str = "<memory>"
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_arrays(
        cls,
        ids: np.ndarray,
        targets: np.ndarray,
        logits: np.ndarray | None = None,
        preds: np.ndarray | None = None,
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        source: str = "<memory>",
        meta: dict[str, str] | None = None,
    ) -> Predictions:
        """Validated Predictions from raw arrays (``preds`` default to argmax of ``logits``).

        Raises PredictionFileError naming ``source`` and the field at fault.
        """
        return _build(source, ids=ids, targets=targets, logits=logits, preds=preds,
                      num_classes=num_classes, classes=classes, meta=meta or {})


# --------------------------------------------------------------------------- validation


def show_id(value) -> str:
    """One sample id as a message shows it: an integer as digits, a string quoted."""
    return repr(str(value)) if isinstance(value, str) else str(int(value))


def _examples(values: np.ndarray, k: int = 3) -> str:
    shown = ", ".join(show_id(v) for v in values[:k].tolist())
    return shown + (", ..." if values.size > k else "")


def _ids(source: str, array: np.ndarray) -> np.ndarray:
    """ids as int64 [N], or as a unicode array [N] of non-empty strings without NUL."""
    array = np.asarray(array)
    if array.dtype.kind == "S":
        try:
            array = np.char.decode(array, "utf-8")
        except UnicodeDecodeError:
            raise file_error(source, "field 'ids' holds bytes that are not UTF-8") from None
    elif array.dtype.kind == "O" and all(isinstance(v, str) for v in array.reshape(-1).tolist()):
        array = array.astype(str)  # strings built in memory (never read from a file: no pickle)
    if array.dtype.kind != "U":
        return _int_vector(source, "ids", array, "integers or strings")
    if array.ndim != 1:
        raise file_error(source, f"field 'ids' has shape {array.shape}; expected [N]")
    values = array.tolist()
    for i, value in enumerate(values):
        if not value or "\0" in value:
            raise file_error(source, f"field 'ids' has an {'empty id' if not value else 'id with a NUL'} "
                             f"at position {i}; expected non-empty names")
    return array


def _int_vector(source: str, name: str, array: np.ndarray, expected: str = "integers") -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise file_error(source, f"field '{name}' has dtype {array.dtype}; expected {expected}")
    if array.ndim != 1:
        raise file_error(source, f"field '{name}' has shape {array.shape}; expected [N]")
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        raise file_error(source, f"field '{name}' has values above the int64 range")
    return array.astype(np.int64, copy=False)


def _logits(source: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind != "f":
        raise file_error(source, f"field 'logits' has dtype {array.dtype}; expected floats")
    if array.ndim != 2:
        raise file_error(source, f"field 'logits' has shape {array.shape}; expected [N, C]")
    if array.shape[1] < 2:
        raise file_error(source, f"field 'logits' has {array.shape[1]} class(es); expected at least 2")
    # float64 -> float32 copies; values beyond float32 become Inf and are caught below
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    for start in range(0, array.shape[0], _CHUNK_ROWS):
        finite = np.isfinite(array[start:start + _CHUNK_ROWS]).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise file_error(source, f"field 'logits' contains NaN or Inf (first in row {row})")
    return array


def _check_range(source: str, name: str, labels: np.ndarray, num_classes: int | None) -> None:
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise file_error(source, f"field '{name}' has negative class {low}; expected [0, C)")
    if num_classes is not None and high >= num_classes:
        raise file_error(source, f"field '{name}' has class {high}, outside [0, {num_classes})")


def _build(
    source: str,
    *,
    ids: np.ndarray | None,
    targets: np.ndarray | None,
    logits: np.ndarray | None,
    preds: np.ndarray | None,
    num_classes: int | None,
    classes: Sequence[str] | None,
    meta: dict[str, str],
) -> Predictions:
    """Check everything that can be wrong with one prediction set, cheapest first."""
    if ids is None:
        raise file_error(source, "missing field 'ids'")
    if targets is None:
        raise file_error(source, "missing field 'targets'")
    if logits is None and preds is None:
        raise file_error(source, "missing field 'logits' or 'preds' (one of them is needed)")
    ids = _ids(source, ids)
    targets = _int_vector(source, "targets", targets)
    if preds is not None:
        preds = _int_vector(source, "preds", preds)
    if ids.size == 0:
        raise file_error(source, "contains no samples (field 'ids' is empty)")
    n = ids.shape[0]
    for name, array in (("targets", targets), ("preds", preds)):
        if array is not None and array.shape[0] != n:
            raise file_error(source, f"field '{name}' has {array.shape[0]} entries; 'ids' has {n}")

    if logits is not None:
        logits = _logits(source, logits)
        if logits.shape[0] != n:
            raise file_error(source, f"field 'logits' has {logits.shape[0]} rows; 'ids' has {n}")
        width = logits.shape[1]
        if num_classes is not None and num_classes != width:
            raise file_error(source, f"field 'num_classes' says {num_classes} but 'logits' has "
                             f"{width} columns")
        num_classes = width
    if num_classes is not None and num_classes < 1:
        raise file_error(source, f"field 'num_classes' is {num_classes}; expected >= 1")
    if classes is not None:
        classes = [str(c) for c in classes]
        input_files.check_class_names(classes, PredictionFileError, f"{source}: field 'classes'")
        if num_classes is None:
            num_classes = len(classes)
        if len(classes) != num_classes:
            raise file_error(source, f"field 'classes' has {len(classes)} names for "
                             f"{num_classes} classes")

    _check_range(source, "targets", targets, num_classes)
    if preds is not None:
        _check_range(source, "preds", preds, num_classes)
    if logits is not None:
        argmax = logits.argmax(axis=1)
        if preds is None:
            preds = argmax.astype(np.int64)
        else:
            # a stored label must be *a* maximal logit (ties may resolve either way)
            rows = np.arange(n)
            wrong = np.flatnonzero(logits[rows, preds] < logits[rows, argmax])
            if wrong.size:
                raise file_error(source, f"field 'preds' disagrees with argmax of 'logits' for "
                                 f"{wrong.size} samples (e.g. id {show_id(ids[wrong[0]].item())})")

    # ids already strictly increasing (the usual dataset order) need no sort to be unique
    increasing = bool(np.all(ids[1:] > ids[:-1]))
    sorted_ids = ids if increasing else np.sort(ids)
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if repeated.size:
        unique = np.unique(repeated)
        raise file_error(source, f"field 'ids' has {unique.size} duplicated ids "
                         f"(e.g. {_examples(unique)}); ids must be unique")
    assert preds is not None
    return Predictions(ids=ids, targets=targets, preds=preds, logits=logits,
                       num_classes=num_classes, classes=classes, source=source, meta=dict(meta))


# --------------------------------------------------------------------------- readers


def read_predictions(path: str | os.PathLike, *, columns: Sequence[str] = CSV_COLUMNS,
                     classes: Sequence[str] | None = None) -> Predictions:
    """Read and validate a ``.npz``, ``.csv`` or predictions ``.safetensors`` file.

    ``columns``: the CSV columns holding the id, the true label and the prediction (matched
    without regard to case). ``classes``: the class names in index order; a CSV's label columns
    may then hold names, and a file that names its own classes must name the same ones.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise file_error(source, f"unknown extension '{path.suffix}'; expected one of "
                         f"{', '.join(SUFFIXES)}")
    input_files.check_regular_file(path, PredictionFileError)
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            raise file_error(source, "is a symbolic link to nothing readable (broken, or a loop)")
        raise file_error(source, "no such file")
    if path.stat().st_size == 0:
        raise file_error(source, "file is empty")
    if suffix == ".csv":
        ids, targets, preds = read_csv_columns(path, tuple(columns), classes)
        predictions = _build(source, ids=ids, targets=targets, preds=preds, logits=None, num_classes=None,
                             classes=None if classes is None else list(classes), meta={})
    else:
        predictions = {".npz": _read_npz, ".safetensors": _read_safetensors}[suffix](path, source)
    return _with_classes(predictions, classes)


def _with_classes(p: Predictions, classes: Sequence[str] | None) -> Predictions:
    """``p`` naming ``classes``: a file that names other classes is a MismatchError."""
    if classes is None:
        return p
    classes = [str(c) for c in classes]
    if p.classes == classes:
        return p
    if p.classes is not None:
        first = first_difference(p.classes, classes)
        ours = p.classes[first] if first < len(p.classes) else None
        theirs = classes[first] if first < len(classes) else None
        raise MismatchError(f"{p.source}: its class names differ from the classes it is read with at index "
                            f"{first} ({ours!r} vs {theirs!r}; {len(p.classes)} vs {len(classes)} classes)")
    return _build(p.source, ids=p.ids, targets=p.targets, logits=p.logits, preds=p.preds,
                  num_classes=p.num_classes, classes=classes, meta=p.meta)


def _read_npz(path: Path, source: str) -> Predictions:
    input_files.check_npz_magic(path, source)
    arrays: dict[str, np.ndarray] = {}
    try:
        input_files.check_npz_sizes(path, source)  # before numpy allocates what a header declares
        with np.load(path, allow_pickle=False) as npz:
            for name in input_files.NPZ_FIELDS:
                if name in npz.files:
                    try:
                        arrays[name] = npz[name]
                    except ValueError as exc:
                        if "pickle" in str(exc) or "Object arrays" in str(exc):
                            raise file_error(source, f"field '{name}' holds pickled Python objects; "
                                             "modelupdate never unpickles") from None
                        raise
    except PredictionFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError,
            NotImplementedError, RuntimeError) as exc:  # what a damaged zip can raise
        raise file_error(source, f"cannot read .npz archive ({type(exc).__name__}: {exc})") from None
    num_classes = None
    if "num_classes" in arrays:
        value = arrays["num_classes"]
        if value.dtype.kind not in "iu" or value.size != 1:
            raise file_error(source, "field 'num_classes' must be one integer")
        num_classes = int(value.reshape(()))
    classes = None
    if "classes" in arrays:
        value = arrays["classes"]
        if value.dtype.kind != "U" or value.ndim != 1:
            raise file_error(source, f"field 'classes' has dtype {value.dtype} and shape "
                             f"{value.shape}; expected a 1-D string array")
        classes = [str(c) for c in value]
    meta = input_files.npz_meta(source, arrays.get("meta"))
    return _build(source, ids=arrays.get("ids"), targets=arrays.get("targets"),
                  logits=arrays.get("logits"), preds=arrays.get("preds"),
                  num_classes=num_classes, classes=classes, meta=meta)


# --------------------------------------------------------------------------- safetensors


def _read_safetensors(path: Path, source: str) -> Predictions:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = fh.metadata() or {}
            if metadata.get("format") != PREDICTIONS_FORMAT:
                raise file_error(source, f"metadata 'format' is {metadata.get('format')!r}; "
                                 f"expected {PREDICTIONS_FORMAT!r} (a model checkpoint is not "
                                 "a prediction file)")
            names = [name for name in fh.keys() if name in ("ids", "ids_utf8", "targets", "logits", "preds")]
            for name in names:
                input_files.check_tensor_dtype(source, name, fh.get_slice(name).get_dtype())
            arrays = {name: fh.get_tensor(name) for name in names}
    except PredictionFileError:
        raise
    except (SafetensorError, OSError, ValueError) as exc:
        raise file_error(source, f"cannot read safetensors file ({exc})") from None
    num_classes = None
    if "num_classes" in metadata:
        try:
            num_classes = int(metadata["num_classes"])
        except ValueError:
            raise file_error(source, f"metadata 'num_classes' is {metadata['num_classes']!r}; "
                             "expected an integer") from None
    classes = None
    if metadata.get("classes"):
        try:
            classes = json.loads(metadata["classes"])
        except json.JSONDecodeError:
            raise file_error(source, "metadata 'classes' is not valid JSON") from None
        if classes is not None and (not isinstance(classes, list)
                                    or not all(isinstance(c, str) for c in classes)):
            raise file_error(source, "metadata 'classes' must be a JSON list of strings")
    meta = {k: v for k, v in metadata.items() if k not in ("format", "num_classes", "classes")}
    input_files.check_costs(source, meta)
    if "ids_utf8" in arrays:
        if "ids" in arrays:
            raise file_error(source, "has both 'ids' and 'ids_utf8'; expected one of them")
        arrays["ids"] = _decode_string_ids(source, arrays.pop("ids_utf8"))
    return _build(source, ids=arrays.get("ids"), targets=arrays.get("targets"),
                  logits=arrays.get("logits"), preds=arrays.get("preds"),
                  num_classes=num_classes, classes=classes, meta=meta)


def _decode_string_ids(source: str, data: np.ndarray) -> np.ndarray:
    """``ids_utf8`` (uint8 [B]: UTF-8 of the ids joined by NUL) -> unicode [N]."""
    if data.dtype != np.uint8 or data.ndim != 1:
        raise file_error(source, f"field 'ids_utf8' has dtype {data.dtype} and shape {data.shape}; "
                         "expected uint8 [bytes]")
    try:
        text = data.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise file_error(source, "field 'ids_utf8' is not UTF-8") from None
    return np.array(text.split("\0"), dtype=str)


def _encode_string_ids(ids: np.ndarray) -> np.ndarray:
    return np.frombuffer("\0".join(ids.tolist()).encode("utf-8"), dtype=np.uint8)


def is_predictions_file(path: str | os.PathLike) -> bool:
    """True for ``.npz``/``.csv``, and for a ``.safetensors`` whose metadata says predictions.

    Lets a command take "a checkpoint, an ensemble or a prediction file" in one option.
    """
    return file_kind(Path(path)) == "predictions"


# --------------------------------------------------------------------------- writers


def write_predictions(path: str | os.PathLike, predictions: Predictions) -> Path:
    """Write ``.npz`` or predictions ``.safetensors`` atomically; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".safetensors"):
        raise PredictionFileError(f"{path}: cannot write extension '{path.suffix}'; "
                                  "expected .npz or .safetensors")
    p = predictions
    string_ids = p.ids.dtype.kind == "U"
    tensors: dict[str, Any] = {
        "targets": np.ascontiguousarray(p.targets, dtype=np.int64),
        "preds": np.ascontiguousarray(p.preds, dtype=np.int64),
    }
    if string_ids and suffix == ".safetensors":
        tensors["ids_utf8"] = _encode_string_ids(p.ids)  # safetensors holds numbers only
    else:
        tensors["ids"] = p.ids if string_ids else np.ascontiguousarray(p.ids, dtype=np.int64)
    if p.logits is not None:
        tensors["logits"] = np.ascontiguousarray(p.logits, dtype=np.float32)
    if suffix == ".npz":
        if p.num_classes is not None:
            tensors["num_classes"] = np.asarray(p.num_classes, dtype=np.int64)
        if p.classes is not None:
            tensors["classes"] = np.asarray(p.classes, dtype=str)
        if p.meta:  # the provenance, as the safetensors format keeps it in its metadata
            tensors["meta"] = np.asarray(json.dumps(p.meta, sort_keys=True), dtype=str)
        buffer = io.BytesIO()
        np.savez(buffer, **tensors)
        data = buffer.getvalue()
    else:
        from safetensors.numpy import save

        metadata = {**p.meta, "format": PREDICTIONS_FORMAT}
        if p.num_classes is not None:
            metadata["num_classes"] = str(p.num_classes)
        if p.classes is not None:
            metadata["classes"] = json.dumps(list(p.classes))
        data = save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)
    return path


# --------------------------------------------------------------------------- alignment


def _take(p: Predictions, index: np.ndarray) -> Predictions:
    return dataclasses.replace(
        p, ids=p.ids[index], targets=p.targets[index], preds=p.preds[index],
        logits=None if p.logits is None else p.logits[index],
    )


def comparable_ids(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two id arrays that can be compared: integer ids match their decimal digits in a file of string ids."""
    if (a.dtype.kind == "U") != (b.dtype.kind == "U"):
        return a.astype(str), b.astype(str)
    return a, b


def positions(have: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` is in ``have`` (unique ids of one kind, see ``comparable_ids``): its row, and
    whether it is there at all (where not, the row is meaningless)."""
    if len(have) == 0:
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    order = np.argsort(have, kind="stable")
    at = np.minimum(np.searchsorted(have[order], wanted), len(have) - 1)
    return order[at], have[order][at] == wanted


def align(old: Predictions, new: Predictions) -> tuple[Predictions, Predictions]:
    """Put ``new`` in ``old``'s sample order and make both agree on classes.

    Returns ``(old, new)`` with equal ``ids``, equal ``num_classes`` and the same
    ``classes`` (whichever file names them). When the ids already match in order
    nothing is copied. Raises MismatchError naming counts and example ids when the
    id sets differ, targets differ for an id, or the class counts/names disagree.
    """
    names = f"old {old.source} vs new {new.source}"
    old_ids, new_ids = comparable_ids(old.ids, new.ids)
    if old_ids is not old.ids:  # integer ids written as digits, to match a file of string ids
        old, new = dataclasses.replace(old, ids=old_ids), dataclasses.replace(new, ids=new_ids)
    if not np.array_equal(old.ids, new.ids):
        rows, found = positions(new.ids, old.ids)
        if len(old) != len(new) or not found.all():  # ids are unique in a file: else the same set
            only_old = np.setdiff1d(old.ids, new.ids, assume_unique=True)
            only_new = np.setdiff1d(new.ids, old.ids, assume_unique=True)
            raise MismatchError(
                f"sample ids differ ({names}): {only_old.size} only in old "
                f"(e.g. {_examples(only_old) or 'none'}), {only_new.size} only in new "
                f"(e.g. {_examples(only_new) or 'none'}); both must cover the same samples"
            )
        new = _take(new, rows)

    differ = np.flatnonzero(old.targets != new.targets)
    if differ.size:
        i = int(differ[0])
        raise MismatchError(
            f"targets differ for {differ.size} of {len(old)} samples ({names}), e.g. id "
            f"{show_id(old.ids[i].item())}: old {int(old.targets[i])}, new {int(new.targets[i])}"
        )

    if old.num_classes is not None and new.num_classes is not None:
        if old.num_classes != new.num_classes:
            raise MismatchError(f"class counts differ ({names}): old {old.num_classes}, "
                                f"new {new.num_classes}")
        num_classes = old.num_classes
    elif old.num_classes is not None or new.num_classes is not None:
        num_classes = cast(int, old.num_classes if old.num_classes is not None else new.num_classes)
        for side, p in (("old", old), ("new", new)):
            top = int(p.preds.max())
            if top >= num_classes:
                raise MismatchError(f"{side} {p.source} predicts class {top} but the other "
                                    f"file has {num_classes} classes")
    else:
        num_classes = int(max(old.preds.max(), new.preds.max(), old.targets.max())) + 1

    if old.classes is not None and new.classes is not None and old.classes != new.classes:
        raise MismatchError(f"class names differ ({names}) at index {first_difference(old.classes, new.classes)}")
    classes = old.classes if old.classes is not None else new.classes
    if classes is not None and len(classes) != num_classes:
        raise MismatchError(f"{len(classes)} class names for {num_classes} classes ({names})")
    old = dataclasses.replace(old, num_classes=num_classes, classes=classes)
    new = dataclasses.replace(new, num_classes=num_classes, classes=classes)
    return old, new
