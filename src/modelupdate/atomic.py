"""Atomic file writes (temp file in the same folder, fsync, rename), safe appends, and the output lock,
without importing torch.

Lives apart from ``checkpoint`` (which re-exports it) so that commands working on
prediction files alone (flip-report, compare on .npz/.csv) start in a fraction of a second.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import inspect
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, OutputError
from .launch import is_rank0

TMP_SUFFIX = ".tmp"
# what tempfile.mkstemp puts between prefix and suffix (no dot, so another file's temps never match)
_TEMP_RANDOM = "[a-z0-9_]+"
T = TypeVar("T")


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


def check_output(path: str | Path, option: str, *, suffixes: tuple[str, ...] = (),
                 inputs: Mapping[str, str | Path | None] | None = None, probe: bool = False) -> Path:
    """Fail before any work when ``path`` cannot take what ``option`` writes: a name ending in one of
    ``suffixes``, in an existing folder (one a file can be created in: ``probe``), a regular file or nothing
    there, and none of ``inputs`` (what the command reads, by the option or name that gives it)."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {path}: expected a path ending in {' or '.join(suffixes)}")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is a file, not a folder; expected a path in a writable folder")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: folder {parent} does not exist")
    check_target(path, option)
    for what, given in (inputs or {}).items():
        if given is not None and Path(given).exists() and resolved(given) == resolved(path):
            raise ConfigError(f"{option} {path}: is the {what} file; refusing to overwrite an input")
    if probe:
        try:
            probe_folder(path)
        except OSError as exc:
            raise OutputError(f"{option} {path}: folder {parent} is not writable ({exc.strerror})") from None
    return path


def probe_folder(path: Path) -> None:
    """Create and remove a temp file beside ``path``; OSError where its folder takes none. A real probe:
    os.access says yes to root, and read-only or special file systems (/proc) say yes too."""
    fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    os.close(fd)
    os.unlink(probe)


def open_for_append(path: str | Path, name: str) -> int:
    """Open ``path`` to append to it (created if missing) and return the descriptor: never through a
    symbolic link, never blocking on a FIFO, and only if it is a regular file. ``name``: how errors name it."""
    try:  # O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of waiting for one
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     _file_mode())
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{name}: is a symbolic link; expected a regular file path to write") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise OutputError(f"{name}: is not a regular file; expected a regular file path to write") from None
        raise OutputError(f"{name}: cannot write ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{name}: is not a regular file; expected a regular file path to write")
    return fd


def append_all_or_none(path: str | Path, data: bytes, name: str) -> None:
    """Append ``data`` to the regular file ``path`` (see ``open_for_append``); a failed write is cut off
    again, so the file holds all of ``data`` or none of it."""
    fd = open_for_append(path, name)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise OutputError(f"{name}: cannot append ({exc.strerror})") from None
    finally:
        os.close(fd)


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
    directory = path.parent
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


def atomic_write_many(files: dict[Path, bytes], before_rename: Callable[[], None] | None = None) -> None:
    """Write several files all or none: every temp file is written first, then all are renamed.

    ``before_rename``: a last write that cannot be renamed into place (an append), run once every temp
    file is written; when it raises, no file is renamed.
    """
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            temps.append((_write_temp(Path(path), data), Path(path)))
        if before_rename is not None:
            before_rename()
    except BaseException:  # whatever stops it (a full disk, a failed append, Ctrl-C): no temp file stays
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
    directory = path.parent
    # the name is matched literally: '*' or '?' in an output's name must not reach other files' temps
    pattern = re.compile(re.escape(f".{path.name}.") + _TEMP_RANDOM + re.escape(TMP_SUFFIX))
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        tmp = directory / name
        if pattern.fullmatch(name) and tmp.is_file() and not tmp.is_symlink():
            _unlink(str(tmp))
            removed.append(tmp)
    return removed


@dataclass(frozen=True)
class OutputFiles:
    """Every path a training command writes for ``out`` (the checkpoint), each derived from its name."""

    out: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))

    def _beside(self, suffix: str) -> Path:
        return self.out.with_name(self.out.name.removesuffix(".safetensors") + suffix)

    @property
    def state(self) -> Path:
        """The resumable state of the run."""
        return self._beside(".state.safetensors")

    @property
    def log(self) -> Path:
        """The JSON lines of every step and epoch."""
        return self._beside(".log.jsonl")

    @property
    def members(self) -> Path:
        """The folder ``ensemble-train`` keeps finished members in until the ensemble is written."""
        return self._beside(".members")

    @property
    def lock(self) -> Path:
        """``.<name>.lock``: held while a command writes ``out``."""
        return self.out.with_name(f".{self.out.name}.lock")

    def by_name(self) -> dict[str, Path]:
        """Every path, by how messages name it."""
        return {"--out": self.out, "training state": self.state, "training log": self.log,
                "members folder": self.members, "lock": self.lock}


@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<out>.lock`` beside ``out`` (removed afterwards): a second command
    writing the same ``out`` is refused while this one runs. Under torchrun, rank 0 (the writer) holds it.

    Anything but a regular file at the lock path (a folder, a symbolic link, a FIFO) is refused: it
    would otherwise leave the output unlocked.
    """
    out = Path(out)
    parent = out.parent
    # no folder, or no file name ('', '.'): the output check that follows says so
    if not is_rank0() or not out.name or not parent.is_dir():
        yield
        return
    lock = OutputFiles(Path(out)).lock
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        kind = "a symbolic link" if lock.is_symlink() else "a folder" if lock.is_dir() else "not a regular file"
        raise OutputError(f"--out {out}: its lock path {lock} is {kind}; expected a regular file or nothing "
                          f"(remove it)")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # the lock path itself changed under us
            raise OutputError(f"--out {out}: its lock path {lock} is not a regular file; expected a regular "
                              f"file or nothing (remove it)") from None
        fd = None  # a folder that takes no new file (read-only, /proc): the output check that follows explains
    if fd is None:
        yield
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError(f"--out {out}: its lock path {lock} is not a regular file; expected a regular "
                              f"file or nothing (remove it)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"--out {out}: another command is writing it now (lock {lock}); wait for it or "
                              f"choose another --out") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def holds_output_lock(workflow: Callable[..., T]) -> Callable[..., T]:
    """Run a workflow with its ``out`` argument locked (see ``output_lock``)."""
    signature = inspect.signature(workflow)

    @functools.wraps(workflow)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with output_lock(signature.bind(*args, **kwargs).arguments["out"]):
            return workflow(*args, **kwargs)

    return wrapper


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
