"""runtime.py on one CPU process (no torchrun): device choice, AMP, and collectives that are the identity there.

The collectives over several processes are exercised under torchrun by tests/test_distributed.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from torch import nn

from modelupdate.config import TrainConfig
from modelupdate.errors import ConfigError
from modelupdate.runtime import (
    Runtime,
    all_reduce_sum,
    broadcast_from_main,
    reduce_progress,
    select_device,
    setup_runtime,
    teardown_runtime,
)

CPU = torch.device("cpu")
DEVICE_MESSAGE = "--device: expected auto, cpu, cuda, cuda:N or mps, got {!r}"


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_runtime_roles_and_autocast():
    single = Runtime(CPU)
    assert (single.rank, single.world, single.amp_dtype) == (0, 1, None)
    assert not single.distributed and single.is_main
    worker = Runtime(CPU, rank=3, world=4)
    assert worker.distributed and not worker.is_main
    assert Runtime(CPU, rank=0, world=4).is_main

    a, b = torch.ones(4, 4), torch.ones(4, 4)
    with single.autocast():
        assert (a @ b).dtype == torch.float32  # no AMP: computed as given
    with Runtime(CPU, amp_dtype=torch.bfloat16).autocast():
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32  # only inside the context


def test_select_device_names():
    assert select_device("cpu") == CPU
    assert select_device("cpu:0").type == "cpu"
    for name in ("CPU", "meta", "abacus:1", "cuda:x"):
        with pytest.raises(ConfigError) as info:
            select_device(name)
        assert str(info.value) == DEVICE_MESSAGE.format(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")
def test_select_device_refuses_an_absent_cuda():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=r"^--device cuda: no CUDA device is available here"):
            select_device(name)
    if not (torch.backends.mps.is_available()):
        with pytest.raises(ConfigError, match=r"^--device mps: no MPS \(Apple GPU\) device is available here"):
            select_device("mps")


def test_setup_runtime_on_one_cpu_process(no_torchrun):
    plain = setup_runtime(TrainConfig(arch="tiny", device="cpu"))
    assert plain == Runtime(device=CPU, rank=0, world=1, amp_dtype=None)
    assert setup_runtime(TrainConfig(arch="tiny", device="cpu", amp="bf16")).amp_dtype is torch.bfloat16
    assert setup_runtime(TrainConfig(arch="tiny", device="cpu", amp="auto")).amp_dtype is None  # auto: CUDA only
    with pytest.raises(ConfigError, match=r"^--amp fp16: needs a CUDA device"):
        setup_runtime(TrainConfig(arch="tiny", device="cpu", amp="fp16"))
    assert not dist.is_initialized()  # one process joins no process group


def test_reductions_are_the_identity_without_a_process_group():
    runtime = Runtime(CPU)
    counts = torch.tensor([3, 4, 0], dtype=torch.int64)
    summed = all_reduce_sum(counts, runtime)
    assert summed.dtype == torch.int64 and summed.device.type == "cpu" and summed.tolist() == [3, 4, 0]

    stop, loss, steps = reduce_progress(True, torch.tensor(2.5, dtype=torch.float64), 7, runtime)
    assert (stop, loss, steps) == (True, 2.5, 7)
    assert type(stop) is bool and type(loss) is float and type(steps) is int
    stop, loss, steps = reduce_progress(False, torch.tensor(float("nan")), 0, runtime)
    assert stop is False and math.isnan(loss) and steps == 0


def test_broadcast_and_teardown_do_nothing_in_one_process():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[1].running_mean.fill_(0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    broadcast_from_main(model, Runtime(CPU))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert after["1.running_mean"].tolist() == [0.25, 0.25]
    teardown_runtime()
    teardown_runtime()  # safe more than once, with no process group to leave
    assert not dist.is_initialized()
