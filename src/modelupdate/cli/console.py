"""The terminal: one console for output and one for errors, both showing every string as text."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

from ..report import terminal_safe


class SafeConsole(Console):
    """A console that shows every string as it is: no Rich markup is read from it (class names, paths and
    metadata are data), and control characters are escaped rather than sent to the terminal."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, highlight=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any):  # every str a table, title or print() shows
        return super().render_str(terminal_safe(text), **kwargs)


out_console = SafeConsole()
err_console = SafeConsole(stderr=True)


def is_rank0() -> bool:
    """Under torchrun, only rank 0 prints summaries and hints."""
    return os.environ.get("RANK", "0") == "0"


def print_written(path: Any, what: str = "") -> None:
    """``wrote <path>`` on one line, never wrapped, so the path can be copied."""
    out_console.print(f"wrote {path}{f' ({what})' if what else ''}", soft_wrap=True)
