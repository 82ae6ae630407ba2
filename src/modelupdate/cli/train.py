"""The training commands: train, ensemble-train, ldi-train. Each gathers its options, makes one
library call (a workflow) and prints the checkpoint's summary (rank 0 only under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..launch import is_rank0
from ..methods import held_against
from .console import out_console, print_written
from .errors import RESUME_HINT, run
from .groups import FIRST, with_options
from .options import CSV_COLUMNS, ENSEMBLE, METHOD, TRAINING, TrainingRun

if TYPE_CHECKING:
    from ..events.tracking import Tracking


@with_options(TRAINING)
def train_cmd(ctx: typer.Context) -> None:
    """Train one model (the old model, or a plain baseline) and write its checkpoint."""
    from ..workflows.train import train

    job = TRAINING.of(ctx)

    with tracking(job) as tracked:
        result = run(lambda: train(job.data, job.train, job.out, resume=job.resume,
                                   on_event=events(job, job.train.arch, tracked)),
                     on_interrupt=RESUME_HINT)
    if is_rank0():
        _print_model_summary(result.out, result.meta.metrics, result.seconds)


@with_options(TRAINING)
@with_options(ENSEMBLE, after=FIRST)
def ensemble_train_cmd(ctx: typer.Context) -> None:
    """Train M members of one architecture into one ensemble file (the ELODI reference)."""
    from ..workflows.ensemble_train import ensemble_train

    job, ensemble = TRAINING.of(ctx), ENSEMBLE.of(ctx)
    members = ensemble.count
    with tracking(job) as tracked:
        result = run(lambda: ensemble_train(job.data, job.train, job.out, members, resume=job.resume,
                                            snapshots=ensemble.snapshots is not None,
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


def _percent(rate: float | None) -> str:
    """A rate as a percentage; "—" where there is none (no test split: an image folder of train/ and val/)."""
    return "—" if rate is None else f"{100 * rate:.2f}%"


@with_options(TRAINING)
@with_options(CSV_COLUMNS, after="old")
@with_options(METHOD, after="reference")
def ldi_train_cmd(
    ctx: typer.Context,
    old: Annotated[Path | None, typer.Option("--old", help="The deployed (old) model: NFR is measured against it; "
                                             f"the reference of {', '.join(held_against('old'))}. Or only its "
                                             "predictions (.npz, .csv, predictions .safetensors) on the val or "
                                             "test split (an image folder's: both), for the flip metrics "
                                             "alone.")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="Reference ensemble (or model) for "
                                                   f"--method {' or '.join(held_against('reference'))}.")] = None,
    reference_cache: Annotated[Path | None, typer.Option("--reference-cache", help="Precompute the reference's "
                                                         "logits on un-augmented train images into this file "
                                                         "(reused if it exists).")] = None,
    allow_other_data: Annotated[bool, typer.Option("--allow-other-data", help="Accept an --old / --reference "
                                                   "trained on another dataset or validation split (transfer).")
                                ] = False,
) -> None:
    """Train the new model against a reference ensemble (ELODI) or with a baseline method."""
    from ..workflows.ldi_train import ldi_train

    job, update, csv_columns = TRAINING.of(ctx), METHOD.of(ctx), CSV_COLUMNS.of(ctx)
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

    return run(lambda: Tracking(job.out.stem, tensorboard=job.logdir, mlflow=job.mlflow, out=job.out,
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
