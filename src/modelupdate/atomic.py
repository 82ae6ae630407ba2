"""Atomic file writes (temp file in the same folder, fsync, rename), without importing torch.

Lives apart from ``checkpoint`` (which re-exports it) so that commands working on
prediction files alone (flip-report, compare on .npz/.csv) start in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .errors import OutputError

TMP_SUFFIX = ".tmp"


def check_target(path: str | Path, option: str | None = None) -> Path:
    """Refuse to write over anything but a regular file: a symlink, a device, a folder, a FIFO."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    if path.is_symlink():
        raise OutputError(f"{name}: is a symbolic link; expected a regular file path to write")
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise OutputError(f"{name}: is {kind}; expected a regular file path to write")
    return path


def resolved(path: str | Path) -> Path:
    """The path with symbolic links followed; a loop or a broken link stays as given (readers say why)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return Path(path).absolute()


def _file_mode() -> int:
    """0666 less the process umask: what open() would give a new file (mkstemp gives 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_temp(path: Path, data: bytes) -> str:
    check_target(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{path}: cannot write (folder {directory} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    return tmp


def _unlink(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it (mode as the umask allows)."""
    atomic_write_many({Path(path): data})


def atomic_write_many(files: dict[Path, bytes]) -> None:
    """Write several files all or none: every temp file is written first, then all are renamed."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            temps.append((_write_temp(Path(path), data), Path(path)))
    except OutputError:
        for tmp, _ in temps:
            _unlink(tmp)
        raise
    for tmp, path in temps:
        try:
            os.replace(tmp, path)
        except OSError as exc:
            for t, _ in temps:
                _unlink(t)
            raise OutputError(f"{path}: cannot write ({exc.strerror})") from None


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temp files an interrupted write of ``path`` left beside it (call with ``path`` locked)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    removed = []
    for tmp in directory.glob(f".{path.name}.*{TMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            _unlink(str(tmp))
            removed.append(tmp)
    return removed


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
