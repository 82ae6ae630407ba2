"""What torchrun tells this process about its place in the job, read from the environment in one place.

Torch-free: the CLI's console and the output lock ask before (or without) any process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    rank: int  # RANK: 0 alone
    local_rank: int  # LOCAL_RANK: the device index on this machine
    world: int  # WORLD_SIZE: 1 alone
    local_world: int  # LOCAL_WORLD_SIZE: the processes on this machine


def launch() -> Launch:
    """This process's rank and world as torchrun set them; a process started alone is rank 0 of 1."""
    env = os.environ
    return Launch(rank=int(env.get("RANK", "0")), local_rank=int(env.get("LOCAL_RANK", "0")),
                  world=int(env.get("WORLD_SIZE", "1")), local_world=int(env.get("LOCAL_WORLD_SIZE", "1")))


def is_rank0() -> bool:
    """Whether this process writes the files and prints: rank 0, or a process started alone."""
    return launch().rank == 0
