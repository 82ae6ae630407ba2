"""The `modelupdate` command line: the app, its global options, and the commands registered on it.

Commands live in ``train.py`` (train, ensemble-train, ldi-train), ``analyze.py`` (models, info,
predict, flip-report, compare) and ``model_import.py`` (import); each gathers options, makes one
library call and renders. Errors become
one line on stderr and an exit code in ``errors.py``.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import __version__
from . import analyze, model_import, train
from .console import out_console
from .errors import exit_code_of
from .groups import GroupedCommand

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Replace a deployed classifier with a better one without regressions (ELODI).")


def _print_version(value: bool) -> None:
    if value:
        out_console.print(f"modelupdate {__version__}")
        raise typer.Exit(0)


def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    # eager: handled before click asks for a command, so `modelupdate --version` alone works
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
    allow_arch_module: Annotated[list[str] | None, typer.Option(
        "--allow-arch-module", metavar="MODULE", help="Let checkpoints name architecture factories in this "
        "module (and its submodules); repeatable; adds to $MODELUPDATE_ARCH_MODULES. Without it a checkpoint "
        "naming code is refused.")] = None,
) -> None:
    if debug:
        os.environ["MODELUPDATE_DEBUG"] = "1"
    show_warnings_as_lines()
    if allow_arch_module:
        from ..models import ARCH_MODULES_ENV

        current = os.environ.get(ARCH_MODULES_ENV, "")
        os.environ[ARCH_MODULES_ENV] = ",".join([m for m in current.split(",") if m] + list(allow_arch_module))


def show_warnings_as_lines() -> None:
    """The library's warnings (errors.ModelUpdateWarning) as one line on stderr each, when they are raised."""
    import warnings

    from ..errors import ModelUpdateWarning
    from .console import err_console

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ModelUpdateWarning):
            err_console.print(f"warning: {message}", soft_wrap=True, markup=False, highlight=False)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", ModelUpdateWarning)


app.callback()(main_callback)
for name, command in (("models", analyze.models_cmd), ("info", analyze.info_cmd), ("train", train.train_cmd),
                      ("ensemble-train", train.ensemble_train_cmd), ("ldi-train", train.ldi_train_cmd),
                      ("predict", analyze.predict_cmd), ("flip-report", analyze.flip_report_cmd),
                      ("compare", analyze.compare_cmd), ("import", model_import.import_cmd)):
    app.command(name, cls=GroupedCommand)(command)


def main() -> None:
    """The `modelupdate` entry point."""
    raise SystemExit(exit_code_of(app, "modelupdate"))
