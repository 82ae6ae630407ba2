"""The training log: every step, epoch, resume and the final record as JSON lines beside the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import open_for_append
from ..errors import OutputError
from . import Event, EventHandler


class JsonlLog:
    """Per-step and per-epoch JSON lines beside the checkpoint (rank 0 only); forwards every event."""

    def __init__(self, path: Path | None, forward: EventHandler | None, extra: dict[str, Any] | None = None):
        self.path, self.forward, self.extra = path, forward, extra or {}

    def __call__(self, event: Event) -> None:
        if self.path is not None and event.get("type") in ("step", "epoch", "resume", "done"):
            try:  # never through a link or into a FIFO (the check before training looked; this is the backstop)
                with open(self.path, "a", opener=lambda path, _: open_for_append(path, str(path))) as f:
                    f.write(json.dumps(self.extra | event, sort_keys=True) + "\n")
            except OSError as exc:  # e.g. the disk filled up during training
                raise OutputError(f"{self.path}: cannot write the training log ({exc.strerror})") from None
        if self.forward is not None:
            self.forward(self.extra | event)
