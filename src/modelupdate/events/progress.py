"""Turn engine events into a rich progress bar (terminal) or plain log lines (pipes, --quiet)."""

from __future__ import annotations

import sys
import time
from typing import Any, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text


def clock(seconds: float | None) -> str:
    """Seconds as h:mm:ss (m:ss under an hour); "?" while unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def remaining_seconds(elapsed: float, done_here: int, left: int) -> float | None:
    """Time left at the mean pace of this run so far (steps done before a resume are not counted): steady
    through the pauses of validation, unlike a moving-window estimate."""
    if left <= 0:
        return 0.0
    return elapsed / done_here * left if done_here > 0 and elapsed > 0 else None


class TimesColumn(ProgressColumn):
    """ "elapsed 1:23  left 4:56": both times labelled."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        done_here = int(task.completed) - int(task.fields.get("first", 0))
        left = remaining_seconds(elapsed, done_here, int((task.total or 0) - task.completed))
        return Text(f"elapsed {clock(elapsed)}  left {clock(left)}", style="progress.remaining")


class ProgressPrinter:
    """An engine ``on_event`` handler that draws on stderr."""

    def __init__(self, *, quiet: bool = False, label: str = "train", console: Console | None = None):
        self.console = console or Console(stderr=True, markup=False, highlight=False, emoji=False)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.label = label
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_line = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        name = event.get("member_label") or self.label
        if kind == "start":
            self._start(event, name)
        elif kind == "step":
            self._step(event, name)
        elif kind == "epoch":
            self._line(_epoch_line(name, event))
        elif kind == "resume":
            self._line(_resume_line(name, event))
        elif kind == "done":
            self._stop()
        elif kind == "message":
            self._line(f"{name}: {event['text']}")

    def _start(self, event: dict[str, Any], name: str) -> None:
        self._stop()
        done = event["start_epoch"] * event["steps_per_epoch"] + event["start_step"]
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimesColumn(), console=self.console, transient=False)
            self.progress.start()
            self.task = self.progress.add_task(name, total=event["total_steps"], completed=done, info="", first=done)
        else:
            self._line(f"{name}: {event['n_train']} training samples, {event['epochs']} epochs x "
                       f"{event['steps_per_epoch']} steps on {event['device']}"
                       + (f" x {event['world']} processes" if event.get("world", 1) > 1 else ""))

    def _step(self, event: dict[str, Any], name: str) -> None:
        info = f"loss {event['loss']:.4f}  {event['images_per_second']:.0f} img/s"
        if self.progress is not None:
            self.progress.update(cast(TaskID, self.task), completed=event["global_step"], info=info)
        elif not self.quiet and time.monotonic() - self.last_line > 10:
            self.last_line = time.monotonic()
            self._line(f"{name}: epoch {event['epoch'] + 1} step {event['step']}/{event['steps_per_epoch']}  {info}")

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _epoch_line(name: str, e: dict[str, Any]) -> str:
    parts = [f"{name}: epoch {e['epoch']}", f"train loss {e['train_loss']:.4f}"]
    if e.get("val_error_rate") is not None:
        parts.append(f"val ER {100 * e['val_error_rate']:.2f}%")
    if e.get("val_nfr") is not None:
        parts.append(f"val NFR {100 * e['val_nfr']:.2f}%")
    parts.append(f"{e['epoch_seconds']:.1f}s")
    return "  ".join(parts)


def _resume_line(name: str, event: dict[str, Any]) -> str:
    if event.get("epochs") is not None and event["epoch"] >= event["epochs"]:  # saved after the last epoch
        return f"{name}: resuming after the last epoch: every epoch is trained, writing the model ({event['path']})"
    return f"{name}: resuming from epoch {event['epoch'] + 1}, step {event['step']} ({event['path']})"
