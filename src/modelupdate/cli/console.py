"""The terminal: one console for output and one for errors, both showing every string as text."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from ..report import terminal_safe


class SafeConsole(Console):
    """A console that shows every string as it is: no Rich markup is read from it (class names, paths and
    metadata are data), and control characters are escaped rather than sent to the terminal."""

    def __init__(self, **kwargs: Any) -> None:
        stream = sys.stderr if kwargs.get("stderr") else sys.stdout
        if "COLUMNS" not in os.environ and not stream.isatty():  # a CI log: tables whole, not wrapped at 80
            kwargs.setdefault("width", LOG_WIDTH)
        super().__init__(markup=False, highlight=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any):  # every str a table, title or print() shows
        return super().render_str(terminal_safe(text), **kwargs)


LOG_WIDTH = 200  # columns of the tables written to a file or a CI log (no terminal to fit)
out_console = SafeConsole()
err_console = SafeConsole(stderr=True)


@contextmanager
def progress(label: str, *, after: float = 2.0, every: float = 10.0) -> Iterator[Callable[[int, int], None]]:
    """A callback ``(done, total)`` showing the progress of long work on stderr: a bar on a terminal, else
    a line every ``every`` seconds; nothing for work done within ``after`` seconds."""
    start: list[float] = []
    last = [time.monotonic()]
    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if not start:  # the clock starts with the first batch, not with the loading
            start.append(now)
        if now - start[0] < after:
            return
        if err_console.is_terminal:
            if not bar:
                from rich.progress import Progress

                bar["p"] = Progress(console=err_console, transient=True)
                bar["p"].start()
                bar["task"] = bar["p"].add_task(label, total=total if total > 0 else None)
            bar["p"].update(bar["task"], completed=done)
        elif now - last[0] >= every:
            last[0] = now
            of = f"/{total:,}" if total > 0 else ""
            err_console.print(f"{label}: {done:,}{of} images", soft_wrap=True)

    try:
        yield update
    finally:
        if bar:
            bar["p"].stop()


def print_written(path: Any, what: str = "") -> None:
    """``wrote <path>`` on one line, never wrapped, so the path can be copied."""
    out_console.print(f"wrote {path}{f' ({what})' if what else ''}", soft_wrap=True)
