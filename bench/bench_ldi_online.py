"""Benchmark: an ldi-train (ELODI) step, online M-member reference or cache, vs a train step.

All three run through the engine's ``fit`` with the objectives ``ldi-train`` builds
(``make_objective``), on the same model (cnn-m), data and batch size:

- train:  cross-entropy (``modelupdate train``);
- online: ELODI against an M-member ensemble checkpoint (loaded with ``load_checkpoint``,
          so the reference runs in the mode ``auto`` picks on this device) evaluated on
          every augmented batch;
- cached: ELODI against the reference's logits precomputed by ``--reference-cache``.

The online step cannot cost less than a train step plus M member forwards, so its ideal
ratio to a train step is ``1 + M * forward / train_step``, with ``forward`` one member's
eval forward of one batch, timed here on the same model over the same training batches
(made beforehand, so only the forward is timed). Printed: the
actual ratio, the ideal ratio, actual/ideal (target <= 1.1), and cached/train (target
<= 1.15). Rounds alternate the candidates; every printed ratio is one of the candidates'
fastest runs (on a shared machine other processes only ever add time), with the range of
the per-round ratios beside it.

    PYTHONPATH=src python bench/bench_ldi_online.py [--members 4] [--images 1024] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import bench_data, best, interleaved, machine_line, spread, timed, use_cpu_time
from torch import nn

from modelupdate.checkpoint import load_checkpoint, save_ensemble
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import train_batches
from modelupdate.engine import fit
from modelupdate.methods import UpdateConfig, make_objective, with_method_defaults
from modelupdate.models import build_model
from modelupdate.runtime import setup_runtime
from modelupdate.workflows.common import model_meta
from modelupdate.workflows.ldi_train import load_or_build_reference_cache, teacher_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--images", type=int, default=512, help="training images per timed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="rounds of (train, online, cached, forward)")
    parser.add_argument("--arch", default="cnn-m")
    parser.add_argument("--data", default="auto", choices=["auto", "fashion-mnist", "synthetic"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", help="off, auto, bf16, fp16 (as the CLI's --amp)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by process CPU time on 1 thread (steadier on a shared machine)",
    )
    parser.add_argument("--quick", action="store_true", help="512 images, 5 rounds")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 512, 5
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        use_cpu_time()

    data = bench_data(args.images, data=args.data)
    info = data.info
    cfg = TrainConfig(
        arch=args.arch,
        epochs=1,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        checkpoint_every=0,
    )
    runtime = setup_runtime(cfg)

    def fresh_model(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(args.arch, info.num_classes, info.input_shape)

    with tempfile.TemporaryDirectory() as tmp:
        # A reference checkpoint as ensemble-train writes it (untrained weights: same cost).
        reference_path = Path(tmp) / "reference.safetensors"
        meta = model_meta(info, DataConfig(name=info.name), cfg, {})
        meta.member_seeds = list(range(100, 100 + args.members))
        save_ensemble(reference_path, [fresh_model(s) for s in meta.member_seeds], meta)
        teacher = load_checkpoint(reference_path)
        teacher.model.to(runtime.device)
        cache = load_or_build_reference_cache(Path(tmp) / "cache.safetensors", teacher, data, runtime, cfg)
    elodi = UpdateConfig(method="elodi").resolved()
    online_objective = make_objective(elodi, teacher_logits(teacher, None), cfg.label_smoothing)
    cached_objective = make_objective(elodi, teacher_logits(teacher, cache), cfg.label_smoothing)

    member = teacher.members[0]
    steps = args.images // args.batch_size
    # The very batches a timed epoch trains on, made beforehand: only the forward is timed.
    epoch = train_batches(data.train, info, batch_size=args.batch_size, seed=cfg.seed, epoch=0, device=runtime.device)
    batches = [batch.images for _, batch in epoch]

    def forward_batches() -> None:  # one member's eval forward of each training batch
        with torch.no_grad(), runtime.autocast():
            for images in batches:
                member(images)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()

    elodi_cfg = with_method_defaults(cfg, "elodi")  # as ldi-train runs it: gradient clipping included
    candidates = {
        "train": lambda: fit(fresh_model(), data, cfg, runtime),
        "online": lambda: fit(fresh_model(), data, elodi_cfg, runtime, objective=online_objective),
        "cached": lambda: fit(fresh_model(), data, elodi_cfg, runtime, objective=cached_objective),
        "forward": forward_batches,
    }
    warm = bench_data(2 * args.batch_size, data=args.data)  # first-call allocations, untimed
    for objective in (None, online_objective):
        fit(fresh_model(), warm, cfg, runtime, objective=objective)
    timed(forward_batches)

    seconds = interleaved(candidates, args.repeats)
    rounds = list(zip(*(seconds[name] for name in candidates), strict=True))
    actual = [online / train for train, online, _, _ in rounds]
    ideal = [1 + args.members * forward / train for train, _, _, forward in rounds]
    versus_ideal = [a / i for a, i in zip(actual, ideal, strict=True)]
    cached = [c / train for train, _, c, _ in rounds]

    print(machine_line())
    print(
        f"data={info.name} arch={args.arch} members={args.members} "
        f"images={steps * args.batch_size} "
        f"batch={args.batch_size} rounds={args.repeats} reference mode={teacher.model.active_mode}"
    )
    t = {name: best(values) for name, values in seconds.items()}
    for name in ("train", "online", "cached"):
        print(f"{name:>7} step: {1e3 * t[name] / steps:8.1f} ms (best run)")
    print(f"member forward: {1e3 * t['forward'] / steps:8.1f} ms per batch (best run)")
    ideal_ratio = 1 + args.members * t["forward"] / t["train"]
    print(f"online/train step ratio: {t['online'] / t['train']:.2f} (rounds {spread(actual)})")
    print(f"ideal ratio 1 + M*forward/train_step: {ideal_ratio:.2f} (rounds {spread(ideal)})")
    print(
        f"online actual/ideal ratio: {t['online'] / t['train'] / ideal_ratio:.2f} "
        f"(target <= 1.1; rounds {spread(versus_ideal)})"
    )
    print(f"cached/train step ratio: {t['cached'] / t['train']:.2f} (target <= 1.15; rounds {spread(cached)})")


if __name__ == "__main__":
    main()
