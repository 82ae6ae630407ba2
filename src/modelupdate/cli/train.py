"""The training commands: train, ensemble-train, ldi-train. Each gathers its options, makes one
library call (a workflow) and prints the checkpoint's summary (rank 0 only under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..methods import REGISTRY, UpdateConfig, held_against, using
from .console import is_rank0, out_console, print_written
from .errors import RESUME_HINT, run
from .options import UPDATE, TrainingRun, csv_column_command, per_method, shared_options, training_command

if TYPE_CHECKING:
    from ..events.tracking import Tracking


def _method_default(param: str, none: str = "none") -> str:
    """The [default: ...] of a loss parameter, per method that reads it (methods.py's registry)."""
    return f"[default: {per_method(using(param), none)}]"


@training_command
def train_cmd(job: TrainingRun) -> None:
    """Train one model (the old model, or a plain baseline) and write its checkpoint."""
    from ..workflows.train import train

    with tracking(job) as tracked:
        result = run(lambda: train(job.data, job.train, job.out, resume=job.resume,
                                   on_event=events(job, job.train.arch, tracked)),
                     on_interrupt=RESUME_HINT)
    if is_rank0():
        _print_model_summary(result.out, result.meta.metrics, result.seconds)


@training_command
def ensemble_train_cmd(
    job: TrainingRun,
    members: Annotated[int | None, typer.Option("--members", "-m", help="Number of members, trained apart (seeds "
                                                "seed+100..seed+100+M-1: apart from the other commands' "
                                                "seeds) [default: 4].")] = None,
    snapshots: Annotated[int | None, typer.Option("--snapshots", metavar="M", help="Instead of --members: M "
                                                  "snapshots of one run whose cosine schedule restarts M times "
                                                  "(a reference for the cost of one training).")] = None,
) -> None:
    """Train M members of one architecture into one ensemble file (the ELODI reference)."""
    from ..errors import ConfigError
    from ..workflows.ensemble_train import DEFAULT_MEMBERS, ensemble_train

    if members is not None and snapshots is not None:
        run(lambda: _refuse(ConfigError("--snapshots: replaces --members; give one of them")))
    members = snapshots if snapshots is not None else (members if members is not None else DEFAULT_MEMBERS)

    with tracking(job) as tracked:
        result = run(lambda: ensemble_train(job.data, job.train, job.out, members, resume=job.resume,
                                        snapshots=snapshots is not None,
                                            on_event=events(job, job.train.arch, tracked)),
                     on_interrupt=RESUME_HINT)
        if is_rank0():  # the ensemble's own test metrics, on the run its members' runs belong to
            run(lambda: tracked.finish(result.meta.metrics, result.out))
    if is_rank0():
        print_written(result.out, f"{members} members")
        table = Table()
        for col in ("member", "seed", "test error rate"):
            table.add_column(col, justify="right")
        for i, m in enumerate(result.member_metrics, start=1):  # numbered as the training log numbers them
            table.add_row(f"{i}/{members}", str(m["seed"]), _percent(m["test_error_rate"]))
        table.add_row("ensemble", "", _percent(result.meta.metrics["test_error_rate"]))
        out_console.print(table)


def _refuse(error: Exception) -> None:
    raise error


def _percent(rate: float | None) -> str:
    """A rate as a percentage; "—" where there is none (no test split: an image folder of train/ and val/)."""
    return "—" if rate is None else f"{100 * rate:.2f}%"


def _method_options(
    method: Annotated[str | None, typer.Option("--method", help="; ".join(
        f"{m.name}: {m.summary}" for m in REGISTRY.values()) + " [default: elodi with --reference, else ldi-old]."
    )] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Weight of the method's loss: (1-a)*CE + a*loss "
                                                f"{_method_default('alpha')}.")] = None,
    xi: Annotated[float | None, typer.Option("--xi", help="LDI margin: logit differences up to xi cost nothing "
                                             f"{_method_default('xi')}.")] = None,
    p: Annotated[float, typer.Option("--p", help="LDI exponent.")] = UPDATE.p,
    topk: Annotated[int | None, typer.Option("--topk", help="LDI over the union of the top-K classes of "
                                             "reference and student, per sample; 0: every class "
                                             f"{_method_default('topk', 'every class')}.")] = None,
    exclude_target: Annotated[bool | None, typer.Option("--exclude-target/--all-classes", help="Leave the true "
                                                        "class out of the LDI loss.")] = None,
    weighting: Annotated[str, typer.Option("--weighting", help="LDI: uniform over the classes, or each class "
                                           "weighted by the reference's softmax probability.")] = UPDATE.weighting,
    tau: Annotated[float | None, typer.Option("--tau", help="Temperature of kd and fd-kl "
                                              f"{_method_default('tau')}.")] = None,
    fd_a: Annotated[float, typer.Option("--fd-a", help="Focal distillation: weight of every sample.")] = UPDATE.fd_a,
    fd_b: Annotated[float, typer.Option("--fd-b", help="Focal distillation: extra weight where the old model is "
                                        "right.")] = UPDATE.fd_b,
) -> UpdateConfig:
    """ldi-train's method and its parameters; their defaults and help come from methods.py's registry."""
    return UpdateConfig(method=method, alpha=alpha, xi=xi, p=p, topk=topk, exclude_target=exclude_target,
                        weighting=weighting, tau=tau, fd_a=fd_a, fd_b=fd_b)


# ldi-train receives them as ``update: UpdateConfig``, listed where that parameter stands
method_command = shared_options(_method_options, "update", in_place=True)


@training_command
@csv_column_command
@method_command
def ldi_train_cmd(
    job: TrainingRun,
    old: Annotated[Path | None, typer.Option("--old", help="The deployed (old) model: NFR is measured against it; "
                                             f"the reference of {', '.join(held_against('old'))}. Or only its "
                                             "predictions (.npz, .csv, predictions .safetensors) on the val or "
                                             "test split (an image folder's: both), for the flip metrics "
                                             "alone.")] = None,
    csv_columns: tuple[str, str, str] = None,  # type: ignore[assignment]  # --old CSV's columns, here
    reference: Annotated[Path | None, typer.Option("--reference", help="Reference ensemble (or model) for "
                                                   f"--method {' or '.join(held_against('reference'))}.")] = None,
    update: UpdateConfig = None,  # type: ignore[assignment]  # the method's options, in this place (method_command)
    reference_cache: Annotated[Path | None, typer.Option("--reference-cache", help="Precompute the reference's "
                                                         "logits on un-augmented train images into this file "
                                                         "(reused if it exists).")] = None,
    allow_other_data: Annotated[bool, typer.Option("--allow-other-data", help="Accept an --old / --reference "
                                                   "trained on another dataset or validation split (transfer).")
                                ] = False,
) -> None:
    """Train the new model against a reference ensemble (ELODI) or with a baseline method."""
    from ..workflows.ldi_train import ldi_train

    with tracking(job) as tracked:
        result = run(lambda: ldi_train(job.data, job.train, update, job.out, old=old, reference=reference,
                                       reference_cache=reference_cache, resume=job.resume,
                                       allow_other_data=allow_other_data, old_columns=csv_columns,
                                       on_event=events(job, update.method or "ldi-train", tracked)),
                     on_interrupt=RESUME_HINT)
    if is_rank0():
        _print_model_summary(result.out, result.meta.metrics, result.seconds)


def tracking(job: TrainingRun) -> Tracking:
    """--tensorboard and --mlflow: a run named after --out's stem, closed with the command's outcome."""
    from ..events.tracking import Tracking

    return run(lambda: Tracking(job.out.stem, tensorboard=job.tensorboard, mlflow=job.mlflow, out=job.out,
                                resume=job.resume))


def events(job: TrainingRun, label: str, tracked: Tracking):
    """What the engine's records go to: the progress display, and the trackers asked for."""
    from ..events import tee
    from ..events.progress import ProgressPrinter

    return tee(ProgressPrinter(quiet=job.quiet, label=label), tracked if tracked.sinks else None)


def _print_model_summary(out: Path, metrics: dict[str, Any], seconds: float) -> None:
    print_written(out)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in (("test_error_rate", "test error rate"), ("val_error_rate", "val error rate"),
                       ("test_nfr", "test NFR vs old"), ("ensemble_test_error_rate", "ensemble test error rate")):
        if metrics.get(key) is not None:
            table.add_row(label, f"{100 * metrics[key]:.2f}%")
    if metrics.get("test_negative_flips") is not None:
        table.add_row("test negative flips", str(metrics["test_negative_flips"]))
    if metrics.get("val_nfr") is not None and metrics.get("test_nfr") is None:  # old predictions cover val only
        table.add_row("val NFR vs old", f"{100 * metrics['val_nfr']:.2f}%")
    table.add_row("training time", f"{seconds:.1f} s")
    out_console.print(table)
