"""Image folders too large to hold in memory, read from disk batch by batch.

A ``StreamSplit`` stands where an in-memory ``Split`` does: it has the same targets, ids and
names, and hands batches.py the same uint8 batches ``[B, 3, S, S]`` (decoded by folders.py, as
the in-memory loader decodes them), but reads them from disk in a torch ``DataLoader`` with
``workers`` processes. batches.py gives it the list of index batches of an epoch from a start
step on (``train_order``, so the order per seed, epoch and rank is the in-memory path's); the
skipped batches are never read. Augmentation and normalisation then happen in batches.py on
the device, from the step's seed, exactly as for data in memory.

Nothing is listed until it is needed: ``len()`` comes from the folder's fingerprint summary,
and the files of a split are listed the first time its targets, ids or images are asked for.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import DataError
from ..launch import local_world
from .folders import MAX_IMAGE_PIXELS, list_split, read_square

MAX_DEFAULT_WORKERS = 8


def decoded_bytes(count: int, size: int) -> int:
    """Bytes of ``count`` images decoded as uint8 [3, size, size]."""
    return count * 3 * size * size


def should_stream(stream: bool, train_count: int, size: int, budget_gib: float) -> bool:
    """Stream when asked to, or when the decoded training set would exceed the budget (GiB)."""
    return stream or decoded_bytes(train_count, size) > budget_gib * 2**30


def default_workers(cpus: int | None = None, local_processes: int | None = None) -> int:
    """Loader processes per training process when ``--workers`` is not given: the cores this process may
    use, shared by the processes of this machine (torchrun's LOCAL_WORLD_SIZE), less one for the training
    loop itself; at least 1, at most 8."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if local_processes is None:
        local_processes = local_world()
    return max(1, min(MAX_DEFAULT_WORKERS, cpus // max(1, local_processes) - 1))


@dataclass(frozen=True)
class FileRows:
    """The samples of a split on disk: ``names`` (bytes [N_all], paths under the root of the whole listing,
    which ids index), ``targets`` and ``ids`` (int64 [N]). Arrays, not lists of str: forked loader
    processes then share them instead of copying every string they touch."""

    names: np.ndarray
    targets: torch.Tensor
    ids: torch.Tensor

    def subset(self, index: torch.Tensor) -> FileRows:
        return FileRows(self.names, self.targets[index], self.ids[index])


def folder_rows(root: Path, sub: str, classes: list[str], expected: int) -> FileRows:
    """List PATH/sub; ``expected``: the count its fingerprint was computed on (a DataError if it changed)."""
    names, targets = list_split(root, sub, classes)
    if len(names) != expected:
        raise DataError(f"--data imagefolder:{root}: {root / sub} now holds {len(names)} images, {expected} when "
                        f"its fingerprint was cached; delete its listing cache (under --cache-dir, by default "
                        f"~/.cache/modelupdate/imagefolder/) and rerun")
    encoded = np.array([n.encode() for n in names], dtype=np.bytes_) if names else np.zeros(0, dtype="S1")
    return FileRows(encoded, torch.tensor(targets, dtype=torch.long), torch.arange(len(names)))


class StreamSplit:
    """One split of an image folder, read from disk on demand (see the module docstring).

    ``count``: its number of samples, known before listing; ``rows()``: lists it (called once, when needed).
    """

    def __init__(self, root: Path, size: int, workers: int, count: int, rows: Callable[[], FileRows],
                 max_pixels: int = MAX_IMAGE_PIXELS):
        self.root, self.size, self.workers, self.count = Path(root), size, workers, count
        self.max_pixels = max_pixels
        self._rows_of = rows
        self._loader: StepLoader | None = None

    def __len__(self) -> int:
        return self.count

    @cached_property
    def rows(self) -> FileRows:
        return self._rows_of()

    @property
    def targets(self) -> torch.Tensor:
        return self.rows.targets

    @property
    def ids(self) -> torch.Tensor:
        return self.rows.ids

    @cached_property
    def id_names(self) -> tuple[str, ...]:
        """The name of the sample with id ``i`` (its path under the root) is ``id_names[i]``, as in a Split."""
        return tuple(n.decode() for n in self.rows.names.tolist())

    def subset(self, index: torch.Tensor) -> StreamSplit:
        """The samples at ``index`` (positions in this split), listed when the subset is first read."""
        index = torch.as_tensor(index, dtype=torch.long)
        return StreamSplit(self.root, self.size, self.workers, len(index), lambda: self.rows.subset(index),
                           self.max_pixels)

    def sample_ids(self, ids: torch.Tensor | None = None) -> list[str]:
        """The names of ``ids`` (default: this split's samples, in order): paths under the root."""
        values = (self.ids if ids is None else ids).tolist()
        return [self.rows.names[i].decode() for i in values]

    def image_batches(self, plan: Sequence[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """uint8 [len(idx), 3, S, S] for each ``idx`` of ``plan`` (positions in this split), in order; pinned
        (for a non-blocking copy) when ``device`` is a GPU. A DataError names an unreadable file."""
        pin = device.type == "cuda"
        if self._loader is None or self._loader.pin != pin:
            folder = FolderImages(str(self.root), self.rows.names, self.rows.ids.numpy(), self.size, self.max_pixels)
            self._loader = StepLoader(folder, self.workers, pin)
        for images, error in self._loader.run(plan):
            if error:
                raise DataError(f"--data imagefolder:{self.root}: {error}")
            yield images


class FolderImages(torch.utils.data.Dataset):
    """What a loader process does for one step: decode the images of a batch of rows."""

    def __init__(self, root: str, names: np.ndarray, ids: np.ndarray, size: int, max_pixels: int = MAX_IMAGE_PIXELS):
        self.root, self.names, self.ids, self.size, self.max_pixels = root, names, ids, size, max_pixels

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, str]:
        """uint8 [B, 3, S, S] and "" ; or an empty batch and the error (a worker's exception would reach
        the user wrapped in a traceback: the main process raises it as one line instead)."""
        out = torch.empty(len(rows), 3, self.size, self.size, dtype=torch.uint8)
        for k, row in enumerate(rows.tolist()):
            path = os.path.join(self.root, self.names[self.ids[row]].decode())
            try:
                out[k] = read_square(path, self.size, self.max_pixels)
            except DataError as exc:
                return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8), str(exc)
        return out, ""


class StepLoader:
    """A DataLoader over index batches whose plan changes per epoch; its worker processes persist."""

    def __init__(self, images: FolderImages, workers: int, pin: bool):
        self.plan: Sequence[torch.Tensor] = ()
        self.pin = pin
        self.loader = DataLoader(images, batch_size=None, sampler=_PlanSampler(self), num_workers=workers,
                                 pin_memory=pin, persistent_workers=workers > 0,
                                 worker_init_fn=_start_worker if workers > 0 else None)

    def run(self, plan: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, str]]:
        self.plan = plan
        if len(plan):
            yield from self.loader


class _PlanSampler(torch.utils.data.Sampler):
    """Yields the loader's current plan (read in the main process at the start of each pass)."""

    def __init__(self, owner: StepLoader):
        self.owner = owner

    def __iter__(self):
        return iter(self.owner.plan)

    def __len__(self) -> int:
        return len(self.owner.plan)


def _start_worker(worker_id: int) -> None:
    """Ctrl-C reaches every process of the terminal: the training process finishes its step and saves, so
    its loader processes ignore it (they end with it; SIGTERM still ends them). On Linux a loader process
    also dies the moment its training process does (SIGKILL): a forked one shares the training process's
    open files, among them the lock on ``--out``, which a ``--resume`` right after a kill must get."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes
        import multiprocessing

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        parent = multiprocessing.parent_process()
        if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
            os._exit(1)


def stream_splits(root: Path, classes: list[str], counts: dict[str, int], size: int, workers: int | None,
                  max_pixels: int = MAX_IMAGE_PIXELS) -> dict[str, StreamSplit]:
    """Each split folder of an image folder (``counts``' keys: train and val/test), unlisted yet; ``counts``
    from its fingerprint summary."""
    n = default_workers() if workers is None else workers

    def split(sub: str) -> StreamSplit:
        return StreamSplit(root, size, n, counts[sub], lambda: folder_rows(root, sub, classes, counts[sub]),
                           max_pixels)

    return {sub: split(sub) for sub in counts}
