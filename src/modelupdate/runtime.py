"""Where and how a process computes: the device, the torchrun process group, AMP, collectives.

Library code: it raises domain errors (``ConfigError``) and never prints.
"""

from __future__ import annotations

import atexit
import datetime
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .errors import ConfigError
from .launch import launch


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under the wrappers the runtime adds: DDP, torch.compile."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@dataclass
class Runtime:
    """Where and how this process computes."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda, then mps, then cpu; or the device the user named."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: torch names them, training cannot use them
        raise ConfigError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and (mps is None or not mps.is_available()):
        raise ConfigError("--device mps: no MPS (Apple GPU) device is available here (use --device cpu or auto)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device, join the torchrun process group if there is one, set determinism and AMP."""
    started = launch()
    world, rank, local_rank = started.world, started.rank, started.local_rank
    device = select_device(cfg.device, local_rank)
    if cfg.sync_bn and world > 1 and device.type != "cuda":  # said here, before a members folder or cache exists
        raise ConfigError(f"--sync-bn: SyncBatchNorm needs CUDA devices, not {device.type}; leave it out (each "
                          f"epoch ends with every rank taking rank 0's statistics)")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # long timeout: ensemble-train ranks wait at a barrier while others finish their members
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=24))
        atexit.register(teardown_runtime)  # at the end of the command, however it ends
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // min(world, os.cpu_count() or 1)))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=device, rank=rank, world=world, amp_dtype=amp_dtype(cfg.amp, device))


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16: needs a CUDA device (use bf16 on CPU, or off)")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor of counts over ranks (pooled counts, never averaged rates)."""
    if runtime.distributed:
        values = values.to(runtime.device if runtime.device.type == "cuda" else "cpu")
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()


def reduce_progress(stop: bool, loss_sum: torch.Tensor, count: int, runtime: Runtime) -> tuple[bool, float, int]:
    """Over all ranks (one all-reduce): whether any rank was told to stop, the summed training loss
    and the number of steps it sums. A NaN on one rank makes the sum NaN on all of them."""
    if not runtime.distributed:
        return stop, float(loss_sum), count
    pooled = all_reduce_sum(torch.stack([torch.tensor(float(stop), dtype=torch.float64),
                                         loss_sum.detach().double().cpu(),
                                         torch.tensor(float(count), dtype=torch.float64)]), runtime)
    return bool(pooled[0] > 0), float(pooled[1]), int(pooled[2])


def broadcast_from_main(model: nn.Module, runtime: Runtime) -> None:
    """Give every rank rank 0's weights and buffers, in place.

    Under DDP the gradients are averaged, but BatchNorm running statistics are not:
    each rank's last forward updates them from its own batch. Synced at each epoch
    end, every rank's shard of a sharded evaluation is scored by exactly the model
    that rank 0 saves, so pooled counts equal a single-process evaluation.
    """
    if not runtime.distributed:
        return
    for tensor in unwrap(model).state_dict().values():  # detached views of the module's own storage
        dist.broadcast(tensor, src=0)


def teardown_runtime() -> None:
    """Leave the torchrun process group (if this process joined one), so that torchrun exits cleanly.

    Registered with ``atexit`` by ``setup_runtime``; safe to call more than once.
    """
    if dist.is_available() and dist.is_initialized():
        # Leave together: a rank that tears its connections down while rank 0 is still writing the
        # checkpoint can make rank 0's own teardown fail on a closed peer (exit code != 0).
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
            else:
                dist.barrier()
        except RuntimeError:  # a rank already gone (it failed; torchrun reports that)
            pass
        dist.destroy_process_group()
