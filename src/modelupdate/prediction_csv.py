"""Prediction CSVs of any pipeline: named columns, integer or string ids, labels as indices or class names.

A header row names the columns; the id, label and prediction columns are found by name without regard
to case (``id,target,pred`` unless the user names others), extra columns are ignored, blank lines are
skipped. Rows are numbered as in a spreadsheet (the header is row 1) in every message. Ids are integers
when every id is one, else strings. A label column holds class indices when every value is an integer,
else every value must be a class name of the class list given, and becomes its index there (so class
names that are themselves integers are read as indices).

Also the ``--classes`` list: a file with one class name per line, or a comma list.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .input_files import check_regular_file, class_names_problem, file_error

#: class names shown in a message about an unknown one
_SHOWN_CLASSES = 8


def _find_columns(source: str, header: list[str], columns: tuple[str, ...]) -> list[int]:
    """Where each wanted column is in ``header`` (case-insensitive); one line if any is missing."""
    lowered = [h.strip().lower() for h in header]
    missing = [c for c in columns if c.strip().lower() not in lowered]
    if missing:
        shown = ", ".join(repr(h.strip()) for h in header if h.strip()) or "none"
        raise file_error(source, f"lacks column(s) {', '.join(missing)} (its columns: {shown}); "
                         "name the columns with --id-column, --label-column, --pred-column")
    found = []
    for c in columns:
        at = [i for i, h in enumerate(lowered) if h == c.strip().lower()]
        if len(at) > 1:
            raise file_error(source, f"has column {c!r} {len(at)} times; expected it once")
        found.append(at[0])
    return found


def _as_ints(values: list[str]) -> np.ndarray | None:
    """``values`` as int64 when every one is an integer, else None."""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        return None


def csv_ids(source: str, values: list[str], rows: Sequence[int]) -> np.ndarray:
    """A CSV's id column: int64 when every id is an integer, else unicode strings."""
    ints = _as_ints(values)
    if ints is not None:
        return ints
    for value, row in zip(values, rows, strict=True):
        if not value:
            raise file_error(source, f"row {row}: the id is empty; expected a sample id")
    return np.array(values, dtype=str)


def csv_labels(source: str, column: str, values: list[str], rows: Sequence[int],
               classes: Sequence[str] | None) -> np.ndarray:
    """A CSV's label column as class indices: int64 [N].

    Integers are indices when every value is one; otherwise every value must be one of
    ``classes`` and becomes its position there. One line names the row and the value otherwise.
    """
    ints = _as_ints(values)
    if ints is not None:
        clash = [name for k, name in enumerate(classes or []) if _as_ints([name]) is not None and int(name) != k]
        if clash:  # "1" could be index 1 or the class named "1": refuse to guess
            raise file_error(source, f"column '{column}' holds integers, and the class list names classes by integers "
                             f"that are not their positions ({', '.join(clash[:3])}); write labels as indices "
                             f"0..{len(classes or ()) - 1} with a class list of words, or drop the class list")
        return ints
    if classes is None:
        row, value = next((r, v) for r, v in zip(rows, values, strict=True) if _as_ints([v]) is None)
        raise file_error(source, f"row {row}: column '{column}' holds {value!r}, not a class index; class "
                         "names need the class list (--classes, or a checkpoint as the other input)")
    index = {name: k for k, name in enumerate(classes)}
    labels = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        k = index.get(value)
        if k is None:
            shown = ", ".join(list(classes)[:_SHOWN_CLASSES]) + (", ..." if len(classes) > _SHOWN_CLASSES else "")
            raise file_error(source, f"row {rows[i]}: column '{column}' holds {value!r}, which is not a class "
                             f"name (classes: {shown})")
        labels[i] = k
    return labels


def read_csv_columns(path: Path, columns: tuple[str, ...], classes: Sequence[str] | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids [N] (int64 or unicode), targets int64 [N], preds int64 [N] of a prediction CSV, unchecked
    beyond parsing (``predictions`` validates them). ``columns``: (id, label, pred) column names."""
    source = str(path)
    if len(columns) != 3:
        raise ValueError(f"columns: expected (id, label, pred) column names, got {columns!r}")
    ids: list[str] = []
    targets: list[str] = []
    preds: list[str] = []
    rows: list[int] = []  # the file row (the header is row 1) of each sample, for messages
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            where = _find_columns(source, header, columns)
            width = max(where) + 1
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue  # blank line (a trailing newline, an editor's empty last row)
                if len(fields) < width:
                    raise file_error(source, f"row {reader.line_num}: has {len(fields)} field(s); the header "
                                     f"has {len(header)}")
                ids.append(fields[where[0]].strip())
                targets.append(fields[where[1]].strip())
                preds.append(fields[where[2]].strip())
                rows.append(reader.line_num)
    except UnicodeDecodeError:
        raise file_error(source, "is not a UTF-8 text file") from None
    except csv.Error as exc:
        raise file_error(source, f"is not a readable CSV file ({exc})") from None
    if not ids:
        raise file_error(source, "contains no samples (only a header)")
    return (csv_ids(source, ids, rows), csv_labels(source, columns[1], targets, rows, classes),
            csv_labels(source, columns[2], preds, rows, classes))


def read_class_list(value: str) -> tuple[str, ...]:
    """``--classes``: a file with one class name per line, or a comma list (``cat,dog,bird``).

    A value naming an existing file is read as the file; blank lines are skipped. Raises
    ConfigError naming the option for no names, a duplicate name or an unreadable file.
    """
    path = check_regular_file(value, ConfigError, "--classes ")  # never waits on a FIFO
    if path.is_file():
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--classes {value}: cannot read the file ({exc})") from None
        names = [n for n in names if n]
        where = f"--classes {value}"
    elif "," in value:
        names = [n.strip() for n in value.split(",")]
        where = f"--classes {value!r}"
        if not all(names):
            raise ConfigError(f"{where}: has an empty class name; expected names separated by commas")
    else:
        raise ConfigError(f"--classes {value!r}: no such file, nor a list of at least 2 names; expected a file with "
                          "one class name per line or a comma list such as cat,dog,bird")
    if len(names) < 2:
        raise ConfigError(f"{where}: lists {len(names)} class name(s); expected at least 2")
    problem = class_names_problem(names)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: names class {name!r} twice; expected each name once")
        seen.add(name)
    return tuple(names)
