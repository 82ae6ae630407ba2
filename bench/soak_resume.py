#!/usr/bin/env python3
"""Soak the resume promise: kill `ldi-train` (ELODI, --deterministic, CPU, synthetic data) with SIGKILL at
random moments, resume it each time, and compare the final weights with an uninterrupted run.

    .venv/bin/python bench/soak_resume.py --kills 25          # prints kills survived / tried, leftovers

The moments are drawn uniformly over the uninterrupted run's duration (the first ones fall while torch
starts, later ones mid-epoch and, with a state saved every 2 steps, often inside a checkpoint write).
Exit code 0 when every kill resumed to bitwise-identical weights and no temp file is left over.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

COMMON = ["--epochs", "2", "--batch-size", "32", "--checkpoint-every", "2", "--deterministic", "--device", "cpu",
          "--quiet", "--arch", "tiny", "--train-subset", "512"]


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "modelupdate", *map(str, args)]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    return e


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=25)
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    a = p.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    ref = work / "ref.safetensors"
    subprocess.run(cli("ensemble-train", "-m", "2", *COMMON, "--out", ref), check=True, env=env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = ["ldi-train", "--method", "elodi", "--reference", ref, *COMMON]
    full = work / "full" / "m.safetensors"
    full.parent.mkdir()
    t0 = time.monotonic()
    subprocess.run(cli(*command, "--out", full), check=True, env=env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    duration = time.monotonic() - t0

    cut = work / "cut" / "m.safetensors"
    cut.parent.mkdir()
    kills = 0
    attempts = 0
    while kills < a.kills and attempts < 10 * a.kills:
        attempts += 1
        proc = subprocess.Popen(cli(*command, "--out", cut, "--resume"), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(0.2, 1.0) * duration)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        if cut.exists():  # it finished before its kill: start over for the kills still to go
            cut.unlink()
            (cut.parent / "m.log.jsonl").unlink(missing_ok=True)
    rc = subprocess.run(cli(*command, "--out", cut, "--resume"), env=env(), stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    a_w, b_w = load_file(str(full)), load_file(str(cut))
    same = rc == 0 and sorted(a_w) == sorted(b_w) and all(torch.equal(a_w[k], b_w[k]) for k in a_w)
    leftovers = sorted(p.name for p in cut.parent.iterdir() if p.name not in ("m.safetensors", "m.log.jsonl"))
    print(f"soak: {kills} kills (SIGKILL, uniform over a {duration:.1f} s run); final run exit {rc}; "
          f"weights {'bitwise identical' if same else 'DIFFERENT'} to the uninterrupted run; "
          f"leftover files: {leftovers or 'none'}")
    return 0 if same and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
