#!/usr/bin/env python3
"""The ELODI experiment on Fashion-MNIST, rerunnable with one command (`make reproduce`).

Scenario: the old model is cnn-s trained on a third of the training split; every new model is cnn-m
trained on all of it with the same epoch budget and augmentation, without dropout; the ELODI reference
is an ensemble of M cnn-m members trained exactly like the plain update. Methods: ce, elodi, kd, fd-lm,
ldi-old, plus the reference itself (the paragon). ELODI's variant is chosen on the validation split by
the rule in choose_by_rule, fixed before the runs. A schedule study repeats ce and elodi at twice
the epochs, with a reference trained that long too, with mixup/cutmix, with α 0.8, and with a reference
of twice the members.

Every step is a real `modelupdate` command, printed before it runs; a finished step is skipped and an
interrupted one resumed, so the script continues where it stopped. The summary (mean ± std over seeds,
test split, no seed picking) goes to <out>/results.json and <out>/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from modelupdate.atomic import OutputFiles

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "modelupdate"]
SUBSET = "0.3333"
# Every new model trains without dropout: plain cnn-m without dropout had the lower validation error
# (docs/results.md), so ce, the reference members and the baselines get it as well as ELODI.
NO_DROPOUT = ["--dropout", "0"]
# The protocol's plain update has no weight EMA (the baselines study adds it as ce-ema*); said explicitly
# since ldi-train --method ce now averages by default
PLAIN = ["--ema-epochs", "0"]
# ELODI variants compared on seed 0 (validation split); CHOSEN in a command is replaced by the chosen
# variant's flags. Fixed before the runs, with the rule in choose_by_rule.
ELODI_VARIANTS = {
    "a0.5": ["--alpha", "0.5", "--topk", "0"],
    "a0.8": ["--alpha", "0.8", "--topk", "0"],
    "top2": ["--alpha", "0.5", "--topk", "2"],
    "softmax": ["--alpha", "0.5", "--topk", "0", "--weighting", "softmax"],
}
# How much higher than plain ce's validation ER an ELODI variant may be and still be chosen on its NFR.
ER_SLACK = 0.001
# The mixing tried at the longer schedule (timm's scheme: one of the two per batch, lighter mixup here)
MIX = ["--mixup", "0.2", "--cutmix", "1.0"]
# At the longer schedule, against the reference trained as long, one more ELODI variant on seed 0: the
# authors' α 0.8 on the top-2 classes (at 10 epochs α 0.8 had the lower validation NFR over all classes,
# and top-2 the lower one at α 0.5). Judged against the chosen variant by the same rule.
LONG_ALPHA = ["--alpha", "0.8", "--topk", "2"]
PARAGONS = {"reference": "paragon (reference ensemble)", "reference-8": "paragon (8 members)",
            "reference-m2": "paragon (2 members)"}
# The baselines study (final budget): a weight EMA of horizon H epochs (--ema-epochs) for ce, chosen on
# seed 0 by choose_by_rule among these and none; ELODI's student then tries the horizon chosen for ce (or
# EMA_FALLBACK when ce keeps none), judged by the same rule against ELODI without it. Fixed before the runs.
EMA_HORIZONS = ("1", "2.5")
EMA_FALLBACK = "2.5"
# The cheap ELODI. Candidates, with their analytic cost in plain trainings (a training step: forward and
# backward, ~3 forwards per image; E epochs; M = 4 members): "snapcache": the reference is M snapshots of one
# run (--snapshots, cost 1) and the student reads its logits of the un-augmented images from a cache
# (M forwards per image once: M/(3E)), then trains at the cost of one model (1); "snap": the same
# reference run online (1 + M/3 per student step); "m2": the first REFERENCE_SMALL members of the
# reference, online (2 + 1 + 2/3); "cache": the full reference through the cache (M + M/(3E) + 1). The
# cheap variant reported is the one costing at most CHEAP_BUDGET (snapcache); the others say what each
# saving costs in flips. Fixed before the runs.
REFERENCE_SMALL = 2
SNAPSHOT_REFERENCE = "reference-snap"
CHEAP_BUDGET = 2.5
# Methods whose new model is trained against the old model.
NEEDS_OLD = ("ldi-old", "kd", "fd-lm")
CHOSEN = "<elodi-variant>"


def last_val(out: Path, name: str) -> dict:
    log = OutputFiles(out / f"{name}.safetensors").log
    epochs = [json.loads(line) for line in log.read_text().splitlines() if '"type": "epoch"' in line]
    return {"er": epochs[-1]["val_error_rate"], "nfr": epochs[-1]["val_nfr"]}


def choose_elodi_variant(out: Path) -> str | None:
    """The ELODI variant, by choose_by_rule on the seed-0 runs; None until they have all finished."""
    return choose_by_rule(out, {v: f"elodi-{v}-s0" for v in ELODI_VARIANTS})


def keep_chosen_seed0(out: Path, variant: str) -> None:
    """The chosen variant's seed-0 run is ELODI's seed 0: copy its checkpoint and log to elodi-s0.*."""
    import shutil

    for suffix in (".safetensors", ".log.jsonl"):
        src, dst = out / f"elodi-{variant}-s0{suffix}", out / f"elodi-s0{suffix}"
        if src.exists() and not dst.exists():
            shutil.copyfile(src, dst)


def plan(a: argparse.Namespace) -> list[tuple[str, list[str], Path]]:
    """(name, command, output) for every run, in priority order: a step runs once what it reads exists."""
    out = Path(a.out)
    common = ["--data", a.data, "--epochs", str(a.epochs), "--quiet", "--resume"]
    runs: list[tuple[str, list[str], Path]] = []

    def add(name: str, args: list[str]) -> None:
        path = out / f"{name}.safetensors"
        runs.append((name, CLI + args + common + ["--out", str(path)], path))

    add("old", ["train", "--arch", a.old_arch, "--train-subset", SUBSET, "--seed", "0"])
    # the reference: M members in two halves trained side by side, then merged into one file (the halves
    # are not kept once merged)
    half = a.members // 2
    for part, first_seed in (("a", 0), ("b", half)) if not (out / "reference.safetensors").exists() else ():
        add(f"reference-{part}", ["ensemble-train", "--arch", a.new_arch, "--members",
                                  str(half if part == "a" else a.members - half), "--seed", str(first_seed)]
            + NO_DROPOUT)
    ref = out / "reference.safetensors"
    runs.append(("reference", [sys.executable, str(ROOT / "scripts" / "merge_ensembles.py"),
                               str(out / "reference-a.safetensors"), str(out / "reference-b.safetensors"),
                               "--out", str(ref)], ref))
    old = str(out / "old.safetensors")
    add("ce-s0", ["ldi-train", "--method", "ce", "--old", old, "--arch", a.new_arch, "--seed", "0"] + NO_DROPOUT
        + PLAIN)
    for variant, flags in ELODI_VARIANTS.items():
        add(f"elodi-{variant}-s0", ["ldi-train", "--method", "elodi", "--old", old, "--reference", str(ref),
                                    "--arch", a.new_arch, "--seed", "0"] + flags)
    for seed in range(1, a.seeds):
        add(f"ce-s{seed}", ["ldi-train", "--method", "ce", "--old", old, "--arch", a.new_arch, "--seed", str(seed)]
            + NO_DROPOUT + PLAIN)
    for seed in range(1, a.seeds):
        add(f"elodi-s{seed}", ["ldi-train", "--method", "elodi", "--old", old, "--reference", str(ref),
                               "--arch", a.new_arch, "--seed", str(seed), CHOSEN])
    for seed in range(a.baseline_seeds):
        for method in NEEDS_OLD:
            add(f"{method}-s{seed}", ["ldi-train", "--method", method, "--old", old, "--arch", a.new_arch,
                                      "--seed", str(seed)] + NO_DROPOUT)
    return runs


def plan_schedule(a: argparse.Namespace) -> list[tuple[str, list[str], Path]]:
    """The schedule study (validation only for its choices, test reported beside the final table): the
    same protocol at twice the epochs, ELODI with the variant chosen at the final budget (no new choice),
    against the final reference and against a reference whose members had the longer schedule too; and
    whether mixup/cutmix helps either method at the longer schedule (seed 0)."""
    final, out = Path(a.out), Path(a.schedule_out)
    epochs = str(2 * a.epochs)
    common = ["--data", a.data, "--epochs", epochs, "--quiet", "--resume"]
    runs: list[tuple[str, list[str], Path]] = []

    def add(name: str, args: list[str]) -> None:
        path = out / f"{name}.safetensors"
        runs.append((f"e{epochs}/{name}", CLI + args + common + ["--out", str(path)], path))

    old, ref = str(final / "old.safetensors"), str(final / "reference.safetensors")

    def ce(seed: int, *extra: str) -> list[str]:
        return ["ldi-train", "--method", "ce", "--old", old, "--arch", a.new_arch, "--seed", str(seed), *NO_DROPOUT,
                *PLAIN, *extra]

    def elodi(seed: int, reference: str, *extra: str, variant: list[str] | None = None) -> list[str]:
        return ["ldi-train", "--method", "elodi", "--old", old, "--reference", reference, "--arch", a.new_arch,
                "--seed", str(seed), *(variant or [CHOSEN]), *extra]

    # priority: seed 0 of every question first (validation decides), the other seeds after
    add("ce-s0", ce(0))
    add("elodi-s0", elodi(0, ref))
    half = a.members // 2
    ref_long = out / "reference.safetensors"
    for part, first_seed in (("a", 0), ("b", half)) if not ref_long.exists() else ():
        add(f"reference-{part}", ["ensemble-train", "--arch", a.new_arch, "--members",
                                  str(half if part == "a" else a.members - half), "--seed", str(first_seed)]
            + NO_DROPOUT)
    runs.append((f"e{epochs}/reference", [sys.executable, str(ROOT / "scripts" / "merge_ensembles.py"),
                                          str(out / "reference-a.safetensors"), str(out / "reference-b.safetensors"),
                                          "--out", str(ref_long)], ref_long))
    add("ce-mix-s0", ce(0, *MIX))
    add("elodi-mix-s0", elodi(0, ref, *MIX))
    add("elodi-ref-long-s0", elodi(0, str(ref_long)))
    add("elodi-ref-long-a0.8-s0", elodi(0, str(ref_long), variant=LONG_ALPHA))
    # a reference of twice the members, trained as long: M more members merged with reference 20
    ref_big = out / f"reference-{2 * a.members}.safetensors"
    halves = [(part, a.members + i * half) for i, part in enumerate("cd")]
    for part, first_seed in halves if not ref_big.exists() else ():
        add(f"reference-{part}", ["ensemble-train", "--arch", a.new_arch, "--members",
                                  str(half if part == "c" else a.members - half), "--seed", str(first_seed)]
            + NO_DROPOUT)
    parts = [str(ref_long)] + [str(out / f"reference-{part}.safetensors") for part, _ in halves]
    runs.append((f"e{epochs}/{ref_big.stem}", [sys.executable, str(ROOT / "scripts" / "merge_ensembles.py"),
                                              *parts, "--out", str(ref_big)], ref_big))
    add(f"elodi-ref{2 * a.members}-s0", elodi(0, str(ref_big)))
    # the other seeds hold ELODI to the reference, then the α, then the reference size chosen on seed 0's
    # validation numbers (same rule as the variants); until the seed-0 runs have finished, only ce's are
    # planned
    reference = choose_schedule_reference(out)
    alpha = choose_long_alpha(out) if reference == "long" else None
    size = choose_reference_size(out, 2 * a.members) if alpha == "a0.5" else None
    for seed in range(1, a.seeds):
        add(f"ce-s{seed}", ce(seed))
        if size == "big":
            add(f"elodi-ref{2 * a.members}-s{seed}", elodi(seed, str(ref_big)))
        elif alpha == "a0.8":
            add(f"elodi-ref-long-a0.8-s{seed}", elodi(seed, str(ref_long), variant=LONG_ALPHA))
        elif reference == "long":
            add(f"elodi-ref-long-s{seed}", elodi(seed, str(ref_long)))
        elif reference == "final":
            add(f"elodi-s{seed}", elodi(seed, ref))
    return runs


def choose_by_rule(out: Path, runs: dict[str, str], against: str = "ce-s0") -> str | None:
    """The rule, fixed in advance, among ``runs`` (choice -> run name) against ``against`` (ce-s0) in
    ``out``: of those whose validation ER is at most its + ER_SLACK, the lowest validation NFR (a tie keeps
    the first named); if none passes, the lowest ER. None until every run named has finished."""
    if not all(done_record(out / f"{name}.safetensors") for name in [*runs.values(), against]):
        return None
    ce = last_val(out, against)
    val = {choice: last_val(out, name) for choice, name in runs.items()}
    ok = [c for c in val if val[c]["er"] <= ce["er"] + ER_SLACK]
    return min(ok, key=lambda c: val[c]["nfr"]) if ok else min(val, key=lambda c: val[c]["er"])


def choose_reference_size(out: Path, big: int) -> str | None:
    """Against ce at the longer schedule, with the chosen variant: reference 20 ("long") or the one with
    twice its members ("big"), by seed 0's validation numbers; a tie in NFR keeps the smaller one."""
    return choose_by_rule(out, {"long": "elodi-ref-long-s0", "big": f"elodi-ref{big}-s0"})


def choose_long_alpha(out: Path) -> str | None:
    """Against the reference trained as long: the chosen variant (α 0.5, "a0.5") or LONG_ALPHA ("a0.8"),
    by seed 0's validation numbers; a tie in NFR keeps the chosen variant."""
    return choose_by_rule(out, {"a0.5": "elodi-ref-long-s0", "a0.8": "elodi-ref-long-a0.8-s0"})


def choose_schedule_reference(out: Path) -> str | None:
    """At the longer schedule, the final reference ("final", run elodi-s0) or the one whose members trained
    as long ("long", elodi-ref-long-s0), by choose_by_rule against ce-s0 at that schedule.
    None until the three runs have finished."""
    return choose_by_rule(out, {"final": "elodi-s0", "long": "elodi-ref-long-s0"})


def choose_ce_ema(out: Path, *, allow_none: bool = True) -> str | None:
    """The EMA horizon of ce ("none": no EMA) by choose_by_rule on seed 0; without ``allow_none``, the
    best horizon by the same rule (the ce+EMA row is reported whatever the choice)."""
    runs = {"none": "ce-s0"} if allow_none else {}
    return choose_by_rule(out, runs | {h: f"ce-ema{h}-s0" for h in EMA_HORIZONS})


def elodi_ema_horizon(out: Path) -> str | None:
    """The horizon ELODI's student tries: ce's, or EMA_FALLBACK when ce keeps none."""
    chosen = choose_ce_ema(out)
    return None if chosen is None else (EMA_FALLBACK if chosen == "none" else chosen)


def plan_baselines(a: argparse.Namespace) -> list[tuple[str, list[str], Path]]:
    """The baselines-and-cost study at both budgets (final, then twice the epochs), in priority order:
    seed 0 of every question first, the other seeds once the rule has chosen on seed 0."""
    final = BaselineStudy(a, Path(a.out), a.epochs, "elodi", "reference")
    long = BaselineStudy(a, Path(a.schedule_out), 2 * a.epochs, "elodi-ref-long", "reference")
    return (final.ema_seed0() + final.cheap_seed0() + final.ema_seeds() + final.cheap_seeds() + final.elodi_ema()
            + long.ema_seed0() + long.ema_seeds() + final.cheap_others() + long.elodi_ema() + long.cheap_seed0()
            + long.cheap_seeds())


class BaselineStudy:
    """The runs of the baselines study at one budget (``epochs``) in ``out``, beside its ce-s0 and ELODI
    (``elodi``-s0, against ``reference``): ce with a weight EMA, ELODI's student with EMA, and the cheap
    ELODI references (CHEAP: a few members, snapshots of one run, cached logits)."""

    def __init__(self, a: argparse.Namespace, out: Path, epochs: int, elodi: str, reference: str):
        self.a, self.out, self.epochs, self.elodi = a, out, epochs, elodi
        self.old = str(Path(a.out) / "old.safetensors")
        self.ref = out / f"{reference}.safetensors"
        self.common = ["--data", a.data, "--epochs", str(epochs), "--quiet", "--resume"]
        self.prefix = "" if out == Path(a.out) else f"e{epochs}/"

    def run(self, name: str, args: list[str]) -> tuple[str, list[str], Path]:
        path = self.out / f"{name}.safetensors"
        return (self.prefix + name, CLI + args + self.common + ["--out", str(path)], path)

    def ce(self, seed: int, horizon: str) -> tuple[str, list[str], Path]:
        return self.run(f"ce-ema{horizon}-s{seed}", ["ldi-train", "--method", "ce", "--old", self.old, "--arch",
                                                     self.a.new_arch, "--seed", str(seed), *NO_DROPOUT,
                                                     "--ema-epochs", horizon])

    def student(self, name: str, seed: int, reference: Path, *extra: str) -> tuple[str, list[str], Path]:
        return self.run(f"{name}-s{seed}", ["ldi-train", "--method", "elodi", "--old", self.old, "--reference",
                                            str(reference), "--arch", self.a.new_arch, "--seed", str(seed), CHOSEN,
                                            *extra])

    def ema_seed0(self) -> list:
        return [self.ce(0, h) for h in EMA_HORIZONS]

    def ema_seeds(self) -> list:
        best = choose_ce_ema(self.out, allow_none=False)
        return [self.ce(seed, best) for seed in range(1, self.a.seeds)] if best else []

    def elodi_ema(self) -> list:
        """ELODI's student with the horizon chosen for ce; its other seeds where the rule keeps it."""
        horizon = elodi_ema_horizon(self.out)
        if horizon is None:
            return []
        name = f"{self.elodi}-ema{horizon}"
        keep = choose_by_rule(self.out, {"none": f"{self.elodi}-s0", "ema": f"{name}-s0"},
                              against=f"{self.elodi}-s0") == "ema"
        return [self.student(name, seed, self.ref, "--ema-epochs", horizon)
                for seed in range(self.a.seeds if keep else 1)]

    def snapshot_reference(self) -> tuple[str, list[str], Path]:
        return self.run(SNAPSHOT_REFERENCE, ["ensemble-train", "--arch", self.a.new_arch, "--snapshots",
                                             str(self.a.members), "--seed", "0", *NO_DROPOUT])

    def cheap(self, variant: str, seed: int) -> tuple[str, list[str], Path]:
        reference = {"m2": self.out / f"reference-m{REFERENCE_SMALL}.safetensors",
                     "snap": self.out / f"{SNAPSHOT_REFERENCE}.safetensors",
                     "snapcache": self.out / f"{SNAPSHOT_REFERENCE}.safetensors", "cache": self.ref}[variant]
        cache = ["--reference-cache", str(self.out / f"{reference.stem}.logits.safetensors")] \
            if variant.endswith("cache") else []
        return self.student(f"{self.elodi}-{variant}", seed, reference, *cache)

    def cheap_seed0(self) -> list:
        """The snapshot reference and the cheapest variant (within CHEAP_BUDGET) on seed 0."""
        return [self.snapshot_reference(), self.cheap("snapcache", 0)]

    def cheap_seeds(self) -> list:
        return [self.cheap("snapcache", seed) for seed in range(1, self.a.seeds)]

    def cheap_others(self) -> list:
        """The dearer candidates (what each saving costs in flips): M=2, snapshots online, the full reference
        from cached logits; M=2 on every seed."""
        small = self.out / f"reference-m{REFERENCE_SMALL}.safetensors"
        merge = (small.stem, [sys.executable, str(ROOT / "scripts" / "merge_ensembles.py"), str(self.ref),
                              "--first", str(REFERENCE_SMALL), "--out", str(small)], small)
        return [merge, self.cheap("snap", 0), self.cheap("cache", 0)] + [
            self.cheap("m2", seed) for seed in range(self.a.seeds)]


def shown(cmd: list[str]) -> str:
    """A step's command as a user would type it (`modelupdate ...` for the CLI)."""
    return " ".join(shlex.quote(c) for c in (["modelupdate"] + cmd[3:] if cmd[:3] == CLI else cmd))


def done_record(path: Path) -> dict | None:
    """The "done" record a finished training run wrote to its JSONL log (metrics on test), if any."""
    log = OutputFiles(path).log
    if not log.exists():
        return None
    done = [json.loads(line) for line in log.read_text().splitlines() if '"type": "done"' in line]
    return done[-1] if done else None


def finished(path: Path) -> bool:
    """A step is done when its checkpoint exists, or when its log says it finished: the checkpoints that
    back no final number are not kept in the repository (their logs are)."""
    return path.exists() or done_record(path) is not None


def text_log(path: Path) -> Path:
    """A step's console output, beside its checkpoint."""
    return path.with_name(path.name.removesuffix(".safetensors") + ".log")


def run_all(runs: list[tuple[str, list[str], Path]], log_dir: Path, jobs: int = 1, replan=None) -> list[str]:
    """Run every missing step; with jobs > 1, independent steps run side by side (one thread each).

    A step waits for the checkpoints its command reads (--old, --reference); ``log_dir`` holds the
    runs the ELODI variant is chosen on. ``replan()``: a plan that grows as seed 0's choices are made,
    read again whenever a worker looks for a step (new steps join the queue in plan order).
    """
    import threading

    pending = [r for r in runs if not finished(r[2])]
    started: set[Path] = set()
    for name, _, path in runs:
        if finished(path):
            print(f"[skip] {name}: finished ({path})", flush=True)
    lock = threading.Lock()
    failed: list[str] = []
    running = [0]
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = "1"

    def needs(cmd: list[str]) -> list[Path]:
        paths = [Path(cmd[i + 1]) for i, c in enumerate(cmd[:-1]) if c in ("--old", "--reference")]
        if cmd[1].endswith("merge_ensembles.py"):
            paths += [Path(c) for c in cmd[2:] if c.endswith(".safetensors") and c != cmd[-1]]
        return paths

    def ready(cmd: list[str]) -> bool:
        # a step naming the ELODI variant waits until ce and every variant's seed 0 have finished
        return all(finished(p) for p in needs(cmd)) and (CHOSEN not in cmd or choose_elodi_variant(log_dir))

    def worker() -> None:
        while True:
            with lock:
                if replan is not None:
                    pending[:] = [r for r in replan() if r[2] not in started and not finished(r[2])]
                if not pending:
                    if running[0]:  # a running step may still let the plan grow
                        job = None
                    else:
                        return
                can_run = [r for r in pending if ready(r[1])]
                if not can_run and not running[0]:  # what is left waits on a step that failed
                    return
                if not can_run:
                    job = None
                else:
                    job = can_run[0]
                    pending.remove(job)
                    started.add(job[2])
                    running[0] += 1
            if job is None:
                time.sleep(5)
                continue
            name, cmd, path = job
            if CHOSEN in cmd:
                variant = choose_elodi_variant(log_dir)
                keep_chosen_seed0(log_dir, variant)
                i = cmd.index(CHOSEN)
                cmd = cmd[:i] + ELODI_VARIANTS[variant] + cmd[i + 1:]
                print(f"[pick] ELODI variant {variant!r} (validation split rule)", flush=True)
            print(f"[run ] {name}: {shown(cmd)}", flush=True)
            t0 = time.time()
            with open(text_log(path), "a") as log:
                rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            with lock:
                running[0] -= 1
                if rc != 0:  # report it, and go on with the steps that do not need it
                    failed.append(f"{name} failed with exit code {rc}; see {text_log(path)}")
            print(f"[fail] {name}: exit code {rc}" if rc else f"[done] {name}: {time.time() - t0:.0f} s", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


# --------------------------------------------------------------------------- summary


def test_predictions(path: Path, data, cache: dict):
    """argmax predictions and targets on the test split (cached per file)."""
    import torch

    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.engine import predict_logits
    from modelupdate.runtime import Runtime

    if path not in cache:
        loaded = load_checkpoint(path)
        logits, targets, _ = predict_logits(loaded.model, data.test, data.info, Runtime(torch.device("cpu")))
        cache[path] = (logits.argmax(1).numpy(), targets.numpy(), loaded.meta)
    return cache[path]


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def summarise(a: argparse.Namespace, runs, schedule_runs) -> dict:
    from modelupdate.config import DataConfig
    from modelupdate.data import load_dataset

    out = Path(a.out)
    data = load_dataset(DataConfig(name=a.data))
    cache: dict = {}
    result: dict = {"epochs": a.epochs, "members": a.members, "data": a.data, "scenarios": {}}
    chosen = choose_elodi_variant(out)
    if chosen:
        keep_chosen_seed0(out, chosen)
    result["elodi_variant"] = {"chosen": chosen, "variants": ELODI_VARIANTS, "er_slack": ER_SLACK}
    everything = runs + schedule_runs
    result["train_seconds_total"] = sum(float((done_record(path) or {}).get("train_seconds") or 0.0)
                                        for _, _, path in everything)
    old = out / "old.safetensors"
    result["scenarios"]["old"] = test_table([p for _, _, p in runs] + [out / "elodi-s0.safetensors"], old, data,
                                            cache)
    if schedule_runs:
        result["schedule"] = test_table([p for _, _, p in schedule_runs], old, data, cache) | {
            "epochs": 2 * a.epochs}
    result["validation"] = validation_table(everything)
    return result


def test_table(paths: list[Path], old: Path, data, cache: dict) -> dict:
    """Test ER / NFR against ``old`` of every finished run, grouped by method (the file name less -sN)."""
    from modelupdate.metrics import flip_summary

    old_pred, targets, _ = test_predictions(old, data, cache)
    variants = {f"elodi-{v}" for v in ELODI_VARIANTS}  # their seed 0 counts once, as elodi-s0
    rows: dict[str, dict] = {}
    for path in sorted(set(paths), key=lambda p: (p.stem.rsplit("-s", 1)[0], p.stem)):
        name = path.name.removesuffix(".safetensors")
        method = PARAGONS.get(name, name.rsplit("-s", 1)[0])
        half_of_reference = name.startswith("reference-") and name not in PARAGONS
        if name == "old" or half_of_reference or method in variants or not finished(path):
            continue
        if path.exists():
            s = flip_summary(old_pred, test_predictions(path, data, cache)[0], targets)
            er, nfr, flips = 100 * s.er_new.value, 100 * s.nfr.value, s.counts.negative_flips
        else:  # the run's own measurement against the same old model, from its log
            done = done_record(path)
            er, nfr, flips = 100 * done["test_error_rate"], 100 * done["test_nfr"], done["test_negative_flips"]
        row = rows.setdefault(method, {"er": [], "nfr": [], "neg_flips": [], "runs": []})
        row["er"].append(er)
        row["nfr"].append(nfr)
        row["neg_flips"].append(flips)
        row["runs"].append(name)
    return {"old_error_rate": 100 * float((old_pred != targets).mean()),
            "methods": {m: {"er": mean_std(r["er"]), "nfr": mean_std(r["nfr"]), "neg_flips": r["neg_flips"],
                            "runs": r["runs"]} for m, r in rows.items()}}


def validation_table(runs) -> dict:
    """Last-epoch validation ER / NFR of every run, from its JSONL log: what choices are made on."""
    table = {}
    for name, _, path in runs:
        log = OutputFiles(path).log
        if not log.exists():
            continue
        epochs = [json.loads(line) for line in log.read_text().splitlines() if '"type": "epoch"' in line]
        if epochs and "val_nfr" in epochs[-1]:
            table[name] = {"val_er": 100 * epochs[-1]["val_error_rate"], "val_nfr": 100 * epochs[-1]["val_nfr"]}
    return table


def markdown(result: dict) -> str:
    lines = [f"Fashion-MNIST, test split (10,000 images); {result['epochs']} epochs for every single model; "
             f"reference = {result['members']} members. Mean ± std over seeds (n = seeds)."]
    tables = [(f"Old model: `{name}` (test ER {sc['old_error_rate']:.2f}%)", sc)
              for name, sc in result["scenarios"].items()]
    if "schedule" in result:
        tables.append((f"Schedule study: {result['schedule']['epochs']} epochs", result["schedule"]))
    for title, sc in tables:
        lines += ["", f"### {title}", "",
                  "| method | n | ER % | NFR % | negative flips |", "|---|---|---|---|---|"]
        for method, r in sc["methods"].items():
            lines.append(f"| {method} | {r['er']['n']} | {r['er']['mean']:.2f} ± {r['er']['std']:.2f} | "
                         f"{r['nfr']['mean']:.2f} ± {r['nfr']['std']:.2f} | {', '.join(map(str, r['neg_flips']))} |")
    lines += ["", "### Validation split (last epoch; what ELODI's variants are judged on)", "",
              "| run | val ER % | val NFR % |", "|---|---|---|"]
    for name, v in result.get("validation", {}).items():
        lines.append(f"| {name} | {v['val_er']:.2f} | {v['val_nfr']:.2f} |")
    lines += ["", f"Total training time (sum of runs): {result['train_seconds_total'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- baselines summary

# the whole update's cost in plain trainings of the same budget, analytic (docs/results.md: a training step
# ~ 3 forwards per image; M = 4); measured ratios come from bench/bench_update_cost.py
STEP_FORWARDS = 3.0


def analytic_cost(method: str, epochs: int, members: int = 4) -> float:
    m = REFERENCE_SMALL if "-m2" in method else members
    if method.startswith("ce"):
        return 1.0
    if method.startswith("paragon"):
        return float(members)
    cache = m / (STEP_FORWARDS * epochs)
    if "snapcache" in method:
        return 1 + cache + 1
    if "snap" in method:
        return 1 + 1 + m / STEP_FORWARDS
    if "cache" in method:
        return m + cache + 1
    return m + 1 + m / STEP_FORWARDS


def cost_nfr_svg(points: list[tuple[int, str, float, float, float]]) -> str:
    """A scatter of (epochs, label, cost in plain trainings, test NFR %, test ER %): cost on x, NFR on y,
    each point labelled with its update and error; one marker per budget."""
    width, height, left, right, top, bottom = 760, 420, 60, 200, 20, 50
    xs, ys = [p[2] for p in points], [p[3] for p in points]
    x_max = max(7.0, max(xs) + 0.5)
    y_lo, y_hi = min(ys) - 0.05, max(ys) + 0.05

    def x_at(cost: float) -> float:
        return left + (width - left - right) * cost / x_max

    def y_at(nfr: float) -> float:
        return top + (height - top - bottom) * (y_hi - nfr) / (y_hi - y_lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>']
    for tick in range(int(x_max) + 1):
        out.append(f'<text x="{x_at(tick):.1f}" y="{height - bottom + 15}" text-anchor="middle">{tick}</text>')
    steps = 5
    for i in range(steps + 1):
        value = y_lo + (y_hi - y_lo) * i / steps
        out.append(f'<text x="{left - 6}" y="{y_at(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">cost of the whole '
               f'update (plain trainings of the same budget)</text>')
    out.append(f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + height - bottom) / 2})">test NFR %</text>')
    colours = {10: "#0072B2", 20: "#D55E00"}  # Okabe-Ito
    placed: list[tuple[float, float]] = []  # labels drawn so far (x, y): a label near another moves down
    for epochs, label, cost, nfr, er in sorted(points, key=lambda p: -p[3]):
        x, y, colour = x_at(cost), y_at(nfr), colours.get(epochs, "black")
        marker = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>' if epochs == 10 else
                  f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>')
        text_y = y + 4
        while any(abs(px - x) < 150 and abs(py - text_y) < 12 for px, py in placed):
            text_y += 12
        placed.append((x, text_y))
        out += [marker, f'<text x="{x + 7:.1f}" y="{text_y:.1f}" fill="{colour}">{label} ({er:.2f}% err)</text>']
    for i, (epochs, colour) in enumerate(colours.items()):
        out.append(f'<text x="{width - right + 30}" y="{top + 14 + 16 * i}" fill="{colour}">'
                   f'{"●" if epochs == 10 else "■"} {epochs} epochs</text>')
    return "\n".join(out + ["</svg>"]) + "\n"


def baselines_summary(a: argparse.Namespace, points: list | None = None) -> str:
    """Markdown of the baselines study at both budgets: test ER / NFR (mean ± std over seeds), negative flips
    per seed, the analytic cost, validation numbers and per-seed McNemar tests of ELODI against the best
    one-training baseline chosen on validation (ce, or ce with EMA where the rule keeps it)."""
    from modelupdate.config import DataConfig
    from modelupdate.data import load_dataset
    from modelupdate.metrics import flip_counts, mcnemar_exact_p

    data = load_dataset(DataConfig(name=a.data))
    cache: dict = {}
    old_pred, targets, _ = test_predictions(Path(a.out) / "old.safetensors", data, cache)
    lines = []
    for out, epochs, elodi, reference in ((Path(a.out), a.epochs, "elodi", "reference"),
                                          (Path(a.schedule_out), 2 * a.epochs, "elodi-ref-long", "reference")):
        wanted = ["ce"] + [f"ce-ema{h}" for h in EMA_HORIZONS] + [elodi] + [f"{elodi}-ema{h}" for h in EMA_HORIZONS] \
            + [f"{elodi}-{cheap}" for cheap in ("snapcache", "snap", "m2", "cache")]
        lines += [f"### {epochs} epochs", "", "| update | seeds | test ER % | test NFR % | negative flips | "
                  "cost (plain trainings) | val ER / NFR % (seed 0) |", "|---|---|---|---|---|---|---|"]
        for method in wanted + [reference]:
            runs = [f"{method}-s{s}" for s in range(a.seeds)] if method != reference else [reference]
            found = [r for r in runs if finished(out / f"{r}.safetensors")]
            if not found:
                continue
            er, nfr, flips = [], [], []
            for r in found:
                path = out / f"{r}.safetensors"
                if path.exists():
                    pred = test_predictions(path, data, cache)[0]
                    c = flip_counts(old_pred, pred, targets)
                    er.append(100 * float((pred != targets).mean()))
                    nfr.append(100 * c.negative_flips / c.n)
                    flips.append(c.negative_flips)
                else:
                    done = done_record(path)
                    er.append(100 * done["test_error_rate"])
                    nfr.append(100 * done["test_nfr"])
                    flips.append(done["test_negative_flips"])
            val = ""
            if (out / f"{found[0]}.log.jsonl").exists() and method != reference:
                v = last_val(out, found[0])
                val = f"{100 * v['er']:.2f} / {100 * v['nfr']:.2f}"
            label = "reference (the ensemble itself)" if method == reference else method
            cost = analytic_cost("paragon" if method == reference else method, epochs)
            er_ms, nfr_ms = mean_std(er), mean_std(nfr)
            lines.append(f"| {label} | {len(found)} | {er_ms['mean']:.2f} ± {er_ms['std']:.2f} | "
                         f"{nfr_ms['mean']:.3f} ± {nfr_ms['std']:.3f} | {', '.join(map(str, flips))} | "
                         f"{cost:.2f} | {val} |")
            if points is not None:
                name = "reference" if method == reference else method.replace("elodi-ref-long", "elodi")
                points.append((epochs, f"{name} ×{len(found)}", cost, nfr_ms["mean"], er_ms["mean"]))
        best = choose_ce_ema(out) if finished(out / "ce-s0.safetensors") else None
        baseline = "ce" if best in (None, "none") else f"ce-ema{best}"
        lines += ["", f"Best one-training baseline on validation (rule above): `{baseline}`.", "",
                  f"| seed | {elodi} flips only | {baseline} flips only | McNemar p |", "|---|---|---|---|"]
        for seed in range(a.seeds):
            pa, pb = out / f"{elodi}-s{seed}.safetensors", out / f"{baseline}-s{seed}.safetensors"
            if not (pa.exists() and pb.exists()):
                continue
            ea, eb = test_predictions(pa, data, cache)[0], test_predictions(pb, data, cache)[0]
            old_ok = old_pred == targets
            only_a = int((old_ok & (ea != targets) & (eb == targets)).sum())
            only_b = int((old_ok & (eb != targets) & (ea == targets)).sum())
            lines.append(f"| {seed} | {only_a} | {only_b} | {mcnemar_exact_p(only_a, only_b):.3g} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/fashion-mnist/final")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3, help="seeds of ce and elodi")
    p.add_argument("--baseline-seeds", type=int, default=2, help="seeds of kd, fd-lm, ldi-old")
    p.add_argument("--old-arch", default="cnn-s")
    p.add_argument("--new-arch", default="cnn-m")
    p.add_argument("--schedule-out", default="results/fashion-mnist/e20",
                   help="the schedule study (twice the epochs) goes here")
    p.add_argument("--stage", choices=("all", "final", "schedule", "baselines"), default="all",
                   help="run the final protocol, the schedule study after it, or one of them; baselines: the "
                        "EMA baselines and the cheap ELODI at the final budget (after the final protocol)")
    p.add_argument("--jobs", type=int, default=1, help="steps run side by side (1 thread each when > 1)")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = plan(a)
    if a.stage == "baselines":  # replanned until no step is left: seed 1+ steps appear once seed 0 chose
        if a.dry_run:
            for name, cmd, _ in plan_baselines(a):
                print(f"{name}: {shown(cmd)}")
            return
        failed = [] if a.summary_only else run_all(plan_baselines(a), out, a.jobs, replan=lambda: plan_baselines(a))
        points: list = []
        summary = baselines_summary(a, points)
        (out / "baselines.md").write_text(summary)
        (out / "cost-nfr.svg").write_text(cost_nfr_svg(points))
        print(summary)
        if failed:
            sys.exit("failed steps: " + "; ".join(failed))
        return
    schedule_runs = plan_schedule(a) if a.stage != "final" else []
    if schedule_runs:
        Path(a.schedule_out).mkdir(parents=True, exist_ok=True)
    if a.dry_run:
        for name, cmd, _ in runs + schedule_runs:
            print(f"{name}: {shown(cmd)}")
        return
    # the final protocol first; the schedule study after it (its ELODI variant is the final one's)
    to_run = (runs if a.stage != "schedule" else []) + schedule_runs
    failed = [] if a.summary_only else run_all(to_run, out, a.jobs)
    result = summarise(a, runs, schedule_runs)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    if failed:
        sys.exit("failed steps: " + "; ".join(failed))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
