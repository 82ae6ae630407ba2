"""Benchmark: training from an image folder streamed from disk vs the same images preloaded as tensors.

Writes an image folder itself (``--images`` JPEGs of ``--source-size`` px, 10 classes, 90% train), then:

1. Throughput: one epoch of ``cnn-m`` at ``--image-size`` px through ``engine.fit``, on the images
   decoded once into memory (the default path) and streamed by the DataLoader with 0, 1 and 2 loader
   processes, in the same run, rounds alternating the candidates; each candidate's fastest round counts
   (other processes only add time). Then one epoch of the same batches without a model ("batches
   alone": what the loader could feed a faster device). Wall clock: the loader processes work in
   parallel with training, which CPU time of the training process would not see. Prints images/s and
   streamed/preloaded.
2. Memory: ``modelupdate train`` as a subprocess on the folder at ``--rss-size`` px with
   ``--memory-budget`` set below the decoded training set (so it streams on its own), then the same
   run held in memory; the peak resident memory of each process tree (sampled from /proc every 0.1 s:
   the training process's RSS, and the tree's PSS, which shares pages fairly between the forked
   loader processes) against the decoded dataset's size.

    PYTHONPATH=src python bench/streaming.py [--images 5000] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine_line

from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import Dataset, load_dataset, train_batches
from modelupdate.engine import fit
from modelupdate.models import build_model
from modelupdate.runtime import setup_runtime

MIB = 2**20


def write_folder(root: Path, images: int, size: int, classes: int = 10, seed: int = 0) -> None:
    """``images`` JPEGs of size x size: a class colour and a class stripe frequency under noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(images):
        k = i % classes
        split = "test" if (i // classes) % 10 == 9 else "train"
        folder = root / split / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([40 + 20 * k, 200 - 15 * k, 60 + 17 * (k * 3 % 10)], dtype=np.float32)
        stripes = 40 * np.sin(2 * np.pi * (xx + rng.integers(size)) / (4 + k))[..., None]
        pixels = np.clip(colour + stripes + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def one_epoch(data: Dataset, cfg: TrainConfig) -> float:
    """Images per second of one epoch of a freshly built model."""
    runtime = setup_runtime(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, data.info.num_classes, data.info.input_shape)
    start = time.perf_counter()
    result = fit(model, data, cfg, runtime)
    seconds = time.perf_counter() - start
    return result.steps * cfg.batch_size / seconds


def throughput(root: Path, args) -> None:
    cfg = TrainConfig(arch="cnn-m", epochs=1, batch_size=args.batch_size, device="cpu", checkpoint_every=0)
    base = dict(name=f"imagefolder:{root}", image_size=args.image_size, val_fraction=0.0)
    t0 = time.perf_counter()
    candidates = {"preloaded": load_dataset(DataConfig(**base))}
    decode_seconds = time.perf_counter() - t0
    for workers in (0, 1, 2):
        candidates[f"streamed, {workers} workers"] = load_dataset(DataConfig(**base, stream=True, workers=workers))
    n = len(candidates["preloaded"].train)
    print(f"throughput: cnn-m, {n} training images at {args.image_size} px, batch {args.batch_size}, "
          f"{args.rounds} rounds (decoding them into memory first took {decode_seconds:.1f} s)")
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    alone: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, data in candidates.items():
            rates[name].append(one_epoch(data, cfg))
            alone[name].append(batches_alone(data, cfg))
    preloaded, preloaded_alone = max(rates["preloaded"]), max(alone["preloaded"])
    for name, values in rates.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:22s} training {max(values):5.0f} img/s (rounds {rounds}), streamed/preloaded "
              f"{max(values) / preloaded:.2f};  batches alone {max(alone[name]):6.0f} img/s, "
              f"streamed/preloaded {max(alone[name]) / preloaded_alone:.2f}")


def batches_alone(data: Dataset, cfg: TrainConfig) -> float:
    """Images per second of one epoch of augmented, normalised training batches without a model: the most a
    faster device could be fed."""
    start, n = time.perf_counter(), 0
    for _, batch in train_batches(data.train, data.info, batch_size=cfg.batch_size, seed=cfg.seed, epoch=0,
                                  device=torch.device("cpu")):
        n += batch.targets.shape[0]
    return n / (time.perf_counter() - start)


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, PSS summed over ``pid`` and its descendants), bytes; (0, 0) once it is gone."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    rss, pss = 0, 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:") and p == pid:
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def peak_memory(command: list[str]) -> tuple[int, int, float]:
    """Peak (training-process RSS, process-tree PSS) of ``python -m modelupdate COMMAND``, and its seconds."""
    env = dict(os.environ, COLUMNS="200")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "modelupdate", *command], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = tree_memory(proc.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"modelupdate {' '.join(command)} failed:\n{proc.stderr.read()}")
    return peak_rss, peak_pss, time.perf_counter() - start


def memory(root: Path, work: Path, args) -> None:
    n_train = sum(1 for _ in (root / "train").rglob("*.jpg"))
    decoded = n_train * 3 * args.rss_size**2
    budget = decoded / 2 / 2**30
    common = ["train", "--data", f"imagefolder:{root}", "--image-size", str(args.rss_size), "--arch", "tiny",
              "--epochs", "1", "--batch-size", str(args.batch_size), "--device", "cpu", "--quiet", "--val-fraction",
              "0"]
    streamed = peak_memory([*common, "--memory-budget", f"{budget:.6f}", "--workers", "2",
                            "--out", str(work / "streamed.safetensors")])
    held = peak_memory([*common, "--out", str(work / "held.safetensors")])
    print(f"memory: modelupdate train --arch tiny, 1 epoch, {n_train} training images at {args.rss_size} px; "
          f"decoded training set {decoded / MIB:.0f} MiB, --memory-budget {budget * 1024:.0f} MiB")
    for name, (rss, pss, seconds) in (("streamed, 2 workers", streamed), ("held in memory", held)):
        print(f"  {name:20s} peak RSS of the training process {rss / MIB:6.0f} MiB, of the tree (PSS) "
              f"{pss / MIB:6.0f} MiB; ({rss / decoded:.2f}, {pss / decoded:.2f}) x the decoded set; {seconds:.0f} s")
    print(f"  held - streamed: {(held[0] - streamed[0]) / MIB:.0f} MiB RSS of the training process "
          f"(the decoded set is {decoded / MIB:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="JPEGs written (90%% train)")
    parser.add_argument("--source-size", type=int, default=128, help="their size in pixels")
    parser.add_argument("--image-size", type=int, default=64, help="--image-size of the throughput runs")
    parser.add_argument("--rss-size", type=int, default=128, help="--image-size of the memory runs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the four candidates")
    parser.add_argument("--folder", type=Path, default=None, help="write the images here (default: a temp folder)")
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    parser.add_argument("--skip-throughput", action="store_true", help="memory only (e.g. on a folder much "
                        "larger than a process's own footprint)")
    parser.add_argument("--quick", action="store_true", help="1,000 images, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 1000, 1
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or Path(tmp) / "images"
        if not (root / "train").is_dir():
            t0 = time.perf_counter()
            write_folder(root, args.images, args.source_size)
            print(f"wrote {args.images} JPEGs of {args.source_size} px to {root} in {time.perf_counter() - t0:.1f} s")
        if not args.skip_throughput:
            throughput(root, args)
        if not args.skip_memory:
            memory(root, Path(tmp), args)


if __name__ == "__main__":
    main()
