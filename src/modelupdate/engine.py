"""Train / evaluate / predict loops: device, AMP, DDP, resumable state.

The training loop reads top to bottom in ``fit``: lr, forward, loss, backward,
step, log; evaluate and save at epoch end. Randomness of a step (augmentation,
dropout) is derived from (seed, epoch, step), and data order from (seed,
epoch), so a run resumed from a saved step draws what the uninterrupted run
would have drawn. Library code: it reports through ``on_event`` and never prints.
"""

from __future__ import annotations

import atexit
import datetime
import json
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save as st_save
from torch import nn

from .checkpoint import atomic_write_bytes, read_safetensors, state_dict_error, unwrap
from .config import TrainConfig
from .data import Batch, Dataset, DatasetInfo, Split, eval_batches, mix_batch, step_seed, train_batches, train_order
from .errors import CheckpointError, ConfigError, TrainingDiverged

Event = dict[str, Any]
EventHandler = Callable[[Event], None]
# An objective maps (student logits [B, C], batch) to (scalar loss, named parts for the log; tensors are
# read only when a step is logged, so the loop does not wait on the device every step).
Objective = Callable[[torch.Tensor, Batch], tuple[torch.Tensor, dict[str, float | torch.Tensor]]]


# --------------------------------------------------------------------------- runtime


@dataclass
class Runtime:
    """Where and how this process computes."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda, then mps, then cpu; or the device the user named."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device, join the torchrun process group if there is one, set determinism and AMP."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # long timeout: ensemble-train ranks wait at a barrier while others finish their members
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=24))
        atexit.register(teardown_runtime)  # at the end of the command, however it ends
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // min(world, os.cpu_count() or 1)))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=device, rank=rank, world=world, amp_dtype=amp_dtype(cfg.amp, device))


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16: needs a CUDA device (use bf16 on CPU, or off)")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor of counts over ranks (pooled counts, never averaged rates)."""
    if runtime.distributed:
        values = values.to(runtime.device if runtime.device.type == "cuda" else "cpu")
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()


def reduce_progress(stop: bool, loss_sum: torch.Tensor, count: int, runtime: Runtime) -> tuple[bool, float, int]:
    """Over all ranks (one all-reduce): whether any rank was told to stop, the summed training loss
    and the number of steps it sums. A NaN on one rank makes the sum NaN on all of them."""
    if not runtime.distributed:
        return stop, float(loss_sum), count
    pooled = all_reduce_sum(torch.stack([torch.tensor(float(stop), dtype=torch.float64),
                                         loss_sum.detach().double().cpu(),
                                         torch.tensor(float(count), dtype=torch.float64)]), runtime)
    return bool(pooled[0] > 0), float(pooled[1]), int(pooled[2])


def broadcast_from_main(model: nn.Module, runtime: Runtime) -> None:
    """Give every rank rank 0's weights and buffers, in place.

    Under DDP the gradients are averaged, but BatchNorm running statistics are not:
    each rank's last forward updates them from its own batch. Synced at each epoch
    end, every rank's shard of a sharded evaluation is scored by exactly the model
    that rank 0 saves, so pooled counts equal a single-process evaluation.
    """
    if not runtime.distributed:
        return
    for tensor in unwrap(model).state_dict().values():  # detached views of the module's own storage
        dist.broadcast(tensor, src=0)


def teardown_runtime() -> None:
    """Leave the torchrun process group (if this process joined one), so that torchrun exits cleanly.

    Registered with ``atexit`` by ``setup_runtime``; safe to call more than once.
    """
    if dist.is_available() and dist.is_initialized():
        # Leave together: a rank that tears its connections down while rank 0 is still writing the
        # checkpoint can make rank 0's own teardown fail on a closed peer (exit code != 0).
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
            else:
                dist.barrier()
        except RuntimeError:  # a rank already gone (it failed; torchrun reports that)
            pass
        dist.destroy_process_group()


# --------------------------------------------------------------------------- schedule


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (nesterov) or AdamW; no weight decay on biases and norm parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.resolved_lr()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def batch_cross_entropy(logits: torch.Tensor, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample CE [B] against the batch's labels, or its mixed soft targets where it has them."""
    targets = batch.soft_targets if batch.soft_targets is not None else batch.targets
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction="none")


def cross_entropy_objective(label_smoothing: float = 0.0) -> Objective:
    def objective(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return batch_cross_entropy(logits, batch, label_smoothing).mean(), {}

    return objective


# --------------------------------------------------------------------------- resumable state


def save_train_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
    """Model + optimizer tensors + JSON progress, in one safetensors file (no pickle), atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    opt_state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, pstate in opt_state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    meta = {
        "format": "modelupdate-train-state/1",
        "progress": json.dumps(progress, sort_keys=True),
        "optim_groups": json.dumps([{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                                    for g in opt_state["param_groups"]]),
        "optim_scalars": json.dumps(scalars),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def state_is_finite(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """No NaN / Inf in the model's floating-point weights and buffers, nor in the optimizer's state."""
    tensors = list(unwrap(model).state_dict().values())
    tensors += [v for pstate in optimizer.state.values() for v in pstate.values() if torch.is_tensor(v)]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def load_train_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "modelupdate-train-state/1":
        raise CheckpointError(f"{path}: not a modelupdate training state (format {meta.get('format')!r})")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        unwrap(model).load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: saved state does not fit this model ({state_dict_error(exc)}); "
                              f"was the command changed since the run started?") from None
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in json.loads(meta["optim_scalars"]).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
    return json.loads(meta["progress"])


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, info: DatasetInfo, runtime: Runtime, *,
                   batch_size: int = 1024, channels_last: bool = False, shard: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [N, C] (float32, CPU), targets [N], ids [N] of this rank's shard (all of it when shard=False)."""
    was_training = model.training
    model.eval()
    rank, world = (runtime.rank, runtime.world) if shard else (0, 1)
    outs, targets, ids = [], [], []
    for batch in eval_batches(split, info, batch_size=batch_size, device=runtime.device, rank=rank, world=world,
                              channels_last=channels_last):
        with runtime.autocast():
            logits = model(batch.images)
        outs.append(logits.float().cpu())
        targets.append(batch.targets.cpu())
        ids.append(batch.ids.cpu())
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(targets), torch.cat(ids)


def gather_predictions(logits: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, runtime: Runtime):
    """All ranks' shards concatenated in id order (for files written by rank 0)."""
    if not runtime.distributed:
        return logits, targets, ids
    parts: list[Any] = [None] * runtime.world
    dist.all_gather_object(parts, (logits.numpy(), targets.numpy(), ids.numpy()))
    lg = torch.cat([torch.from_numpy(p[0]) for p in parts if len(p[2])])
    tg = torch.cat([torch.from_numpy(p[1]) for p in parts if len(p[2])])
    ix = torch.cat([torch.from_numpy(p[2]) for p in parts if len(p[2])])
    order = ix.argsort()
    return lg[order], tg[order], ix[order]


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


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    runtime: Runtime,
    *,
    objective: Objective | None = None,
    epoch_metrics: Callable[[nn.Module], dict[str, Any]] | None = None,
    on_event: EventHandler | None = None,
    state_path: Path | None = None,
    resume: bool = False,
    prepare_batch: Callable[[Batch], Batch] | None = None,
    data_recipe: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``data.train``; evaluate on ``data.val`` after each epoch.

    ``objective`` defaults to cross-entropy with ``cfg.label_smoothing``.
    ``epoch_metrics(model)`` adds metrics (e.g. NFR against the old model) to each epoch's log.
    ``state_path``: where the resumable state is written every ``cfg.checkpoint_every`` steps,
    at each epoch end and on SIGINT/SIGTERM; with ``resume`` the run continues from it, if it was
    written with the same recipe and ``data_recipe`` (the data options and fingerprint).
    """
    emit = on_event or (lambda event: None)
    objective = objective or cross_entropy_objective(cfg.label_smoothing)
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
        train_model = torch.compile(train_model)
    scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp_dtype == torch.float16)

    n_train = len(data.train)
    if n_train == 0:
        raise ConfigError("the training split is empty")
    steps_per_epoch = math.ceil(len(train_order(n_train, seed=cfg.seed, epoch=0, rank=runtime.rank,
                                                world=runtime.world, batch_size=cfg.batch_size)) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    base_lr = cfg.resolved_lr()

    result = FitResult()
    start_epoch, start_step = 0, 0
    resumed_loss: tuple[float, int] = (0.0, 0)
    prior_seconds = 0.0  # training time of the interrupted runs this one continues
    if resume and state_path is not None and state_path.exists():
        progress = load_train_state(state_path, model, optimizer)
        start_epoch, start_step = progress["epoch"], progress["step"]
        check_same_recipe(progress.get("config", {}), cfg, state_path)
        check_same_data(progress.get("data"), data_recipe, state_path)
        if progress.get("grad_scaler") and scaler.is_enabled():
            scaler.load_state_dict(progress["grad_scaler"])
        resumed_loss = (progress.get("epoch_loss_sum", 0.0), progress.get("epoch_loss_count", 0))
        prior_seconds = float(progress.get("seconds", 0.0))
        result.history = progress.get("history", [])
        result.resumed_from_step = start_epoch * steps_per_epoch + start_step
        emit({"type": "resume", "epoch": start_epoch, "step": start_step, "epochs": cfg.epochs,
              "path": str(state_path)})

    stop = {"signal": None}

    def save_state(epoch: int, step: int, loss_sum: float = 0.0, loss_count: int = 0) -> None:
        if state_path is not None:
            # a finite loss does not make finite weights: the update after it may overflow (huge --lr),
            # and a state with NaN / Inf weights must never replace the last good one. Checked on every
            # rank (DDP keeps their weights equal), so that all of them stop together.
            if not state_is_finite(model, optimizer):
                good = f"; the last good state is in {state_path}" if state_path.exists() else ""
                where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
                raise TrainingDiverged(f"weights became NaN or Inf by {where}{good}; "
                                       f"try a lower --lr (now {base_lr:g}) or --amp off")
            if not runtime.is_main:
                return
            # the epoch's loss so far too: a resumed epoch then logs the mean over all its steps
            save_train_state(state_path, model, optimizer, {"epoch": epoch, "step": step,
                                                            "history": result.history, "config": cfg.to_dict(),
                                                            "data": data_recipe,
                                                            "grad_scaler": scaler.state_dict() if
                                                            scaler.is_enabled() else None,
                                                            "epoch_loss_sum": loss_sum,
                                                            "epoch_loss_count": loss_count,
                                                            "seconds": prior_seconds + time.perf_counter()
                                                            - t_start})

    def on_signal(signum, frame):  # finish the step, save, then stop
        stop["signal"] = signum

    old_handlers = {}
    for s in (signal.SIGINT, signal.SIGTERM):  # on every rank: torchrun passes a signal on to all of them
        try:
            old_handlers[s] = signal.signal(s, on_signal)
        except ValueError:  # not the main thread
            pass

    emit({"type": "start", "epochs": cfg.epochs, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
          "n_train": n_train, "device": str(runtime.device), "world": runtime.world, "start_epoch": start_epoch,
          "start_step": start_step})
    t_start = time.perf_counter()
    images_seen = 0
    try:
        for epoch in range(start_epoch, cfg.epochs):
            train_model.train()
            loss_sum = torch.zeros((), device=runtime.device)
            loss_count = 0
            if epoch == start_epoch and start_step > 0:
                loss_sum, loss_count = torch.tensor(resumed_loss[0], device=runtime.device), resumed_loss[1]
            t_epoch = time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            mean_loss = float(loss_sum) / max(loss_count, 1)  # a state saved after the epoch's last step
            for step, batch in train_batches(data.train, data.info, batch_size=cfg.batch_size, seed=cfg.seed,
                                             epoch=epoch, start_step=first, device=runtime.device,
                                             rank=runtime.rank, world=runtime.world,
                                             channels_last=cfg.channels_last):
                global_step = epoch * steps_per_epoch + step
                lr = lr_at(global_step, total_steps, warmup_steps, base_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.manual_seed(step_seed(cfg.seed, epoch, step, runtime.rank, "dropout"))  # resumable
                if prepare_batch is not None:
                    batch = prepare_batch(batch)
                if cfg.mixup > 0 or cfg.cutmix > 0:  # the reference, in the objective, sees the mixed batch
                    batch = mix_batch(batch, data.info.num_classes, mixup=cfg.mixup, cutmix=cfg.cutmix,
                                      mix_prob=cfg.mix_prob, switch_prob=cfg.mix_switch_prob,
                                      seed=step_seed(cfg.seed, epoch, step, runtime.rank, "mix"))
                with runtime.autocast():
                    logits = train_model(batch.images)
                    loss, parts = objective(logits, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                log_now = (step + 1) % 20 == 0 or step + 1 == steps_per_epoch
                grad_norm = None
                if cfg.clip_grad_norm or log_now:
                    scaler.unscale_(optimizer)  # the true gradients, not fp16-scaled ones
                    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm or math.inf)
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach()
                loss_count += 1
                images_seen += batch.targets.shape[0] * runtime.world
                save_now = bool(cfg.checkpoint_every) and (global_step + 1) % cfg.checkpoint_every == 0 \
                    and step + 1 < steps_per_epoch
                # Under torchrun every rank must stop at the same step (a rank that leaves the loop alone
                # leaves the others waiting in their next all-reduce): ranks check at the steps they all
                # log or save at, and agree there on a signal or a NaN seen by any of them.
                check_now = log_now or save_now or (stop["signal"] is not None and not runtime.distributed)
                stopping = False
                if check_now:  # never save a state after a NaN step
                    stopping, g_sum, g_count = reduce_progress(stop["signal"] is not None, loss_sum, loss_count,
                                                               runtime)
                    mean_loss = g_sum / g_count  # over all ranks' steps
                    if not math.isfinite(mean_loss):
                        saved = state_path is not None and state_path.exists()
                        save_hint = f"; the last good state is in {state_path}" if saved else ""
                        raise TrainingDiverged(
                            f"loss became {mean_loss} at epoch {epoch + 1}, step {step + 1}{save_hint}; "
                            f"try a lower --lr (now {base_lr:g}) or --amp off")
                if log_now:
                    elapsed = time.perf_counter() - t_start
                    emit({"type": "step", "epoch": epoch, "step": step + 1, "steps_per_epoch": steps_per_epoch,
                          "global_step": global_step + 1, "total_steps": total_steps, "loss": mean_loss, "lr": lr,
                          "images_per_second": images_seen / max(elapsed, 1e-9),
                          "grad_norm": float(grad_norm)}  # this rank's, before clipping
                         | {k: float(v) for k, v in parts.items()})
                if save_now or stopping:
                    # each rank resumes from 1/world of the pooled sums: pooled again, they are these
                    save_state(epoch, step + 1, g_sum / runtime.world, g_count // runtime.world)
                if stopping:
                    raise KeyboardInterrupt
            train_loss = mean_loss  # the last step always logs: the epoch's mean over all ranks
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"loss became {train_loss} in epoch {epoch + 1}; try a lower --lr")
            broadcast_from_main(model, runtime)  # BatchNorm statistics differ between ranks
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss,
                                      "epoch_seconds": time.perf_counter() - t_epoch, "lr": lr_at(
                                          (epoch + 1) * steps_per_epoch - 1, total_steps, warmup_steps, base_lr)}
            if len(data.val):
                logits_v, targets_v, _ = predict_logits(model, data.val, data.info, runtime,
                                                        batch_size=cfg.eval_batch_size,
                                                        channels_last=cfg.channels_last)
                record["val_error_rate"] = accuracy_counts(logits_v, targets_v, runtime)["error_rate"]
            if epoch_metrics is not None:
                record |= epoch_metrics(model)
            result.history.append(record)
            emit({"type": "epoch"} | record)
            save_state(epoch + 1, 0)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
    this_run = time.perf_counter() - t_start
    result.seconds = prior_seconds + this_run
    result.steps = total_steps
    result.images_per_second = images_seen / max(this_run, 1e-9)
    return result


# What makes two runs the same training recipe: a resumed run must match the interrupted one on these.
RECIPE_KEYS = ("arch", "arch_args", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
               "label_smoothing", "warmup_epochs", "clip_grad_norm", "seed", "dropout", "mixup", "cutmix",
               "mix_prob", "mix_switch_prob")


def check_same_recipe(saved: dict[str, Any], cfg: TrainConfig, state_path: Path) -> None:
    """Refuse to resume a state written by a run with another recipe (it would mix the two silently)."""
    current = cfg.to_dict()
    for key in RECIPE_KEYS:
        if key in saved and saved[key] != current[key]:
            raise ConfigError(f"--resume: {state_path} was written with {key} = {saved[key]!r}, this command has "
                              f"{current[key]!r}; rerun with the same options, or delete the state to start over")


def check_same_data(saved: dict[str, Any] | None, current: dict[str, Any] | None, state_path: Path) -> None:
    """Refuse to resume on other data (another dataset, subset, split or augmentation) than the state's."""
    if not saved or not current:
        return
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise ConfigError(f"--resume: {state_path} was written with data {key} = {saved.get(key)!r}, this "
                              f"command has {current.get(key)!r}; rerun with the same data options, or delete the "
                              f"state to start over")
