"""Benchmark: what a whole model update costs, in plain trainings, for each recipe of docs/results.md.

One plain training (ce) of the same budget is the unit. Measured here, in one process, on the same
model (cnn-m), data and batch size, rounds alternating the candidates (the best run of each counts):

- train:   a plain cross-entropy step without the weight average, the unit;
- ema:     a ce step plus the weight average's update (``--ema-epochs``);
- online4 / online2: an ELODI student step against a 4- / 2-member reference evaluated on every batch;
- cached:  an ELODI student step reading the reference's logits from ``--reference-cache``;
- cache:   building that cache (every member's forward over the training images, once), against one
           epoch of training.

A whole update adds the reference's own trainings (M independent members: M; snapshots of one run:
1) to the student's. Printed: each step's ratio to a train step, then the whole update's cost for
each recipe, measured and analytic (a training step taken as 3 forwards: forward and backward), so the
numbers hold on other hardware as a count of passes.

    PYTHONPATH=src python bench/bench_update_cost.py [--epochs 10] [--images 1024] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import bench_data, best, interleaved, machine_line, spread, use_cpu_time
from torch import nn

from modelupdate.checkpoint import load_checkpoint, save_ensemble
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.engine import fit
from modelupdate.methods import UpdateConfig, make_objective, with_method_defaults
from modelupdate.models import build_model
from modelupdate.runtime import setup_runtime
from modelupdate.workflows.common import model_meta
from modelupdate.workflows.ldi_train import load_or_build_reference_cache, teacher_logits

# forwards per image of one training step (forward + backward ~ 3 forwards), for the analytic column
STEP_FORWARDS = 3.0


def recipes(r: dict[str, float], epochs: int, members: int) -> list[tuple[str, float, float]]:
    """(recipe, measured cost, analytic cost) in plain trainings of ``epochs`` epochs. ``r``: the measured
    step ratios to a train step, and ``cache``: building the cache / one training epoch."""
    m, cache = members, r["cache"] / epochs
    return [
        ("ce", 1.0, 1.0),
        ("ce + EMA", r["ema"], 1.0),
        (f"ELODI, {m} members, online", m + r["online4"], m + 1 + m / STEP_FORWARDS),
        ("ELODI, 2 members, online", 2 + r["online2"], 2 + 1 + 2 / STEP_FORWARDS),
        (f"ELODI, {m} snapshots of one run, online", 1 + r["online4"], 1 + 1 + m / STEP_FORWARDS),
        (f"ELODI, {m} snapshots, cached logits", 1 + cache + r["cached"],
         1 + m / (STEP_FORWARDS * epochs) + 1),
        (f"ELODI, {m} members, cached logits", m + cache + r["cached"], m + m / (STEP_FORWARDS * epochs) + 1),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10, help="the budget the costs are given at")
    parser.add_argument("--images", type=int, default=1024, help="training images per timed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arch", default="cnn-m")
    parser.add_argument("--data", default="auto", choices=["auto", "fashion-mnist", "synthetic"])
    parser.add_argument("--cpu-time", action="store_true", help="time by process CPU time on 1 thread")
    parser.add_argument("--quick", action="store_true", help="512 images, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 512, 3
    if args.cpu_time:
        use_cpu_time()

    data = bench_data(args.images, data=args.data)
    info = data.info
    cfg = TrainConfig(arch=args.arch, epochs=1, batch_size=args.batch_size, device="cpu", checkpoint_every=0,
                      dropout=0.0)
    runtime = setup_runtime(cfg)

    def fresh_model(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(args.arch, info.num_classes, info.input_shape)

    def reference(folder: Path, members: int):
        path = folder / f"reference{members}.safetensors"
        meta = model_meta(info, DataConfig(name=info.name), cfg, {})
        meta.member_seeds = list(range(100, 100 + members))
        save_ensemble(path, [fresh_model(s) for s in meta.member_seeds], meta)
        loaded = load_checkpoint(path)
        loaded.model.to(runtime.device)
        return loaded

    elodi = UpdateConfig(method="elodi").resolved()
    with tempfile.TemporaryDirectory() as tmp:
        four, two = reference(Path(tmp), args.members), reference(Path(tmp), 2)
        cache_paths = iter(Path(tmp) / f"cache{i}.safetensors" for i in range(10 * args.repeats + 10))
        cache = load_or_build_reference_cache(next(cache_paths), four, data, runtime, cfg)
        elodi_cfg = with_method_defaults(cfg, "elodi")
        candidates = {
            "train": lambda: fit(fresh_model(), data, TrainConfig(**(cfg.to_dict() | {"ema_epochs": 0.0})), runtime),
            "ema": lambda: fit(fresh_model(), data, TrainConfig(**(cfg.to_dict() | {"ema_epochs": 1.0})), runtime),
            "online4": lambda: fit(fresh_model(), data, elodi_cfg, runtime,
                                   objective=make_objective(elodi, teacher_logits(four, None), 0.0)),
            "online2": lambda: fit(fresh_model(), data, elodi_cfg, runtime,
                                   objective=make_objective(elodi, teacher_logits(two, None), 0.0)),
            "cached": lambda: fit(fresh_model(), data, elodi_cfg, runtime,
                                  objective=make_objective(elodi, teacher_logits(four, cache), 0.0)),
            "cache": lambda: load_or_build_reference_cache(next(cache_paths), four, data, runtime, cfg),
        }
        fit(fresh_model(), bench_data(2 * args.batch_size, data=args.data), cfg, runtime)  # warm-up, untimed
        seconds = interleaved(candidates, args.repeats)

    rounds = list(zip(*(seconds[name] for name in candidates), strict=True))
    names = list(candidates)
    per_round = {name: [row[i] / row[0] for row in rounds] for i, name in enumerate(names)}
    t = {name: best(values) for name, values in seconds.items()}
    ratio = {name: t[name] / t["train"] for name in names}
    print(machine_line())
    print(f"data={info.name} arch={args.arch} members={args.members} images={args.images} "
          f"batch={args.batch_size} rounds={args.repeats} budget={args.epochs} epochs")
    for name in names[1:]:  # "cache" is one pass over the training images: against one training epoch
        unit = "train epoch" if name == "cache" else "train step"
        print(f"{name:>8} / {unit}: {ratio[name]:.2f} (rounds {spread(per_round[name])})")
    print()
    print(f"{'whole update (plain trainings of ' + str(args.epochs) + ' epochs)':<48} {'measured':>9} {'analytic':>9}")
    for name, measured, analytic in recipes(ratio, args.epochs, args.members):
        print(f"{name:<48} {measured:>9.2f} {analytic:>9.2f}")


if __name__ == "__main__":
    main()
