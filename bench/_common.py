"""Shared pieces of the benchmarks: the data they train on, timing, and a line about the machine.

Not a benchmark itself. Each bench script puts its own folder on ``sys.path`` (Python does
that for ``python bench/x.py``) and imports this module as ``_common``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from modelupdate.config import DataConfig
from modelupdate.data import Dataset, Split, load_dataset
from modelupdate.errors import DataError

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def bench_data(n_train: int, *, seed: int = 0, data: str = "auto") -> Dataset:
    """``n_train`` training images of Fashion-MNIST (synthetic 28x28, 10 classes when it is absent).

    The validation split is empty, so that a timed ``fit`` measures training alone (``fit``
    skips an empty validation split); the test split is kept.
    """
    dataset = None
    if data in ("auto", "fashion-mnist"):
        try:
            dataset = load_dataset(DataConfig(name="fashion-mnist", val_fraction=0.0))
        except DataError:
            if data == "fashion-mnist":
                raise
    if dataset is None:
        dataset = load_dataset(
            DataConfig(
                name="synthetic",
                val_fraction=0.0,
                synthetic_size=28,
                synthetic_classes=10,
                synthetic_train=max(n_train, 1024),
                synthetic_test=1024,
            )
        )
    order = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(seed))
    train = dataset.train.subset(order[:n_train].sort().values)
    empty = dataset.train.subset(torch.empty(0, dtype=torch.long))
    return Dataset(dataset.info, train, Split(empty.images, empty.targets, empty.ids), dataset.test)


# The clock every timing here reads: wall-clock by default; see use_cpu_time.
CLOCK = {"read": time.perf_counter, "name": "wall-clock"}


def use_cpu_time() -> None:
    """Time by this process's CPU time, on one thread, instead of by the wall clock.

    For a shared machine: CPU time does not count the time other processes hold the
    cores, which wall-clock timings on a busy machine are mostly made of. One thread,
    because with several an OpenMP thread waiting for a descheduled sibling spins and
    bills that wait as CPU time. What is left (caches, memory bandwidth shared with
    the other processes) still varies, much less. Not for GPU work.
    """
    torch.set_num_threads(1)
    CLOCK["read"], CLOCK["name"] = time.process_time, "CPU time, 1 thread"


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call, on ``CLOCK``."""
    read = CLOCK["read"]
    start = read()
    fn()
    return read() - start


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each candidate, ``repeats`` rounds, candidates alternating within a round.

    On a shared, noisy machine the load drifts over minutes; alternating the candidates
    lets a drift hit all of them alike instead of whichever ran last.
    """
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            seconds[name].append(timed(fn))
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def best(values: list[float]) -> float:
    """The fastest of several timings: other processes can only add time, never remove it,
    so on a shared machine the minimum is the least disturbed estimate (as ``timeit`` advises)."""
    return min(values)


def spread(values: list[float]) -> str:
    """min-max of a list of ratios or times, for the record."""
    return f"{min(values):.2f}-{max(values):.2f}"


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {gpu}; load average {load[0]:.1f}"
        f"{' (above the core count: shared, noisy timings)' if load[0] > (os.cpu_count() or 1) else ''}; "
        f"clock: {CLOCK['name']}"
    )
