"""What a training run reports as it goes, and where it goes.

The engine emits events: JSON-ready dicts with a ``type`` (``config``, ``start``, ``step``, ``epoch``,
``resume``, ``done``) and the numbers of that moment (docs/api.md lists them). Sinks take them: the JSON lines
beside the checkpoint (``jsonl.JsonlLog``), the progress bar or plain lines (``progress.ProgressPrinter``),
TensorBoard and MLflow (``tracking.Tracking``); ``tee`` hands each event to several.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
EventHandler = Callable[[Event], None]


def tee(*handlers: EventHandler | None) -> EventHandler:
    """One handler calling each given handler in turn."""
    chosen = [h for h in handlers if h is not None]

    def handle(event: Event) -> None:
        for handler in chosen:
            handler(event)

    return handle
