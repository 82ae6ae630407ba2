"""The `modelupdate` command line. Each command: parse options, build configs, call one
workflow, render its result. Errors from the library become one line on stderr and an exit code."""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import DataConfig, TrainConfig
from .errors import ModelUpdateError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Replace a deployed classifier with a better one without regressions (ELODI).")
class SafeConsole(Console):
    """A console that shows every string as it is: no Rich markup is read from it (class names, paths and
    metadata are data), and control characters are escaped rather than sent to the terminal."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, highlight=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any):  # every str a table, title or print() shows
        from .report import terminal_safe

        return super().render_str(terminal_safe(text), **kwargs)


out_console = SafeConsole()
err_console = SafeConsole(stderr=True)
T = TypeVar("T")

# --------------------------------------------------------------------------- shared options

Data = Annotated[str, typer.Option("--data", help="Dataset: fashion-mnist, mnist, cifar10, cifar100, "
                                   "imagefolder:PATH or synthetic.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Folder holding the dataset files.")]
Download = Annotated[bool, typer.Option("--download", help="Download the dataset through torchvision if missing.")]
ValFraction = Annotated[float, typer.Option("--val-fraction", help="Share of train held out for validation.")]
TrainSubset = Annotated[str | None, typer.Option("--train-subset", help="Train on a seeded subset: a fraction "
                                                 "(0.33) or a count (20000).")]
SplitSeed = Annotated[int, typer.Option("--split-seed", help="Seed of the validation split and the subset.")]
NoAugment = Annotated[bool, typer.Option("--no-augment", help="Turn off train-time augmentation.")]
ImageSize = Annotated[int, typer.Option("--image-size", help="imagefolder: resize images to this size.")]
Arch = Annotated[str, typer.Option("--arch", help="Architecture (see `modelupdate models`) or package.module:factory.")]
ArchArgs = Annotated[str, typer.Option("--arch-args", help="Architecture arguments as a JSON object, "
                                       "e.g. '{\"width\": 48}'.")]
Epochs = Annotated[int, typer.Option("--epochs", help="Training epochs.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Batch size per process.")]
Lr = Annotated[float | None, typer.Option("--lr", help="Peak learning rate [default: 0.1*batch/256 for SGD, "
                                          "2e-3 for AdamW].")]
Optimizer = Annotated[str, typer.Option("--optimizer", help="sgd (nesterov momentum) or adamw.")]
WeightDecay = Annotated[float, typer.Option("--weight-decay", help="Weight decay (not on biases / norms).")]
LabelSmoothing = Annotated[float, typer.Option("--label-smoothing", help="Label smoothing of the cross-entropy.")]
Warmup = Annotated[float, typer.Option("--warmup-epochs", help="Linear warm-up before the cosine decay.")]
ClipGradNorm = Annotated[float | None, typer.Option(
    "--clip-grad-norm", help="Clip the L2 norm of all gradients together to this value; 0: no clipping "
    "[default: none, but ldi-train's elodi, ldi-old and fd-lm clip at 5: their squared logit differences have "
    "unbounded gradients].")]
Dropout = Annotated[float | None, typer.Option(
    "--dropout", help="Train-time probability of every dropout layer; 0 turns dropout off [default: the "
    "architecture's own, but ldi-train's elodi and ldi-old train without dropout].")]
Mixup = Annotated[float, typer.Option("--mixup", help="MixUp: Beta(a, a) concentration of the mixing weight; "
                                      "0: off. The reference sees the same mixed batch.")]
Cutmix = Annotated[float, typer.Option("--cutmix", help="CutMix: Beta(a, a) concentration; 0: off.")]
MixProb = Annotated[float, typer.Option("--mix-prob", help="Share of the batches that are mixed (mixup/cutmix).")]
MixSwitchProb = Annotated[float, typer.Option("--mix-switch-prob", help="With both --mixup and --cutmix: "
                                              "chance that a mixed batch uses CutMix.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of initialisation, data order and augmentation.")]
Device = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")]
Amp = Annotated[str, typer.Option("--amp", help="Mixed precision: off, auto, bf16, fp16 (fp16: CUDA only).")]
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="channels_last memory format.")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model.")]
Deterministic = Annotated[bool, typer.Option("--deterministic", help="Deterministic algorithms (bitwise resume "
                                             "on CPU).")]
SyncBn = Annotated[bool, typer.Option("--sync-bn", help="SyncBatchNorm under torchrun.")]
CheckpointEvery = Annotated[int, typer.Option("--checkpoint-every", help="Steps between resumable-state saves.")]
Out = Annotated[Path, typer.Option("--out", help="Output checkpoint (.safetensors).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same command.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Plain per-epoch log lines instead of a progress bar.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def data_config(data: str, data_dir: Path | None, download: bool, val_fraction: float, train_subset: str | None,
                split_seed: int, no_augment: bool, image_size: int) -> DataConfig:
    return DataConfig(name=data, data_dir=str(data_dir) if data_dir else None, download=download,
                      val_fraction=val_fraction, train_subset=train_subset, split_seed=split_seed,
                      augment=not no_augment, image_size=image_size)


def train_config(arch: str, arch_args: str, epochs: int, batch_size: int, lr: float | None, optimizer: str,
                 weight_decay: float, label_smoothing: float, warmup_epochs: float, seed: int, device: str,
                 amp: str, channels_last: bool, compile: bool, deterministic: bool, sync_bn: bool,
                 checkpoint_every: int, clip_grad_norm: float | None = None, dropout: float | None = None,
                 mixup: float = 0.0, cutmix: float = 0.0, mix_prob: float = 1.0,
                 mix_switch_prob: float = 0.5) -> TrainConfig:
    try:
        parsed_args = json.loads(arch_args)
    except json.JSONDecodeError:
        raise typer.BadParameter(f"expected a JSON object, got {arch_args!r}", param_hint="--arch-args") from None
    if not isinstance(parsed_args, dict):
        raise typer.BadParameter(f"expected a JSON object, got {arch_args!r}", param_hint="--arch-args")
    return TrainConfig(arch=arch, arch_args=parsed_args, epochs=epochs, batch_size=batch_size, lr=lr,
                       optimizer=optimizer, weight_decay=weight_decay, label_smoothing=label_smoothing,
                       warmup_epochs=warmup_epochs, seed=seed, device=device, amp=amp, channels_last=channels_last,
                       compile=compile, deterministic=deterministic, sync_bn=sync_bn,
                       checkpoint_every=checkpoint_every, clip_grad_norm=clip_grad_norm, dropout=dropout,
                       mixup=mixup, cutmix=cutmix, mix_prob=mix_prob, mix_switch_prob=mix_switch_prob)


def run(fn: Callable[[], T], *, on_interrupt: str = "interrupted") -> T:
    """Call the library; turn its errors into one line on stderr and an exit code."""
    debug = bool(os.environ.get("MODELUPDATE_DEBUG"))
    # a training command's Ctrl-C: the engine saved its state before re-raising
    try:
        return fn()
    except ModelUpdateError as exc:
        if debug:
            raise
        prefix = "" if exc.exit_code == 0 else "error: "  # e.g. --resume on a finished output: a note
        err_console.print(f"{prefix}{exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if is_rank0():  # under torchrun every rank stops; one says so
            err_console.print(on_interrupt, markup=False, highlight=False)
        raise typer.Exit(130) from None


RESUME_HINT = "interrupted: the resumable state was saved; rerun the same command with --resume"


def is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _print_version(value: bool) -> None:
    if value:
        out_console.print(f"modelupdate {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    # eager: handled before click asks for a command, so `modelupdate --version` alone works
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
    allow_arch_module: Annotated[list[str] | None, typer.Option(
        "--allow-arch-module", metavar="MODULE", help="Let checkpoints name architecture factories in this "
        "module (and its submodules); repeatable; adds to $MODELUPDATE_ARCH_MODULES. Without it a checkpoint "
        "naming code is refused.")] = None,
) -> None:
    if debug:
        os.environ["MODELUPDATE_DEBUG"] = "1"
    if allow_arch_module:
        from .models import ARCH_MODULES_ENV

        current = os.environ.get(ARCH_MODULES_ENV, "")
        os.environ[ARCH_MODULES_ENV] = ",".join([m for m in current.split(",") if m] + list(allow_arch_module))


# --------------------------------------------------------------------------- commands


@app.command("models")
def models_cmd() -> None:
    """List the registered architectures."""
    from .models import ARCHS

    table = Table(title="architectures")
    table.add_column("name")
    table.add_column("description")
    for name in sorted(ARCHS):
        table.add_row(name, ARCHS[name][1])
    out_console.print(table)


@app.command("info")
def info_cmd(checkpoint: Annotated[Path, typer.Argument(help="A model or ensemble .safetensors file.")],
             as_json: JsonOut = False) -> None:
    """Show a checkpoint's metadata."""
    from .checkpoint import read_meta

    meta = run(lambda: read_meta(checkpoint))
    header = meta.to_header()
    if as_json:
        print(json.dumps({k: _maybe_json(v) for k, v in header.items()}, indent=2, sort_keys=True))
        return
    table = Table(title=str(checkpoint), show_lines=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in header.items():
        table.add_row(key, value)
    out_console.print(table)


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _training_options(
    out: Out = Path("model.safetensors"), data: Data = "synthetic", arch: Arch = "cnn-s", arch_args: ArchArgs = "{}",
    epochs: Epochs = 2, batch_size: BatchSize = 128, lr: Lr = None, optimizer: Optimizer = "sgd",
    weight_decay: WeightDecay = 5e-4, label_smoothing: LabelSmoothing = 0.0, warmup_epochs: Warmup = 0.5,
    clip_grad_norm: ClipGradNorm = None, dropout: Dropout = None, mixup: Mixup = 0.0, cutmix: Cutmix = 0.0,
    mix_prob: MixProb = 1.0, mix_switch_prob: MixSwitchProb = 0.5, seed: Seed = 0, device: Device = "auto",
    amp: Amp = "off", channels_last: ChannelsLast = False,
    compile: Compile = False, deterministic: Deterministic = False, sync_bn: SyncBn = False,
    checkpoint_every: CheckpointEvery = 200, data_dir: DataDir = None, download: Download = False,
    val_fraction: ValFraction = 0.1, train_subset: TrainSubset = None, split_seed: SplitSeed = 0,
    no_augment: NoAugment = False, image_size: ImageSize = 32, resume: Resume = False, quiet: Quiet = False,
) -> TrainingRun:
    """The options every training command shares (one place for their names, help and defaults)."""
    return TrainingRun(
        out=out,
        data=data_config(data, data_dir, download, val_fraction, train_subset, split_seed, no_augment, image_size),
        train=train_config(arch, arch_args, epochs, batch_size, lr, optimizer, weight_decay, label_smoothing,
                           warmup_epochs, seed, device, amp, channels_last, compile, deterministic, sync_bn,
                           checkpoint_every, clip_grad_norm, dropout, mixup, cutmix, mix_prob, mix_switch_prob),
        resume=resume, quiet=quiet)


@dataclass
class TrainingRun:
    out: Path
    data: DataConfig
    train: TrainConfig
    resume: bool
    quiet: bool


def training_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared training options; it receives them as one ``run: TrainingRun``."""
    shared = inspect.signature(_training_options, eval_str=True).parameters
    own = [p for name, p in inspect.signature(fn, eval_str=True).parameters.items() if name != "job"]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> None:
        shared_kwargs = {name: kwargs.pop(name) for name in shared}
        job = run(lambda: _training_options(**shared_kwargs))
        return fn(job=job, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + list(shared.values()))  # type: ignore[attr-defined]
    wrapper.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "job"} | {
        k: v for k, v in _training_options.__annotations__.items() if k != "return"}
    return wrapper


@app.command("train")
@training_command
def train_cmd(job: TrainingRun) -> None:
    """Train one model (the old model, or a plain baseline) and write its checkpoint."""
    from .progress import ProgressPrinter
    from .workflows.train import train

    result = run(lambda: train(job.data, job.train, job.out, resume=job.resume,
                               on_event=ProgressPrinter(quiet=job.quiet, label=job.train.arch)),
                 on_interrupt=RESUME_HINT)
    if is_rank0():
        _print_model_summary(result.out, result.meta.metrics, result.seconds)


@app.command("ensemble-train")
@training_command
def ensemble_train_cmd(
    job: TrainingRun,
    members: Annotated[int, typer.Option("--members", "-m", help="Number of members (seeds seed..seed+M-1).")] = 4,
) -> None:
    """Train M members of one architecture into one ensemble file (the ELODI reference)."""
    from .progress import ProgressPrinter
    from .workflows.ensemble_train import ensemble_train

    result = run(lambda: ensemble_train(job.data, job.train, job.out, members, resume=job.resume,
                                        on_event=ProgressPrinter(quiet=job.quiet, label=job.train.arch)),
                 on_interrupt=RESUME_HINT)
    if is_rank0():
        table = Table(title=f"wrote {result.out} ({members} members)")
        for col in ("member", "seed", "test error rate"):
            table.add_column(col, justify="right")
        for i, m in enumerate(result.member_metrics):
            table.add_row(str(i), str(m["seed"]), f"{100 * m['test_error_rate']:.2f}%")
        table.add_row("ensemble", "", f"{100 * result.meta.metrics['test_error_rate']:.2f}%")
        out_console.print(table)


@app.command("ldi-train")
@training_command
def ldi_train_cmd(
    job: TrainingRun,
    old: Annotated[Path | None, typer.Option("--old", help="The deployed (old) model: NFR is measured against it; "
                                             "the reference of ldi-old, kd, fd-*, new-error.")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="Reference ensemble (or model) for "
                                                   "--method elodi.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="elodi, ldi-old, kd, fd-kl, fd-lm, new-error or ce "
                                               "[default: elodi with --reference, else ldi-old].")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Weight of the method's loss: "
                                                "(1-a)*CE + a*loss.")] = None,
    xi: Annotated[float | None, typer.Option("--xi", help="LDI margin: logit differences up to xi "
                                             "cost nothing.")] = None,
    p: Annotated[float, typer.Option("--p", help="LDI exponent.")] = 2.0,
    topk: Annotated[int | None, typer.Option("--topk", help="LDI over the union of the top-K classes of "
                                             "reference and student, per sample.")] = None,
    exclude_target: Annotated[bool | None, typer.Option("--exclude-target/--all-classes", help="Leave the true "
                                                        "class out of the LDI loss.")] = None,
    weighting: Annotated[str, typer.Option("--weighting", help="LDI: uniform over the classes, or each class "
                                           "weighted by the reference's softmax probability.")] = "uniform",
    tau: Annotated[float | None, typer.Option("--tau", help="Temperature of kd and fd-kl.")] = None,
    fd_a: Annotated[float, typer.Option("--fd-a", help="Focal distillation: weight of every sample.")] = 1.0,
    fd_b: Annotated[float, typer.Option("--fd-b", help="Focal distillation: extra weight where the old model is "
                                        "right.")] = 5.0,
    reference_cache: Annotated[Path | None, typer.Option("--reference-cache", help="Precompute the reference's "
                                                         "logits on un-augmented train images into this file "
                                                         "(reused if it exists).")] = None,
    allow_other_data: Annotated[bool, typer.Option("--allow-other-data", help="Accept an --old / --reference "
                                                   "trained on another dataset or validation split (transfer).")
                                ] = False,
) -> None:
    """Train the new model against a reference ensemble (ELODI) or with a baseline method."""
    from .config import UpdateConfig
    from .progress import ProgressPrinter
    from .workflows.ldi_train import ldi_train

    if method is None:  # LDI towards the ensemble when there is one, else towards the old model
        method = "elodi" if reference is not None or old is None else "ldi-old"
    update = run(lambda: UpdateConfig(method=method, alpha=alpha, xi=xi, p=p, topk=topk,
                                      exclude_target=exclude_target, weighting=weighting, tau=tau,
                                      fd_a=fd_a, fd_b=fd_b))
    result = run(lambda: ldi_train(job.data, job.train, update, job.out, old=old, reference=reference,
                                   reference_cache=reference_cache, resume=job.resume,
                                   allow_other_data=allow_other_data,
                                   on_event=ProgressPrinter(quiet=job.quiet, label=method)), on_interrupt=RESUME_HINT)
    if is_rank0():
        _print_model_summary(result.out, result.meta.metrics, result.seconds)


def _print_model_summary(out: Path, metrics: dict[str, Any], seconds: float) -> None:
    table = Table(title=f"wrote {out}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in (("test_error_rate", "test error rate"), ("val_error_rate", "val error rate"),
                       ("test_nfr", "test NFR vs old"), ("ensemble_test_error_rate", "ensemble test error rate")):
        if metrics.get(key) is not None:
            table.add_row(label, f"{100 * metrics[key]:.2f}%")
    if metrics.get("test_negative_flips") is not None:
        table.add_row("test negative flips", str(metrics["test_negative_flips"]))
    table.add_row("training time", f"{seconds:.1f} s")
    out_console.print(table)


from . import cli_analysis  # noqa: E402,F401  (registers predict, flip-report, compare)


def main() -> None:
    """The `modelupdate` entry point: a usage error is one ``error:`` line and exit code 2 (``--help`` shows
    the usage); everything else exits as the command says."""
    try:  # typer >= 0.2x raises the exceptions of its own copy of click
        from typer import _click as click
    except ImportError:
        import click

    try:
        code = app(prog_name="modelupdate", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # a bare `modelupdate`
            out_console.print(exc.format_message(), markup=False, highlight=False)
            raise SystemExit(2) from None
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        err_console.print(f"error: {exc.format_message()}{hint}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except typer.Abort:
        err_console.print("interrupted", markup=False, highlight=False)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # a bug, not the user's input: exit 3, never the gate's 1
        if os.environ.get("MODELUPDATE_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err_console.print(f"error: internal error ({type(exc).__name__}: {first}); rerun with --debug for the "
                          f"traceback", soft_wrap=True)
        raise SystemExit(3) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
