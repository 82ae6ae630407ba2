"""Type checks of the library's inputs: the config dataclasses' fields and the API's list arguments.

The CLI's values are right by construction; a Python caller's are checked here, so that a wrong type is a
ConfigError naming the field (docs/api.md, "Arguments") rather than a TypeError deep in torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from typing import Any, overload

from .errors import ConfigError

# the command-line option a config field (or a recipe key) comes from, where it is not --field-with-dashes
OPTIONS = {"name": "--data", "fingerprint": "--data (the files it holds)", "augment": "--no-augment",
           "exclude_target": "--exclude-target/--all-classes", "reference_sha256": "--reference",
           "parent_sha256": "--old", "parent_predictions_sha256": "--old", "method": "--method",
           "synthetic_classes": "--data synthetic", "synthetic_size": "--data synthetic",
           "synthetic_channels": "--data synthetic", "synthetic_train": "--data synthetic",
           "synthetic_test": "--data synthetic", "lr_cycles": "--snapshots"}


def option_for(key: str) -> str:
    """The command-line option a config field or recipe key comes from."""
    return OPTIONS.get(key, "--" + key.replace("_", "-"))


@overload
def parse_number_list(option: str, text: str, kind: type = float) -> list: ...
@overload
def parse_number_list(option: str, text: None, kind: type = float) -> None: ...
@overload
def parse_number_list(option: str, text: str | None, kind: type = float) -> list | None: ...
def parse_number_list(option: str, text: str | None, kind: type = float) -> list | None:
    """``"0.5,0.5,0.5"`` as numbers (None stays None); one line naming the option otherwise."""
    if text is None:
        return None
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise ConfigError(f"{option}: expected comma-separated {noun}, got {text!r}") from None


_LIST_NOUNS = {float: "numbers", int: "integers", str: "names"}


def as_list(param: str, value: Any, kind: type = float) -> list | None:
    """Where a list is meant, Python callers may pass a list (tuple, array) or the CLI's ``"a,b,c"``: one rule
    for every such parameter. ``kind`` float: real numbers; int: integers (not 12.7, not bools); str:
    strings (a string is split at commas, never into characters). None stays None; anything else is one
    line naming ``param``; ranges and emptiness are the caller's to check."""
    if value is None:
        return None
    noun = _LIST_NOUNS[kind]
    if isinstance(value, str):
        items: list = [part.strip() for part in value.split(",")] if kind is str else \
            parse_number_list(param, value, kind)
    else:
        if hasattr(value, "tolist"):  # numpy arrays and torch tensors, as plain Python values
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{param}: expected a list of {noun} or a string 'a,b,c', got {_shown(value)}")
        items = list(value)
    for item in items:
        if not _is_kind(item, kind):
            raise ConfigError(f"{param}: expected a list of {noun} or a string 'a,b,c', got {_shown(value)}")
    if kind is str:
        return items
    return [int(v) for v in items] if kind is int else [float(v) for v in items]


def number_text(param: str, value: Any) -> str | None:
    """A list of numbers as the comma-separated text the CLI stores (a string is kept as given)."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(map(repr, as_list(param, value) or []))


def _is_kind(value: Any, kind: type) -> bool:
    if kind is str:
        return isinstance(value, str)  # an empty name is the caller's check, with its own message
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return kind is float or isinstance(value, numbers.Integral)


def _shown(value: Any) -> str:
    text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"


def check_field_types(obj: Any) -> None:
    """Each field's value is of its annotated type (ints are ints and not bools, numbers are real and fit in
    64 bits), normalised to the plain Python type (numpy scalars become int/float, a list of names a tuple).
    The CLI's values are right by construction, so a message names the field as a Python caller wrote it."""
    cls = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        kind = kinds[0]
        if kind not in FIELD_CHECKS:
            continue  # a nested config or another type: checked by its own class
        noun, convert = FIELD_CHECKS[kind]
        try:
            checked = convert(value)
        except OverflowError:  # the one check a typed command-line value can fail: name its option too
            raise ConfigError(f"{option_for(f.name)} ({cls}.{f.name}): expected {noun} that fits in 64 bits, got "
                              f"{_shown(value)}") from None
        except (TypeError, ValueError):
            raise ConfigError(f"{cls}.{f.name}: expected {noun}, got {_shown(value)}") from None
        if checked is not value:
            object.__setattr__(obj, f.name, checked)  # frozen dataclasses too


def _int_field(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError
    if not -2**63 <= int(value) < 2**63:  # what torch and numpy hold
        raise OverflowError
    return value if type(value) is int else int(value)


def _float_field(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError
    return value if type(value) is float else float(value)


def _of_type(expected: type) -> Any:
    def convert(value: Any) -> Any:
        if expected is bool and type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
            return bool(value)
        if not isinstance(value, expected):
            raise TypeError
        return value
    return convert


def _names_field(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # "a,b,c", as as_list reads it
        return tuple(part.strip() for part in value.split(","))
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError
    return tuple(value)


FIELD_CHECKS: dict[str, tuple[str, Any]] = {
    "int": ("an integer", _int_field),
    "float": ("a real number", _float_field),
    "str": ("a string", _of_type(str)),
    "bool": ("True or False", _of_type(bool)),
    "dict[str, Any]": ("a dict", _of_type(dict)),
    "tuple[str, ...]": ("a list of names", _names_field),
}


def guard_init(cls):
    """``cls(...)`` with a misspelt or missing argument raises ConfigError (one line naming the class), not the
    TypeError of the generated ``__init__``: Python callers get the library's errors everywhere."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls
