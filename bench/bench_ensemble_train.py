"""Benchmark: `ensemble-train` of M members via torchrun (2 processes) vs M `train` runs in a row.

Both sides run the real command line in fresh processes, as a user would: M runs of
``modelupdate train --seed S+i`` in sequence, against one
``torchrun --standalone --nproc_per_node 2 -m modelupdate ensemble-train -m M --seed S``,
which trains members S..S+M-1 with the same recipe, spread over the two processes, and
also evaluates the assembled ensemble. Printed: the wall-clock speed-up (sequential /
torchrun; target > 1). Without ``--quick`` a one-process ``ensemble-train`` is timed too,
to show how much of the gain is saved start-up and how much is parallelism.

The default data is the synthetic set (12x12, 1843 training images): at this small scale
Fashion-MNIST's fixed 10,000-image test split, evaluated after every member, would
dominate both sides, unlike a real run where training does. ``--data fashion-mnist
--train-subset N`` runs it on Fashion-MNIST.

    PYTHONPATH=src python bench/bench_ensemble_train.py [--members 4] [--epochs 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_line


def run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"failed ({proc.returncode}): {' '.join(command)}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2, help="torchrun --nproc_per_node")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--arch", default="cnn-m")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--train-subset", default=None, help="passed to both sides, e.g. 4096")
    parser.add_argument("--quick", action="store_true", help="2 members, no one-process run")
    args = parser.parse_args()
    if args.quick:
        args.members = 2

    def options(seed: int) -> list[str]:
        chosen = f"--data {args.data} --arch {args.arch} --epochs {args.epochs} --seed {seed}"
        subset = ["--train-subset", args.train_subset] if args.train_subset else []
        return [*chosen.split(), "--device", "cpu", "--quiet", *subset]

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("OMP_NUM_THREADS", None)  # each side picks its threads as a user's run would
    modelupdate = [sys.executable, "-m", "modelupdate"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    members = ["-m", str(args.members)]
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        command = [*torchrun, str(args.processes), *modelupdate[1:], "ensemble-train", *members]
        seconds["torchrun"] = run(
            [*command, *options(100), "--out", "ens-torchrun.safetensors"], work, env
        )
        start = time.perf_counter()
        for index in range(args.members):
            out = ["--out", f"member{index}.safetensors"]
            run([*modelupdate, "train", *options(100 + index), *out], work, env)
        seconds["sequential"] = time.perf_counter() - start
        if not args.quick:
            command = [*modelupdate, "ensemble-train", *members, *options(100)]
            seconds["one process"] = run([*command, "--out", "ens-one.safetensors"], work, env)

    print(machine_line())
    print(
        f"data={args.data} arch={args.arch} members={args.members} epochs={args.epochs} "
        f"train-subset={args.train_subset or 'all'}"
    )
    rows = [(f"{args.members} sequential train runs", seconds["sequential"], "")]
    if "one process" in seconds:
        rows.append(
            (
                "ensemble-train, one process",
                seconds["one process"],
                f"  (speed-up {seconds['sequential'] / seconds['one process']:.2f}: "
                f"start-up saved)",
            )
        )
    rows.append((f"ensemble-train, torchrun {args.processes} processes", seconds["torchrun"], ""))
    for label, value, note in rows:
        print(f"{label + ':':38s}{value:7.1f} s{note}")
    print(
        f"ensemble-train torchrun/sequential speed-up ratio: "
        f"{seconds['sequential'] / seconds['torchrun']:.2f} (target > 1)"
    )


if __name__ == "__main__":
    main()
