"""How a config field is typed on the command line: its flag, help and metavar, kept in the field's metadata.

A config dataclass declares ``epochs: int = field(default=2, metadata=flag("--epochs", "Training epochs."))``;
the CLI generates its options from these fields (``cli/groups.py``), and an error about a field names the flag
the user typed (``field_error``, ``option_name``). Torch-free, at the bottom of the layers: every config
module imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

METADATA_KEY = "flag"


@dataclass(frozen=True)
class Flag:
    """One field's option. ``help`` is what the field means; ``default_text``, where given, is the
    ``[default: ...]`` shown after it (where the field's own default, None, would say nothing)."""

    name: str  # "--epochs"
    help: str
    default_text: str | None = None
    metavar: str | None = None
    short: str | None = None  # "-q"
    off: str | None = None  # a switch pair "--exclude-target/--all-classes": the flag that sets False
    negated: bool = False  # the option turns the field off: --no-augment sets augment to False
    # what the user types where it differs from the field's type: a path for a str field, JSON text for a dict
    typed_as: Any = None
    parse: Callable[[Any], Any] | None = None  # the typed value -> the field's value
    typed_default: str | None = None  # the default as typed, where the field's default is not (JSON text)

    @property
    def shown(self) -> str:
        """The flag as an error names it: ``--exclude-target/--all-classes`` for a switch pair."""
        return f"{self.name}/{self.off}" if self.off else self.name

    @property
    def text(self) -> str:
        """The help as ``--help`` shows it."""
        return self.help if self.default_text is None else f"{self.help} [default: {self.default_text}]."


def flag(name: str, help: str, **details: Any) -> dict[str, Flag]:
    """A field's metadata: ``field(default=..., metadata=flag("--epochs", "Training epochs."))``."""
    return {METADATA_KEY: Flag(name, help, **details)}


def like(cls: type, field_name: str, **changes: Any) -> dict[str, Flag]:
    """The metadata of a field that is typed as another class's field is (``changes``: what differs)."""
    return {METADATA_KEY: dataclasses.replace(flag_of(cls, field_name), **changes)}


def flag_of(cls: type, field_name: str) -> Flag:
    """The option of ``cls``'s field; KeyError where the field has none."""
    return cls.__dataclass_fields__[field_name].metadata[METADATA_KEY]  # type: ignore[attr-defined, no-any-return]  # cls is a dataclass


def flagged_fields(cls: type) -> list[dataclasses.Field]:
    """``cls``'s fields that have an option, in declaration order."""
    return [f for f in dataclasses.fields(cls) if METADATA_KEY in f.metadata]


def option_name(cls: type, field_name: str) -> str:
    """What an error about the field calls it: its flag, or ``Class.field`` where no command has one."""
    found = cls.__dataclass_fields__[field_name].metadata.get(METADATA_KEY)  # type: ignore[attr-defined]  # a dataclass
    return found.shown if found is not None else f"{cls.__name__}.{field_name}"


def field_error(config: Any, field_name: str, expected: str) -> ConfigError:
    """``--epochs: expected a positive integer, got 0``: the error about a field, naming its flag."""
    return ConfigError(f"{option_name(type(config), field_name)}: {expected}, got {getattr(config, field_name)!r}")
