#!/usr/bin/env python3
"""Soak the resume promise: kill `ldi-train` (ELODI, --deterministic, CPU, synthetic data) with SIGKILL at
random moments, resume it each time, and compare the final weights with an uninterrupted run.

    .venv/bin/python bench/soak_resume.py --kills 25          # prints kills survived / tried, leftovers

Each run is killed a random 0-30 ms after it has written a new resumable state (saved every 2 steps), so
every kill lands mid-run, mid-epoch, and often inside the next state write. Exit code 0 when every kill
resumed to bitwise-identical weights and no temp file is left over.
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

COMMON = ["--epochs", "10", "--batch-size", "32", "--checkpoint-every", "2", "--deterministic", "--device", "cpu",
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
    state = cut.parent / "m.state.safetensors"
    kills = 0
    while kills < a.kills and not cut.exists():
        before = state.stat().st_mtime_ns if state.exists() else None
        proc = subprocess.Popen(cli(*command, "--out", cut, "--resume"), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None and (not state.exists() or state.stat().st_mtime_ns == before):
            time.sleep(0.01)  # until this run has saved a state of its own
        time.sleep(rng.uniform(0.0, 0.03))  # a step of `tiny` takes a few ms: kill within a few
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    if kills < a.kills:
        print(f"soak: the run finished after {kills} kills; use a longer run (more --epochs) for {a.kills}")
    rc = subprocess.run(cli(*command, "--out", cut, "--resume"), env=env(), stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    a_w, b_w = load_file(str(full)), load_file(str(cut))
    same = rc == 0 and sorted(a_w) == sorted(b_w) and all(torch.equal(a_w[k], b_w[k]) for k in a_w)
    leftovers = sorted(p.name for p in cut.parent.iterdir() if p.name not in ("m.safetensors", "m.log.jsonl"))
    print(f"soak: {kills} of {a.kills} kills (SIGKILL, 0-30 ms after a state save; an uninterrupted run takes "
          f"{duration:.1f} s), each resumed; final run exit {rc}; "
          f"weights {'bitwise identical' if same else 'DIFFERENT'} to the uninterrupted run; "
          f"leftover files: {leftovers or 'none'}")
    return 0 if same and not leftovers and kills == a.kills else 1


if __name__ == "__main__":
    sys.exit(main())
