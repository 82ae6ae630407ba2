"""Domain errors to one stderr line and an exit code, in one place.

Exit codes: 0 success (every gate passes), 1 a gate failed, 2 bad input or usage, 3 an internal error
or a diverged training, 130 interrupted. ``--debug`` (or ``MODELUPDATE_DEBUG=1``) shows tracebacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import typer

from ..errors import ModelUpdateError
from ..launch import is_rank0
from .console import err_console

T = TypeVar("T")
RESUME_HINT = "interrupted: the resumable state was saved; rerun the same command with --resume"


def debugging() -> bool:
    return bool(os.environ.get("MODELUPDATE_DEBUG"))


def run(fn: Callable[[], T], *, on_interrupt: str = "interrupted") -> T:
    """Call the library; turn its errors into one line on stderr and an exit code."""
    try:
        return fn()
    except ModelUpdateError as exc:
        if debugging():
            raise
        prefix = "" if exc.exit_code == 0 else "error: "  # e.g. --resume on a finished output: a note
        err_console.print(f"{prefix}{exc}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:  # a training command's Ctrl-C: the engine saved its state before re-raising
        if is_rank0():  # under torchrun every rank stops; one says so
            err_console.print(on_interrupt)
        raise typer.Exit(130) from None


def exit_code_of(app: typer.Typer, prog_name: str) -> int:
    """Run ``app``; a usage error is one ``error:`` line and exit code 2 (``--help`` shows the usage), an
    unexpected exception exit code 3 (never the gate's 1)."""
    try:  # typer >= 0.2x raises the exceptions of its own copy of click
        from typer import _click as click
    except ImportError:
        import click  # type: ignore[no-redef]  # the same click API, from the package itself

    try:
        code = app(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.UsageError as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # a bare `modelupdate`
            from .console import out_console

            out_console.print(exc.format_message())
            return 2
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        err_console.print(f"error: {exc.format_message()}{hint}", soft_wrap=True)
        return 2
    except typer.Abort:
        err_console.print("interrupted")
        return 130
    except click.ClickException as exc:
        err_console.print(f"error: {exc.format_message()}", soft_wrap=True)
        return exc.exit_code
    except Exception as exc:
        if debugging():
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err_console.print(f"error: internal error ({type(exc).__name__}: {first}); rerun with --debug for the "
                          f"traceback", soft_wrap=True)
        return 3
    return code if isinstance(code, int) else 0
