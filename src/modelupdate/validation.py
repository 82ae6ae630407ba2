"""Type checks of the library's inputs: the config dataclasses' fields and the API's list arguments; and
the option values typed in formats of their own (--arch-args JSON, --train-subset, --rand-augment, ...).

The CLI's values are right by construction; a Python caller's are checked here, so that a wrong type is a
ConfigError naming the field (docs/api.md, "Arguments") rather than a TypeError deep in torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import numbers
from typing import Any, overload

from .errors import ConfigError
from .fields import option_name


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
            where = option_name(type(obj), f.name)  # its flag, or Class.field where no command has one
            named = f"{where} ({cls}.{f.name})" if where.startswith("--") else where
            raise ConfigError(f"{named}: expected {noun} that fits in 64 bits, got {_shown(value)}") from None
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


# --------------------------------------------------------------------------- option values in their own formats


def parse_arch_args(text: str) -> dict[str, Any]:
    """``--arch-args`` as typed: a JSON object (its values are checked against the factory when it is built)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"--arch-args: expected a JSON object such as '{{\"width\": 32}}', got {text!r}")
    return value


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # of the evaluation resize (data/transforms.py)


def check_crop_pct(option: str, crop_pct: float) -> None:
    if not (isinstance(crop_pct, int | float) and not isinstance(crop_pct, bool) and 0.0 < crop_pct <= 1.0):
        raise ConfigError(f"{option}: expected a share of the resized image in (0, 1], got {crop_pct!r}")


def check_interpolation(option: str, interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"{option}: expected one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")


def check_subset_spec(spec: str) -> None:
    """``--train-subset``: a fraction in (0, 1] or a count >= 1, checked before any data is read (whether
    the count fits the training split is the loader's to check)."""
    try:
        value = float(spec)
    except ValueError:
        value = math.nan
    fraction = 0 < value <= 1 and ("." in spec or value < 1)
    if not (math.isfinite(value) and (fraction or (value >= 1 and value == int(value)))):
        raise ConfigError(f"--train-subset: expected a fraction in (0, 1] or a count, got {spec!r}")


def parse_rand_augment(text: str) -> tuple[int, int]:
    """``--rand-augment N,M``: N operations per image at magnitude M (torchvision's RandAugment, M in 0..30)."""
    try:
        n, m = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--rand-augment: expected N,M (operations per image, magnitude), got {text!r}") from None
    if not (1 <= n <= 10 and 0 <= m <= 30):
        raise ConfigError(f"--rand-augment: expected N in 1..10 and M in 0..30, got {text!r}")
    return n, m
