"""What torchrun tells this process about its place in the job, read from the environment in one place.

Torch-free: the CLI's console and the output lock ask before (or without) any process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Launch:
    rank: int  # RANK: 0 alone
    local_rank: int  # LOCAL_RANK: the device index on this machine
    world: int  # WORLD_SIZE: 1 alone


def _number(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"${name}: expected an integer (torchrun sets it), got {text!r}") from None


def launch() -> Launch:
    """This process's rank and world as torchrun set them; a process started alone is rank 0 of 1."""
    return Launch(rank=_number("RANK", 0), local_rank=_number("LOCAL_RANK", 0), world=_number("WORLD_SIZE", 1))


def local_world() -> int:
    """The processes torchrun started on this machine (1 alone)."""
    return _number("LOCAL_WORLD_SIZE", 1)


def is_rank0() -> bool:
    """Whether this process writes the files and prints: rank 0, or a process started alone. Only RANK is read,
    as text: it is asked on every path, error paths included, where nothing may fail."""
    return os.environ.get("RANK", "0") == "0"
