"""Options generated from the config fields, and the command class that gives a command whole groups of them.

Each config field that has a flag (``fields.Flag`` in its metadata) is one option. A group is the options of a
dataclass's flagged fields, with its nested configs' (``NESTED``), and how their values become the object a
command works with. A command lists the groups it takes::

    @with_options(EVALUATION, after="data")   # in --help after the command's own --data
    def predict_cmd(ctx: typer.Context, ...) -> None:
        evaluation = EVALUATION.of(ctx)

The groups are built in the order the decorators are listed, before the command's body runs: a config's
constructor checks its values, so a bad one is one line naming its flag and exit code 2. Typer itself makes
the options (``typer.main.get_command``), so they read in ``--help`` exactly as a command's own options do.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

from ..fields import METADATA_KEY, Flag
from .errors import run

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
NESTED = {"options": "nested"}  # a field's metadata: its dataclass's options are the group's too


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A config class's field types, resolved once (every option of it asks)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


@dataclass(frozen=True)
class FieldOption:
    """One generated option: ``param`` is its name in click (from the flag: --no-augment -> no_augment),
    ``field`` the field its value goes to."""

    field: str
    flag: Flag
    typed_as: Any  # what the user types
    default: Any  # as typed

    @property
    def param(self) -> str:
        return self.flag.name.lstrip("-").replace("-", "_")

    def value(self, typed: Any) -> Any:
        """The field's value from what was typed."""
        if self.flag.negated:
            return not typed
        return self.flag.parse(typed) if self.flag.parse is not None and typed is not None else typed

    def parameter(self) -> inspect.Parameter:
        """This option as a keyword parameter Typer makes an option of."""
        names = [f"{self.flag.name}/{self.flag.off}" if self.flag.off else self.flag.name]
        info = typer.Option(self.default, *names, *([self.flag.short] if self.flag.short else []),
                            help=self.flag.text, metavar=self.flag.metavar)
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=self.typed_as)


def option_of(cls: type, name: str, default_text: str | None = None) -> FieldOption:
    """The option of ``cls``'s flagged field ``name`` (``default_text``: its ``[default: ...]``, set by the caller)."""
    field = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]  # cls is a dataclass
    flag: Flag = field.metadata[METADATA_KEY]
    if default_text is not None:
        flag = dataclasses.replace(flag, default_text=default_text)
    if flag.negated:
        default: Any = not field.default
    elif flag.typed_default is not None:
        default = flag.typed_default
    elif field.default is dataclasses.MISSING:
        raise TypeError(f"{field.name}: a field with a default factory needs its typed_default to be an option")
    else:
        default = field.default
    typed = flag.typed_as if flag.typed_as is not None else _hints(cls)[name]
    return FieldOption(field.name, flag, typed, default)


def options_of(cls: type, names: Sequence[str] | None = None,
               default_texts: Mapping[str, str] | None = None) -> tuple[FieldOption, ...]:
    """The options of ``cls``'s flagged fields in declaration order (``names``: only these, in this order),
    those of its ``NESTED`` configs in place; ``default_texts``: a field's ``[default: ...]`` set by the caller."""
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    found: list[FieldOption] = []
    for name in names if names is not None else list(fields):
        if fields[name].metadata.get("options") == "nested":
            found.extend(options_of(hints[name], default_texts=default_texts))
        elif METADATA_KEY in fields[name].metadata:
            found.append(option_of(cls, name, (default_texts or {}).get(name)))
    return tuple(found)


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls`` from the options' values (keyed by ``param``): its fields in declaration order, each ``NESTED``
    config built where it stands (so its constructor's checks run in that order)."""
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass
        if field.metadata.get("options") == "nested":
            kwargs[field.name] = build(hints[field.name], values)
        elif METADATA_KEY in field.metadata:
            option = option_of(cls, field.name)
            if option.param in values:
                kwargs[field.name] = option.value(values[option.param])
    return cls(**kwargs)


@dataclass(frozen=True)
class OptionGroup(Generic[T]):
    """Options a command takes together, and the object their values make (``make``, given them by param)."""

    key: str
    options: tuple[FieldOption, ...]
    make: Callable[[dict[str, Any]], T]

    def of(self, ctx: typer.Context) -> T:
        """What the group's options made, in a command that takes it."""
        return typing.cast(T, ctx.meta[f"modelupdate.{self.key}"])

    def params(self) -> list[Any]:
        """The click options, made by Typer from a signature of the group's options."""
        app = typer.Typer(add_completion=False)
        app.command()(_Signature(self.options))
        return list(typer.main.get_command(app).params)


class _Signature:
    """A callable whose signature lists some options, for Typer to make click options of."""

    def __init__(self, options: Sequence[FieldOption]) -> None:
        self.__name__ = "options"
        self.__signature__ = inspect.Signature([o.parameter() for o in options])
        self.__annotations__ = {o.param: o.typed_as for o in options}

    def __call__(self, **values: Any) -> None:  # never called: only its signature is read
        return None


Place = str | OptionGroup[Any] | None  # after a parameter, after a group's last option; None: at the end
FIRST = ""  # a Place: before the command's own options
_GROUPS: dict[Callable[..., Any], list[tuple[OptionGroup[Any], Place]]] = {}


def with_options(group: OptionGroup[Any], *, after: Place = None) -> Callable[[F], F]:
    """Give a command ``group``'s options, in --help after its option ``after`` (a parameter name, or the last
    option of another group; ``FIRST``: before all), else at the end. Groups are built in the order the
    decorators are listed, so the first bad value a user sees does not depend on where --help lists it."""

    def decorate(fn: F) -> F:
        _GROUPS.setdefault(fn, []).insert(0, (group, after))  # decorators apply bottom-up; keep reading order
        return fn

    return decorate


class GroupedCommand(TyperCommand):
    """A Typer command with its groups' options (``with_options``), built before its body runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups = _GROUPS.get(inspect.unwrap(self.callback), []) if self.callback else []
        for group, after in self.groups:
            anchor = after.options[-1].param if isinstance(after, OptionGroup) else after
            names = [p.name for p in self.params]
            at = 0 if anchor == FIRST else names.index(anchor) + 1 if anchor is not None else len(names)
            self.params[at:at] = group.params()
        names = [p.name for p in self.params]
        repeated = sorted({n for n in names if names.count(n) > 1 and n is not None})
        if repeated:
            raise TypeError(f"{self.name}: option(s) {', '.join(repeated)} given twice")
        for param in self.params:
            if isinstance(param, TyperArgument) and param.nargs == -1:
                param.__class__ = _Repeated

    def invoke(self, ctx: Any) -> Any:
        for group, _ in self.groups:
            values = {o.param: ctx.params.pop(o.param) for o in group.options}
            ctx.meta[f"modelupdate.{group.key}"] = run(functools.partial(group.make, values))
        return super().invoke(ctx)


class _Repeated(TyperArgument):
    """A variadic argument labelled by its element type, ``CANDIDATE <path>...``, where Typer labels it
    ``<list[Path]>``. GroupedCommand gives the arguments it finds this class (an instance's class swapped: Typer
    has no option for it). Every repeatable option has a metavar of its own."""

    def display_type_rich(self, ctx: Any) -> str | None:
        annotation = self.type_descriptor.annotation
        element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
        return f"<{getattr(element, '__name__', str(element)).lower()}>..."

