"""Benchmark: the engine's training loop (`fit`) vs a minimal hand-written PyTorch loop.

Both train the same model (cnn-m, fresh from one seed) on the same data tensors, at the
same batch size, with the same augmentation work (``augment_batch`` + ``normalize`` of
each batch) and SGD with nesterov momentum. What the engine adds on top — a resumable
per-step RNG, the DistributedSampler-based order, an lr schedule, a finite-loss check,
progress events — is what this ratio prices. Rounds alternate the two, and the printed
ratio is that of each side's fastest run (``best``: on a shared machine other processes
only ever add time); the per-round ratios are shown beside it. Target: >= 0.95.

    PYTHONPATH=src python bench/bench_engine.py [--images 1024] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _common import bench_data, best, interleaved, machine_line, spread, use_cpu_time
from torch import nn

from modelupdate.config import TrainConfig
from modelupdate.data import Dataset, augment_batch, normalize
from modelupdate.engine import fit
from modelupdate.models import build_model
from modelupdate.runtime import setup_runtime


def minimal_loop(model: nn.Module, data: Dataset, cfg: TrainConfig) -> int:
    """The shortest honest loop: shuffle, augment + normalise, forward, CE, backward, SGD step."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.resolved_lr(),
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    split, info, bs = data.train, data.info, cfg.batch_size
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(split), generator=generator)
    model.train()
    steps = len(split) // bs  # full batches only, as fit does
    for step in range(steps):
        idx = order[step * bs : (step + 1) * bs]
        images = normalize(augment_batch(split.images[idx].to(device), info.augment, generator), info)
        loss = F.cross_entropy(model(images), split.targets[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * bs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="training images per timed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6, help="rounds of (engine, minimal)")
    parser.add_argument("--arch", default="cnn-m")
    parser.add_argument("--data", default="auto", choices=["auto", "fashion-mnist", "synthetic"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by process CPU time on 1 thread (steadier on a shared machine)",
    )
    parser.add_argument("--quick", action="store_true", help="512 images, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 512, 3
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        use_cpu_time()

    data = bench_data(args.images, data=args.data)
    cfg = TrainConfig(arch=args.arch, epochs=1, batch_size=args.batch_size, device=args.device, checkpoint_every=0)
    runtime = setup_runtime(cfg)
    info = data.info

    def fresh_model() -> nn.Module:
        torch.manual_seed(0)
        return build_model(args.arch, info.num_classes, info.input_shape).to(runtime.device)

    def engine() -> None:
        fit(fresh_model(), data, cfg, runtime)

    def minimal() -> None:
        minimal_loop(fresh_model(), data, cfg)

    warm = bench_data(2 * args.batch_size, data=args.data)  # first-call allocations, untimed
    fit(fresh_model(), warm, cfg, runtime)
    minimal_loop(fresh_model(), warm, cfg)

    seconds = interleaved({"engine": engine, "minimal": minimal}, args.repeats)
    images = (args.images // args.batch_size) * args.batch_size
    ratios = [m / e for e, m in zip(seconds["engine"], seconds["minimal"], strict=True)]  # throughput ratio
    print(machine_line())
    print(f"data={info.name} arch={args.arch} images={images} batch={args.batch_size} rounds={args.repeats}")
    print(f"engine fit:   {images / best(seconds['engine']):8.1f} images/s (best run)")
    print(f"minimal loop: {images / best(seconds['minimal']):8.1f} images/s (best run)")
    ratio = best(seconds["minimal"]) / best(seconds["engine"])
    print(f"engine/minimal throughput ratio: {ratio:.2f} (target >= 0.95; rounds {spread(ratios)})")


if __name__ == "__main__":
    main()
