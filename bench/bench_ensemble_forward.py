"""Time an ensemble reference's forward: batched (vmap over stacked weights) vs loop.

Not a test: prints both times and their ratio (batched time / loop time; below 1
means the batched path is faster), and the mode ``auto`` picks on the device.

    PYTHONPATH=src python bench/bench_ensemble_forward.py --members 4 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from modelupdate.reference import EnsembleReference


def build_member(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The package's model when it is available, else a local stand-in of the same shape."""
    try:
        from modelupdate.models import build_model
    except ImportError:
        return _LocalCNN(num_classes, input_shape[0])
    return build_model(arch, num_classes, input_shape)


class _LocalCNN(nn.Module):
    """Like ``cnn-m``: 3 stages (32, 64x2, 128) of conv-BN-ReLU, max-pool between, GAP, linear."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for index, stage in enumerate([[32], [64, 64], [128]]):
            for cout in stage:
                layers += [
                    nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                ]
                cin = cout
            if index < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def time_forwards(
    references: list[EnsembleReference], x: torch.Tensor, *, warmup: int, repeats: int, clock=time.perf_counter
) -> list[list[float]]:
    """Seconds of each forward of each reference, after ``warmup`` untimed calls.

    The references take turns within each repeat, so that a drift in the machine's load
    (a shared machine) hits them alike.
    """
    for reference in references:
        for _ in range(warmup):
            reference(x)
    seconds: list[list[float]] = [[] for _ in references]
    for _ in range(repeats):
        for reference, times in zip(references, seconds, strict=True):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = clock()
            reference(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(clock() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--arch", default="cnn-m")
    parser.add_argument("--input-shape", default="1,28,28", help="C,H,W")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--cpu-time", action="store_true", help="time by process CPU time on 1 thread (steadier on a shared machine)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter
    if args.cpu_time:  # see bench/_common.py use_cpu_time
        torch.set_num_threads(1)
        clock = time.process_time

    input_shape = tuple(int(n) for n in args.input_shape.split(","))
    device = torch.device(args.device)
    torch.manual_seed(0)
    members = [build_member(args.arch, args.num_classes, input_shape) for _ in range(args.members)]
    loop = EnsembleReference(members, mode="loop").to(device)
    batched = EnsembleReference(members, mode="batched").to(device)  # same member objects
    x = torch.randn(args.batch_size, *input_shape, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        loop.to(memory_format=torch.channels_last)

    difference = (batched(x) - loop(x)).abs().max().item()
    loop_times, batched_times = time_forwards([loop, batched], x, warmup=args.warmup, repeats=args.repeats, clock=clock)

    print(
        f"device={device} threads={torch.get_num_threads()} "
        f"arch={type(members[0]).__name__}({args.arch}) members={args.members} "
        f"batch={args.batch_size} input={args.input_shape} repeats={args.repeats} "
        f"clock={'CPU time' if args.cpu_time else 'wall'}"
    )
    print(f"max |batched - loop| logit difference: {difference:.2e}")
    for name, times in (("loop", loop_times), ("batched", batched_times)):
        print(
            f"{name + ' forward:':17s}{min(times) * 1e3:9.2f} ms best, {statistics.median(times) * 1e3:9.2f} ms median"
        )
    # The best runs are the least disturbed by other processes on a shared machine.
    ratio = min(batched_times) / min(loop_times)
    median_ratio = statistics.median(batched_times) / statistics.median(loop_times)
    print(f"batched/loop time ratio: {ratio:.2f} (best runs; medians {median_ratio:.2f}; below 1: batched is faster)")
    auto = EnsembleReference(members, mode="auto").to(device)
    print(
        f"mode='auto' uses on {device.type}: {auto.active_mode}"
        f"{f' ({auto.fallback_reason})' if auto.fallback_reason else ''}"
    )


if __name__ == "__main__":
    main()
