"""Run tracking: the engine's step and epoch records (the ones the JSONL log holds) sent to TensorBoard.

Off by default; ``tensorboard`` is an optional package (``pip install 'modelupdate[tracking]'``). The
writer is created at the first record, so only the process that receives records (rank 0) writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError

Event = dict[str, Any]
# counters and positions, not measurements: they index the scalars instead
STEP_KEYS = {"type", "epoch", "step", "steps_per_epoch", "global_step", "total_steps", "member_label"}
EPOCH_KEYS = {"type", "epoch", "member_label"}
INSTALL_HINT = "--tensorboard: needs the tensorboard package; pip install 'modelupdate[tracking]' (or tensorboard)"


def check_tensorboard(logdir: Path) -> None:
    """Fail before training, in one line, when the package is missing or ``logdir`` cannot be a folder."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    logdir = Path(logdir)
    if logdir.exists() and not logdir.is_dir():
        raise ConfigError(f"--tensorboard {logdir}: is a file; expected a folder (created if missing)")
    parent = next((p for p in logdir.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--tensorboard {logdir}: {parent} is a file; expected a folder")


def scalars(event: Event, skip: set[str]) -> dict[str, float]:
    """The record's finite numbers (booleans and text left out), by name."""
    return {k: float(v) for k, v in event.items() if k not in skip and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(float(v))}


def tag_prefix(event: Event) -> str:
    """``member 2/4`` -> ``member2/``: an ensemble's members get their own curves."""
    label = event.get("member_label")
    return re.sub(r"[^A-Za-z0-9_.-]", "", label.split("/")[0]) + "/" if label else ""


class TensorBoardTracker:
    """An ``on_event`` handler writing step records at their global step and epoch records at their epoch."""

    def __init__(self, logdir: Path):
        check_tensorboard(logdir)
        self.logdir = Path(logdir)
        self.writer = None

    def __call__(self, event: Event) -> None:
        kind = event.get("type")
        if kind not in ("step", "epoch", "done"):
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.logdir))
        prefix = tag_prefix(event)
        if kind == "step":
            for name, value in scalars(event, STEP_KEYS).items():
                self.writer.add_scalar(f"{prefix}step/{name}", value, int(event["global_step"]))
        elif kind == "epoch":
            for name, value in scalars(event, EPOCH_KEYS).items():
                self.writer.add_scalar(f"{prefix}epoch/{name}", value, int(event["epoch"]))
        if kind != "step":  # to disk once an epoch, not at every logged step
            self.writer.flush()


def tee(*handlers: Callable[[Event], None] | None) -> Callable[[Event], None]:
    """One handler calling each given handler in turn."""
    chosen = [h for h in handlers if h is not None]

    def handle(event: Event) -> None:
        for handler in chosen:
            handler(event)

    return handle
