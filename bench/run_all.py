"""Run every benchmark with small defaults and write a summary (`make bench`).

Each benchmark runs in its own process (so one's memory and threads cannot colour
another's), its output is shown as it comes, and the lines that carry its ratios are
gathered into a Markdown summary (default ``runs/bench-summary.md``) together with the
machine, the date and each benchmark's command and full output.

    python bench/run_all.py [--quick] [--only engine,ldi-online] [--summary PATH]

About 6-8 minutes on 2 busy CPU cores; ``--quick`` about half that.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Bench:
    name: str
    script: str
    args: list[str]
    quick_args: list[str]
    what: str


BENCHES = [
    Bench(
        "engine",
        "bench_engine.py",
        [],
        ["--quick"],
        "engine `fit` vs a minimal hand-written loop (cnn-m), training throughput",
    ),
    Bench(
        "ldi-online",
        "bench_ldi_online.py",
        [],
        ["--quick"],
        "ldi-train step, online M=4 reference and cached reference, vs a train step",
    ),
    Bench(
        "ensemble-forward",
        "bench_ensemble_forward.py",
        ["--members", "4", "--batch-size", "256", "--repeats", "7", "--warmup", "1"],
        ["--members", "4", "--batch-size", "128", "--repeats", "5", "--warmup", "1"],
        "ensemble reference forward: batched (vmap) vs loop, M=4 cnn-m",
    ),
    Bench(
        "ensemble-train",
        "bench_ensemble_train.py",
        [],
        ["--quick"],
        "ensemble-train via torchrun (2 processes) vs M sequential train runs",
    ),
    Bench(
        "flip-report",
        "bench_flip_report.py",
        [],
        ["--n", "200000"],
        "flip-report on two prediction files (1M x 100 classes; --quick: 200k)",
    ),
]

# Output lines worth repeating in the summary: the ratios and the lines naming a target.
KEY_WORDS = ("ratio", "target", "speed-up", "mode='auto'")


def key_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if any(word in line for word in KEY_WORDS)]


def run_bench(bench: Bench, quick: bool, env: dict[str, str]) -> tuple[int, float, str, list[str]]:
    command = [
        sys.executable,
        str(HERE / bench.script),
        *(bench.quick_args if quick else bench.args),
    ]
    shown = " ".join(["python", str(Path(command[1]).relative_to(ROOT)), *command[2:]])
    print(f"\n=== {bench.name}: {bench.what}\n$ {shown}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    code = proc.wait()
    return code, time.perf_counter() - start, shown, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--only", default="", help="comma-separated names: " + ", ".join(b.name for b in BENCHES))
    parser.add_argument("--summary", type=Path, default=ROOT / "runs" / "bench-summary.md")
    parser.add_argument(
        "--clock",
        choices=["auto", "wall", "cpu"],
        default="auto",
        help="how engine and ldi-online time a run: wall clock, or process CPU time on one thread "
        "(steadier when other processes share the cores); auto: cpu when the load average "
        "exceeds the core count, else wall",
    )
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {b.name for b in BENCHES}
    if unknown:
        sys.exit(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    clock = args.clock
    if clock == "auto":
        clock = "cpu" if load_before > (os.cpu_count() or 1) else "wall"
    if clock == "cpu":
        for bench in BENCHES:
            if bench.name in ("engine", "ldi-online"):
                bench.args, bench.quick_args = bench.args + ["--cpu-time"], bench.quick_args + ["--cpu-time"]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    started = datetime.datetime.now().astimezone()
    results = []
    for bench in chosen:
        results.append((bench, *run_bench(bench, args.quick, env)))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    summary = [
        f"# Benchmark summary ({'quick' if args.quick else 'default sizes'})",
        "",
        f"- date: {started:%Y-%m-%d %H:%M %Z}",
        f"- machine: {os.cpu_count()} cores; load average {load_before:.1f} before, "
        f"{load_after:.1f} after" + (" (above the core count: shared, noisy timings)"
                                     if max(load_before, load_after) > (os.cpu_count() or 1) else ""),
        f"- python {sys.version.split()[0]}; command: python bench/run_all.py{' --quick' if args.quick else ''}"
        f" --clock {args.clock} (engine and ldi-online timed by "
        f"{'process CPU time, 1 thread' if clock == 'cpu' else 'wall clock'})",
        "",
    ]
    total = sum(r[2] for r in results)
    summary[-1:-1] = [f"- total wall time: {total / 60:.1f} min"]
    summary += ["| benchmark | result | wall |", "|---|---|---|"]
    failed = []
    for bench, code, seconds, _, lines in results:
        shown = key_lines("".join(lines)) if code == 0 else [f"FAILED (exit code {code})"]
        if code != 0:
            failed.append(bench.name)
        summary.append(f"| {bench.name} | {'<br>'.join(shown)} | {seconds:.0f} s |")
    summary.append("")
    for bench, _code, _seconds, command, lines in results:
        summary += [
            f"## {bench.name}",
            "",
            bench.what,
            "",
            "```",
            f"$ {command}",
            *[s.rstrip() for s in lines],
            "```",
            "",
        ]
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text("\n".join(summary))

    print("\n=== summary")
    for bench, code, _seconds, _, lines in results:
        for line in key_lines("".join(lines)) if code == 0 else [f"FAILED (exit code {code})"]:
            print(f"{bench.name:>16}: {line}")
    print(f"written to {args.summary}")
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
