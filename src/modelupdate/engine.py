"""Train / evaluate / predict loops: device, AMP, DDP, resumable state.

The training loop reads top to bottom in ``fit``: lr, forward, loss, backward,
step, log; evaluate and save at epoch end. Randomness of a step (augmentation,
dropout) is derived from (seed, epoch, step), and data order from (seed,
epoch), so a run resumed from a saved step draws what the uninterrupted run
would have drawn. Library code: it reports through ``on_event`` and never prints.
"""

from __future__ import annotations

import bisect
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard, cast

import torch
from torch import nn

from .config import TrainConfig
from .data import Batch, Dataset, DatasetInfo, Split, eval_batches, mix_batch, step_seed, train_batches, train_order
from .ema import WeightEma, ema_decay
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .events import Event, EventHandler
from .losses import Objective, batch_cross_entropy
from .recipe import check_same, train_recipe
from .runtime import Runtime, all_reduce_sum, broadcast_from_main, reduce_progress
from .train_state import load_train_state, read_train_progress, save_train_state, state_is_finite

# --------------------------------------------------------------------------- schedule


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (nesterov) or AdamW; no weight decay on biases and norm parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.resolved_lr()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def cross_entropy_objective(label_smoothing: float = 0.0) -> Objective:
    def objective(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        return batch_cross_entropy(logits, batch, label_smoothing).mean(), {}

    return objective


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, info: DatasetInfo, runtime: Runtime, *,
                   batch_size: int = 1024, channels_last: bool = False, shard: bool = True, transform=None,
                   on_batch: Callable[[int, int], None] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [N, C] (float32, CPU), targets [N], ids [N] of this rank's shard (all of it when shard=False).
    ``transform``: the model's own preprocessing (``data.transforms.EvalTransform``; default: the data's).
    ``on_batch(done, total)``: called after each batch with the images done so far (progress)."""
    was_training = model.training
    model.eval()
    rank, world = (runtime.rank, runtime.world) if shard else (0, 1)
    outs, targets, ids = [], [], []
    for batch in eval_batches(split, info, batch_size=batch_size, device=runtime.device, rank=rank, world=world,
                              channels_last=channels_last, transform=transform):
        with runtime.autocast():
            logits = model(batch.images)
        outs.append(logits.float().cpu())
        targets.append(batch.targets.cpu())
        ids.append(batch.ids.cpu())
        if on_batch is not None:
            on_batch(sum(len(t) for t in targets), len(split) if not shard or runtime.world == 1 else -1)
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(targets), torch.cat(ids)


def accuracy_counts(logits: torch.Tensor, targets: torch.Tensor, runtime: Runtime) -> dict[str, Any]:
    """Pooled correct / total over ranks, and the error rate they give."""
    correct = (logits.argmax(1) == targets).sum() if len(targets) else torch.tensor(0)
    counts = all_reduce_sum(torch.tensor([int(correct), len(targets)], dtype=torch.long), runtime)
    n = int(counts[1])
    return {"n": n, "correct": int(counts[0]), "error_rate": (1 - int(counts[0]) / n) if n else None}


# --------------------------------------------------------------------------- training


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    resumed_from_step: int | None = None
    # with --ema-epochs: the averaged model (the one to test and save) and its decay per step
    averaged: nn.Module | None = None
    ema_decay: float | None = None


def fit(model: nn.Module, data: Dataset, cfg: TrainConfig, runtime: Runtime, *, objective: Objective | None = None,
        epoch_metrics: Callable[[nn.Module], dict[str, Any]] | None = None, on_event: EventHandler | None = None,
        state_path: Path | None = None, resume: bool = False, prepare_batch: Callable[[Batch], Batch] | None = None,
        recipe: dict[str, Any] | None = None, on_cycle_end: Callable[[int, nn.Module], None] | None = None
        ) -> FitResult:
    """Train ``model`` in place on ``data.train``; evaluate on ``data.val`` after each epoch.

    ``objective`` defaults to cross-entropy with ``cfg.label_smoothing``.
    ``epoch_metrics(model)`` adds metrics (e.g. NFR against the old model) to each epoch's log.
    ``state_path``: where the resumable state is written every ``cfg.checkpoint_every`` steps,
    at each epoch end and on SIGINT/SIGTERM; with ``resume`` the run continues from it, if it was
    written with the same training recipe and the same ``recipe`` sections (``data``: the data options
    and fingerprint; ``update``: ldi-train's method, parameters and input models; see ``recipe.py``).
    ``cfg.ema_epochs``: the weights are averaged too (``after_step``); ``result.averaged`` then ships.
    ``cfg.lr_cycles`` > 1: ``on_cycle_end(cycle, model)`` gets a snapshot at each cycle's end but the last.
    """
    emit = on_event or (lambda event: None)
    objective = objective or cross_entropy_objective(cfg.label_smoothing)
    train_model, optimizer, scaler = prepare_training(model, cfg, runtime)
    plan = Schedule.of(len(data.train), cfg, runtime)
    result = FitResult()
    ema = WeightEma(model, ema_decay(cfg.ema_epochs, plan.steps_per_epoch)) if cfg.ema_epochs else None
    start = Start()
    if resume and state_path is not None and state_path.exists():
        start = resume_state(state_path, model, optimizer, scaler, cfg, recipe or {}, result, plan, ema)
        emit({"type": "resume", "epoch": start.epoch, "step": start.step, "epochs": cfg.epochs,
              "path": str(state_path)})
    saver = StateSaver(state_path, model, optimizer, scaler, cfg, recipe or {}, result, runtime, start.seconds,
                       plan.base_lr, ema)
    emit({"type": "start", "epochs": cfg.epochs, "steps_per_epoch": plan.steps_per_epoch,
          "total_steps": plan.total_steps, "n_train": len(data.train), "device": str(runtime.device),
          "world": runtime.world, "start_epoch": start.epoch, "start_step": start.step})
    meter = Throughput()
    with StopSignals() as stop:
        for epoch in range(start.epoch, cfg.epochs):
            train_model.train()
            loss = LossTracker.at(start, epoch, runtime.device)
            t_epoch = time.perf_counter()
            first = start.step if epoch == start.epoch else 0
            for step, batch in train_batches(data.train, data.info, batch_size=cfg.batch_size, seed=cfg.seed,
                                             epoch=epoch, start_step=first, device=runtime.device,
                                             rank=runtime.rank, world=runtime.world,
                                             channels_last=cfg.channels_last):
                global_step = epoch * plan.steps_per_epoch + step
                set_lr(optimizer, plan.lr(global_step))
                torch.manual_seed(step_seed(cfg.seed, epoch, step, runtime.rank, "dropout"))  # resumable
                batch = prepare_batch(batch) if prepare_batch is not None else batch
                batch = mix_for_step(batch, data.info.num_classes, cfg, epoch, step, runtime.rank)
                log_now = (step + 1) % LOG_EVERY == 0 or step + 1 == plan.steps_per_epoch
                value, parts, grad_norm = train_step(train_model, optimizer, scaler, objective, batch, runtime,
                                                     cfg.clip_grad_norm, measure_grad_norm=log_now)
                after_step(model, ema, plan, global_step, on_cycle_end)
                loss.add(value)
                meter.add(batch.targets.shape[0] * runtime.world)
                save_now = plan.saves_after(global_step, step, cfg.checkpoint_every)
                # ranks check only where they all log or save, and agree there on a signal or a NaN
                stopping = False
                if log_now or save_now or (stop.requested and not runtime.distributed):
                    stopping = loss.agree(stop.requested, runtime, epoch, step, saver.hint(), plan.base_lr)
                if log_now:
                    emit(step_event(epoch, step, global_step, plan, loss.mean, meter.rate(), grad_norm, parts))
                if save_now or stopping:
                    saver.save(epoch, step + 1, *loss.per_rank_share(runtime.world))
                if stopping:
                    raise KeyboardInterrupt
            record = end_of_epoch(model, data, cfg, runtime, epoch, loss.mean, plan, t_epoch, epoch_metrics, ema)
            result.history.append(record)
            emit({"type": "epoch"} | record)
            saver.save(epoch + 1, 0)
    result.seconds = start.seconds + meter.seconds()
    result.steps = plan.total_steps
    result.images_per_second = meter.rate()
    result.averaged, result.ema_decay = (ema.module, ema.decay) if ema is not None else (None, None)
    return result


LOG_EVERY = 20  # steps between step records (and the ranks' stop/NaN agreement)


def after_step(model: nn.Module, ema: WeightEma | None, plan: Schedule, global_step: int,
               on_cycle_end: Callable[[int, nn.Module], None] | None) -> None:
    """After an optimizer step: update the weight average (each epoch's ``val_*`` metrics are then the
    average's, ``raw_val_*`` the trained weights'); at a learning-rate cycle's end, hand over a snapshot
    of the model that would ship."""
    if ema is not None:
        ema.update(model)
    if on_cycle_end is not None and plan.ends_cycle(global_step):
        on_cycle_end(plan.cycle_of(global_step), ema.module if ema is not None else model)


def prepare_training(model: nn.Module, cfg: TrainConfig, runtime: Runtime):
    """The model on its device (DDP-wrapped, compiled as asked), its optimizer and its fp16 GradScaler."""
    model.to(runtime.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and runtime.distributed:
        if runtime.device.type != "cuda":  # torch's SyncBatchNorm runs on GPUs only
            raise ConfigError(f"--sync-bn: SyncBatchNorm needs CUDA devices, not {runtime.device.type}; "
                              f"leave it out (each epoch ends with every rank taking rank 0's statistics)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, cfg)
    train_model: nn.Module = model
    if runtime.distributed:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        train_model = cast(nn.Module, torch.compile(train_model))  # an OptimizedModule
    scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp_dtype == torch.float16)
    return train_model, optimizer, scaler


@dataclass(frozen=True)
class Schedule:
    """Steps per epoch (this rank's, full batches), total steps, warm-up, the peak learning rate and the
    number of cosine cycles (warm-up in the first only; each ends at lr 0, where a snapshot is taken)."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    base_lr: float
    cycles: int = 1

    @classmethod
    def of(cls, n_train: int, cfg: TrainConfig, runtime: Runtime) -> Schedule:
        if n_train == 0:
            raise ConfigError("the training split is empty")
        order = train_order(n_train, seed=cfg.seed, epoch=0, rank=runtime.rank, world=runtime.world,
                            batch_size=cfg.batch_size)
        per_epoch = math.ceil(len(order) / cfg.batch_size)
        total, warmup = per_epoch * cfg.epochs, int(round(cfg.warmup_epochs * per_epoch))
        if cfg.lr_cycles > total:
            raise ConfigError(f"--snapshots {cfg.lr_cycles}: more cycles than the run's {total} steps")
        plan = cls(per_epoch, total, warmup, cfg.resolved_lr(), cfg.lr_cycles)
        if cfg.lr_cycles > 1 and warmup >= plan.cycle_ends[0]:  # the first snapshot would be taken warming up
            raise ConfigError(f"--snapshots {cfg.lr_cycles}: each cycle is {plan.cycle_ends[0]} steps, not longer "
                              f"than the {warmup}-step warm-up; expected fewer snapshots or a shorter "
                              f"--warmup-epochs")
        return plan

    @property
    def cycle_ends(self) -> list[int]:
        """The step after each cycle's last: M cycles of (nearly) equal length, the last ending the run."""
        return [round((k + 1) * self.total_steps / self.cycles) for k in range(self.cycles)]

    def cycle_of(self, global_step: int) -> int:
        return bisect.bisect_right(self.cycle_ends, global_step)

    def ends_cycle(self, global_step: int) -> bool:
        """The last step of a cycle other than the run's last."""
        return global_step + 1 in self.cycle_ends[:-1]

    def lr(self, global_step: int) -> float:
        if self.cycles == 1:
            return lr_at(global_step, self.total_steps, self.warmup_steps, self.base_lr)
        cycle = self.cycle_of(global_step)
        start = self.cycle_ends[cycle - 1] if cycle else 0
        return lr_at(global_step - start, self.cycle_ends[cycle] - start, self.warmup_steps if cycle == 0 else 0,
                     self.base_lr)

    def saves_after(self, global_step: int, step: int, every: int) -> bool:
        """A mid-epoch resumable save after this step (the epoch's end always saves)."""
        return bool(every) and (global_step + 1) % every == 0 and step + 1 < self.steps_per_epoch


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def mix_for_step(batch: Batch, num_classes: int, cfg: TrainConfig, epoch: int, step: int, rank: int) -> Batch:
    """The step's mixup / cutmix (drawn from its own seed); the objective's reference sees the mixed batch."""
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return batch
    return mix_batch(batch, num_classes, mixup=cfg.mixup, cutmix=cfg.cutmix, mix_prob=cfg.mix_prob,
                     switch_prob=cfg.mix_switch_prob, seed=step_seed(cfg.seed, epoch, step, rank, "mix"))


def train_step(train_model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               objective: Objective, batch: Batch, runtime: Runtime, clip_grad_norm: float | None, *,
               measure_grad_norm: bool) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor | None]:
    """Forward, loss, backward, clip, step. Returns the loss, its named parts and the gradient norm before
    clipping (when clipping or asked to measure; measured on unscaled fp16 gradients)."""
    with runtime.autocast():
        logits = train_model(batch.images)
        loss, parts = objective(logits, batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    grad_norm = None
    if clip_grad_norm or measure_grad_norm:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grad_norm = nn.utils.clip_grad_norm_(params, clip_grad_norm or math.inf)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), parts, grad_norm


@dataclass
class Start:
    """Where a run starts: epoch, step within it, the epoch's loss so far, training seconds before."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    seconds: float = 0.0


def resume_state(state_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, cfg: TrainConfig, recipe: dict[str, Any],
                 result: FitResult, plan: Schedule, ema: WeightEma | None = None) -> Start:
    """Load a resumable state into model, optimizer, scaler (and weight average), after checking it is
    this run's recipe (before any tensor is loaded: a changed optimizer is named, not a KeyError)."""
    progress = read_train_progress(state_path)
    config = progress.get("config")  # a state that predates it is checked by its tensors alone
    saved = {"train": train_recipe(config) if isinstance(config, dict) else None, "data": progress.get("data"),
             "update": progress.get("update")}
    check_same(saved, {"train": train_recipe(cfg.to_dict())} | recipe, what=f"--resume: {state_path}",
               remedy="rerun with the same options, or delete the state to start over")
    load_train_state(state_path, model, optimizer, {"ema": ema.module} if ema is not None else None)
    check_progress(progress, state_path, cfg, plan)  # this run's recipe and tensors: a field out of range is damage
    if ema is not None:
        ema.resume_at(int(progress.get("ema_updates") or 0))
    if progress.get("grad_scaler") and scaler.is_enabled():
        scaler.load_state_dict(progress["grad_scaler"])
    result.history = progress.get("history", [])
    start = Start(progress["epoch"], progress["step"], progress.get("epoch_loss_sum", 0.0),
                  progress.get("epoch_loss_count", 0), float(progress.get("seconds", 0.0)))
    result.resumed_from_step = start.epoch * plan.steps_per_epoch + start.step
    return start


def check_progress(progress: dict[str, Any], path: Path, cfg: TrainConfig, plan: Schedule) -> None:
    """The progress record of a resumable state has the fields ``StateSaver.save`` writes, of their types and
    within this run: a damaged one is named in one line before training goes on from it."""
    def is_int(v: Any) -> TypeGuard[int]:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    epoch, step = progress.get("epoch"), progress.get("step")
    checks = [
        ("epoch", is_int(epoch) and 0 <= epoch <= cfg.epochs, f"an integer in [0, {cfg.epochs}]"),
        ("step", is_int(step) and 0 <= step <= plan.steps_per_epoch and not (step and epoch == cfg.epochs),
         f"an integer in [0, {plan.steps_per_epoch}]"),
        ("history", isinstance(progress.get("history", []), list)
         and all(isinstance(r, dict) for r in progress.get("history", [])), "a list of epoch records"),
        ("config", isinstance(progress.get("config", {}), dict), "an object"),
        ("grad_scaler", progress.get("grad_scaler") is None or isinstance(progress["grad_scaler"], dict),
         "an object or null"),
        ("epoch_loss_sum", is_number(progress.get("epoch_loss_sum", 0.0)), "a finite number"),
        ("epoch_loss_count", is_int(progress.get("epoch_loss_count", 0)) and progress.get("epoch_loss_count", 0) >= 0,
         "an integer >= 0"),
        ("seconds", is_number(progress.get("seconds", 0.0)) and progress.get("seconds", 0.0) >= 0,
         "a finite number >= 0"),
        ("ema_updates", progress.get("ema_updates") is None
         or (is_int(progress["ema_updates"]) and progress["ema_updates"] >= 0), "an integer >= 0 or null"),
    ]
    for name, ok, expected in checks:
        if not ok:
            shown = json.dumps(progress.get(name))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise CheckpointError(f"--resume: {path}: damaged training state (its {name} is {shown}; expected "
                                  f"{expected}); delete it to start over")


class StateSaver:
    """Writes the resumable state (rank 0), never after weights turned NaN or Inf."""

    def __init__(self, path: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, cfg: TrainConfig, recipe: dict[str, Any],
                 result: FitResult, runtime: Runtime, prior_seconds: float, base_lr: float,
                 ema: WeightEma | None = None):
        self.path, self.model, self.optimizer, self.scaler, self.ema = path, model, optimizer, scaler, ema
        self.cfg, self.recipe, self.result, self.runtime = cfg, recipe, result, runtime
        self.prior_seconds, self.base_lr, self.t_start = prior_seconds, base_lr, time.perf_counter()

    def hint(self) -> str:
        saved = self.path is not None and self.path.exists()
        return f"; the last good state is in {self.path}" if saved else ""

    def save(self, epoch: int, step: int, loss_sum: float = 0.0, loss_count: int = 0) -> None:
        if self.path is None:
            return
        # a finite loss does not make finite weights (the update after it may overflow); checked on every
        # rank (DDP keeps their weights equal), so that all of them stop together
        averaged = [self.ema.module] if self.ema is not None else []
        if not state_is_finite(self.model, self.optimizer, *averaged):
            where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
            raise TrainingDiverged(f"weights became NaN or Inf by {where}{self.hint()}; "
                                   f"try a lower --lr (now {self.base_lr:g}) or --amp off")
        if not self.runtime.is_main:
            return
        extra = {"ema": self.ema.module} if self.ema is not None else None
        save_train_state(self.path, self.model, self.optimizer, {
            "epoch": epoch, "step": step, "history": self.result.history, "config": self.cfg.to_dict(),
            "data": self.recipe.get("data"), "update": self.recipe.get("update"),
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            # the epoch's loss so far too: a resumed epoch then logs the mean over all its steps
            "epoch_loss_sum": loss_sum, "epoch_loss_count": loss_count,
            "seconds": self.prior_seconds + time.perf_counter() - self.t_start,
            "ema_updates": self.ema.updates if self.ema is not None else None}, extra)


class LossTracker:
    """The epoch's training loss: summed on the device (no sync per step), pooled over ranks when read."""

    def __init__(self, loss_sum: torch.Tensor, count: int):
        self.sum, self.count, self.mean = loss_sum, count, float(loss_sum) / max(count, 1)
        self.pooled = (self.mean * count, count)

    @classmethod
    def at(cls, start: Start, epoch: int, device: torch.device) -> LossTracker:
        resumed = epoch == start.epoch and start.step > 0
        return cls(torch.tensor(start.loss_sum if resumed else 0.0, device=device), start.loss_count if resumed else 0)

    def add(self, loss: torch.Tensor) -> None:
        self.sum += loss
        self.count += 1

    def agree(self, stop: bool, runtime: Runtime, epoch: int, step: int, hint: str, base_lr: float) -> bool:
        """One all-reduce: whether any rank was told to stop, and the mean loss over every rank's steps;
        a NaN on any rank raises on all of them (never save a state after a NaN step)."""
        stopping, total, count = reduce_progress(stop, self.sum, self.count, runtime)
        self.pooled, self.mean = (total, count), total / count
        if not math.isfinite(self.mean):
            raise TrainingDiverged(f"loss became {self.mean} at epoch {epoch + 1}, step {step + 1}{hint}; "
                                   f"try a lower --lr (now {base_lr:g}) or --amp off")
        return stopping

    def per_rank_share(self, world: int) -> tuple[float, int]:
        """What each rank saves: 1/world of the pooled sums, which pooled again on resume give these."""
        return self.pooled[0] / world, self.pooled[1] // world


class Throughput:
    """Images trained (all ranks) over this process's training time."""

    def __init__(self) -> None:
        self.images, self.t0 = 0, time.perf_counter()

    def add(self, images: int) -> None:
        self.images += images

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self) -> float:
        return self.images / max(self.seconds(), 1e-9)


class StopSignals:
    """SIGINT / SIGTERM ask the loop to finish its step, save and stop (on every rank: torchrun passes a
    signal on to all of them); the handlers found are restored on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopSignals:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return self

    def _on_signal(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def step_event(epoch: int, step: int, global_step: int, plan: Schedule, mean_loss: float, images_per_second: float,
               grad_norm: torch.Tensor | None, parts: dict[str, Any]) -> Event:
    """The record of a logged step: loss so far this epoch (all ranks), lr, speed, gradient norm (this
    rank's, before clipping) and the objective's named parts."""
    return {"type": "step", "epoch": epoch, "step": step + 1, "steps_per_epoch": plan.steps_per_epoch,
            "global_step": global_step + 1, "total_steps": plan.total_steps, "loss": mean_loss,
            "lr": plan.lr(global_step), "images_per_second": images_per_second,
            "grad_norm": float(grad_norm) if grad_norm is not None else None} | {k: float(v) for k, v in parts.items()}


def end_of_epoch(model: nn.Module, data: Dataset, cfg: TrainConfig, runtime: Runtime, epoch: int, train_loss: float,
                 plan: Schedule, t_epoch: float, epoch_metrics: Callable[[nn.Module], dict[str, Any]] | None,
                 ema: WeightEma | None = None) -> dict[str, Any]:
    """The epoch's record: training loss, time, lr, validation error and the caller's metrics; with a
    weight average, ``val_*`` are the average's and ``raw_val_*`` the trained weights'."""
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch + 1}; try a lower --lr")
    broadcast_from_main(model, runtime)  # BatchNorm statistics differ between ranks
    record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss,
                              "epoch_seconds": time.perf_counter() - t_epoch,
                              "lr": plan.lr((epoch + 1) * plan.steps_per_epoch - 1)}
    if ema is None:
        return record | validation_metrics(model, data, cfg, runtime, epoch_metrics)
    broadcast_from_main(ema.module, runtime)  # so is the average of them: every rank keeps rank 0's
    raw = validation_metrics(model, data, cfg, runtime, epoch_metrics)
    return record | validation_metrics(ema.module, data, cfg, runtime, epoch_metrics) | {
        f"raw_{key}": value for key, value in raw.items()}


def validation_metrics(model: nn.Module, data: Dataset, cfg: TrainConfig, runtime: Runtime,
                       epoch_metrics: Callable[[nn.Module], dict[str, Any]] | None) -> dict[str, Any]:
    """Validation error of ``model`` and the caller's metrics of it."""
    record: dict[str, Any] = {}
    if len(data.val):
        logits, targets, _ = predict_logits(model, data.val, data.info, runtime, batch_size=cfg.eval_batch_size,
                                            channels_last=cfg.channels_last)
        record["val_error_rate"] = accuracy_counts(logits, targets, runtime)["error_rate"]
    if epoch_metrics is not None:
        record |= epoch_metrics(model)
    return record
