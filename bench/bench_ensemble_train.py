"""Benchmark: `ensemble-train` of M members via torchrun (2 processes) vs M `train` runs in a row.

Both sides run the real command line in fresh processes, as a user would: M runs of
``modelupdate train --seed S+i`` in sequence, against one
``torchrun --standalone --nproc_per_node 2 -m modelupdate ensemble-train -m M --seed S``,
which trains members S..S+M-1 with the same recipe, spread over the two processes, and
also evaluates the assembled ensemble. Printed: the wall-clock speed-up (sequential /
torchrun; target > 1), and the CPU seconds each side used (all its processes), which
the load of other processes on a shared machine hardly changes: the CPU saved is
start-up and data loading done once instead of M times. Without ``--quick`` a
one-process ``ensemble-train`` is timed too, to show how much of the gain is saved
start-up and how much is parallelism. With ``--rounds N`` the sides take turns N times
and each side's fastest round counts.

The default data is the synthetic set (12x12, 1843 training images): at this small scale
Fashion-MNIST's fixed 10,000-image test split, evaluated after every member, would
dominate both sides, unlike a real run where training does. ``--data fashion-mnist
--train-subset N`` runs it on Fashion-MNIST.

    PYTHONPATH=src python bench/bench_ensemble_train.py [--members 4] [--epochs 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_line


def children_cpu() -> float:
    """CPU seconds of every finished child process (and theirs: torchrun waits for its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_all(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``commands`` one after another; (wall seconds, CPU seconds) of them all."""
    start, cpu = time.perf_counter(), children_cpu()
    for command in commands:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2, help="torchrun --nproc_per_node")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--arch", default="cnn-m")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--train-subset", default=None, help="passed to both sides, e.g. 4096")
    parser.add_argument("--rounds", type=int, default=1, help="turns of each side; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="2 members, no one-process run")
    args = parser.parse_args()
    if args.quick:
        args.members = 2

    def options(seed: int, out: str) -> list[str]:
        chosen = f"--data {args.data} --arch {args.arch} --epochs {args.epochs} --seed {seed} --out {out}"
        subset = ["--train-subset", args.train_subset] if args.train_subset else []
        return [*chosen.split(), "--device", "cpu", "--quiet", *subset]

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("OMP_NUM_THREADS", None)  # each side picks its threads as a user's run would
    modelupdate = [sys.executable, "-m", "modelupdate"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    ensemble = ["ensemble-train", "-m", str(args.members)]
    sides = {
        "torchrun": [
            [*torchrun, str(args.processes), *modelupdate[1:], *ensemble, *options(100, "ens-tr.safetensors")]
        ],
        "sequential": [[*modelupdate, "train", *options(100 + i, f"m{i}.safetensors")] for i in range(args.members)],
    }
    if not args.quick:
        sides["one process"] = [[*modelupdate, *ensemble, *options(100, "ens-one.safetensors")]]
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, commands in sides.items():
            with tempfile.TemporaryDirectory() as tmp:
                seconds, cpu_seconds = run_all(commands, Path(tmp), env)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    best = {name: min(values) for name, values in wall.items()}
    used = {name: min(values) for name, values in cpu.items()}

    print(machine_line())
    print(
        f"data={args.data} arch={args.arch} members={args.members} epochs={args.epochs} "
        f"train-subset={args.train_subset or 'all'} rounds={args.rounds}"
    )
    labels = {
        "sequential": f"{args.members} sequential train runs",
        "one process": "ensemble-train, one process",
        "torchrun": f"ensemble-train, torchrun {args.processes} processes",
    }
    for name in ("sequential", "one process", "torchrun"):
        if name in best:
            print(f"{labels[name] + ':':38s}{best[name]:7.1f} s wall, {used[name]:7.1f} s CPU")
    if "one process" in best:
        print(f"ensemble-train one-process/sequential speed-up ratio: {best['sequential'] / best['one process']:.2f}")
    print(
        f"ensemble-train torchrun/sequential speed-up ratio: {best['sequential'] / best['torchrun']:.2f} "
        f"(target > 1; CPU seconds sequential/torchrun: {used['sequential'] / used['torchrun']:.2f})"
    )


if __name__ == "__main__":
    main()
