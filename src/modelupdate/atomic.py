"""Atomic file writes (temp file in the same folder, fsync, rename), without importing torch.

Lives apart from ``checkpoint`` (which re-exports it) so that commands working on
prediction files alone (flip-report, compare on .npz/.csv) start in a fraction of a second.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{path}: cannot write (folder {directory} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
