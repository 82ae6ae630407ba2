"""Benchmark: flip-report on two .npz files of 1,000,000 samples x 100 classes.

Writes two seeded prediction files (float32 logits) to a temp folder, then times
reading + aligning + flip_report + JSON rendering in a fresh process, and
measures that process's peak resident memory increase (VmHWM in
/proc/self/status, relative to VmRSS just before reading) over the size of the
arrays read (ids, targets, preds, logits of both files). Targets: < 10 s and
peak / input < 3.

    PYTHONPATH=src python bench/bench_flip_report.py [--n 1000000] [--classes 100]
                                                     [--shuffle]

``--shuffle`` stores the new file's samples in another order, so aligning by id
has to reorder (copy) the new logits.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modelupdate.analysis import flip_report
from modelupdate.gates import GateSpec
from modelupdate.predictions import Predictions, align, read_predictions, write_predictions
from modelupdate.report import flip_report_json


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_inputs(folder: Path, n: int, classes: int, shuffle: bool) -> tuple[Path, Path]:
    """Old: noisy logits with the target boosted; new: old plus noise (some flips)."""
    rng = np.random.default_rng(0)
    targets = rng.integers(0, classes, n)
    ids = np.arange(n, dtype=np.int64)
    rows = np.arange(n)
    logits = rng.standard_normal((n, classes), dtype=np.float32)
    logits[rows, targets] += 2.0
    old = Predictions.from_arrays(ids, targets, logits=logits)
    old_path = write_predictions(folder / "old.npz", old)
    del old
    logits += 0.5 * rng.standard_normal((n, classes), dtype=np.float32)  # in place
    if shuffle:
        order = rng.permutation(n)
        ids, targets, logits = ids[order], targets[order], logits[order]
    new = Predictions.from_arrays(ids, targets, logits=logits)
    new_path = write_predictions(folder / "new.npz", new)
    return old_path, new_path


def measure(old_path: Path, new_path: Path, label: str) -> None:
    """Run in a fresh process, so that VmHWM holds only what the flip report needs."""
    rss_before = _status_kib("VmRSS")
    start = time.perf_counter()
    old = read_predictions(old_path)
    new = read_predictions(new_path)
    old, new = align(old, new)
    report = flip_report(old, new, GateSpec(max_nfr=0.05, max_class_nfr=0.1))
    text = flip_report_json(report)
    seconds = time.perf_counter() - start

    peak_kib = _status_kib("VmHWM")
    input_bytes = sum(a.nbytes for p in (old, new)
                      for a in (p.ids, p.targets, p.preds, p.logits) if a is not None)
    ratio = (peak_kib - rss_before) * 1024 / input_bytes
    assert text
    print(f"flip-report {label}: {seconds:.2f} s (target < 10 s), "
          f"peak memory / input = {ratio:.2f} (target < 3)")
    print(f"  input arrays {input_bytes / 2**20:.0f} MiB, peak increase "
          f"{(peak_kib - rss_before) / 1024:.0f} MiB, NFR {report.summary.nfr.value:.4f}, "
          f"negative flips {report.summary.counts.negative_flips:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--measure", nargs=3, metavar=("OLD", "NEW", "LABEL"),
                        help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    if args.measure:
        old_path, new_path, label = args.measure
        measure(Path(old_path), Path(new_path), label)
        return

    label = f"{args.n:,} x {args.classes}".replace(",000,000 ", "M ")
    label += " (new file shuffled)" if args.shuffle else ""
    with tempfile.TemporaryDirectory() as tmp:
        old_path, new_path = write_inputs(Path(tmp), args.n, args.classes, args.shuffle)
        subprocess.run([sys.executable, __file__, "--measure", str(old_path), str(new_path),
                        label], check=True)


if __name__ == "__main__":
    main()
