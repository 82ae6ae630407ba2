"""The analysis commands: models, info, predict, flip-report (the CI gate) and compare.

Each gathers its options, makes one library call and renders the result. Exit codes: 0 success (every
gate passes), 1 a gate fails (flip-report; compare: any candidate), 2 bad usage or input (one line on
stderr). Report files are
rendered in memory and written all or none once every input has been read and checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .console import err_console, out_console, print_written, progress
from .errors import run
from .groups import with_options
from .options import (
    EVALUATION,
    GATE_OPTIONS,
    PREDICTION_FILES,
    Data,
    HtmlPath,
    JsonOut,
    JsonPath,
    MarkdownPath,
    OldInput,
    OptionalData,
    PrCommentPath,
)


def models_cmd() -> None:
    """List the registered architectures."""
    from ..models import ARCHS

    table = Table(title="architectures")
    table.add_column("name")
    table.add_column("description")
    for name in sorted(ARCHS):
        table.add_row(name, ARCHS[name][1])
    out_console.print(table)


def info_cmd(checkpoint: Annotated[Path, typer.Argument(help="A model or ensemble .safetensors file.")],
             as_json: JsonOut = False) -> None:
    """Show a checkpoint's metadata."""
    from ..formats import read_meta

    meta = run(lambda: read_meta(checkpoint))
    header = meta.to_header() | {"config": json.dumps(shown_config(meta.config), sort_keys=True)}
    if as_json:
        print(json.dumps({k: _maybe_json(v) for k, v in header.items()}, indent=2, sort_keys=True))
        return
    table = Table(title=str(checkpoint), show_lines=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in header.items():
        table.add_row(key, value)
    out_console.print(table)


# DataConfig fields that only one kind of dataset reads (docs/cli.md): info leaves out those of other kinds
SYNTHETIC_ONLY = ("synthetic_classes", "synthetic_size", "synthetic_channels", "synthetic_train", "synthetic_test")
IMAGEFOLDER_ONLY = ("image_size", "stream", "memory_budget", "workers", "max_image_pixels", "cache_dir")


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's training config as ``info`` shows it: only the data options its dataset reads, and the
    learning rate really used where the default was left (``"lr": null`` would say nothing)."""
    from ..config import TrainConfig
    from ..errors import ModelUpdateError

    shown = dict(config)
    data = config.get("data")
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        name = data["name"]
        skipped = (() if name == "synthetic" else SYNTHETIC_ONLY) + \
            (() if name.startswith("imagefolder:") else IMAGEFOLDER_ONLY)
        shown["data"] = {k: v for k, v in data.items() if k not in skipped}
    train = config.get("train")
    if isinstance(train, dict) and "lr" in train and train["lr"] is None:
        defaults = TrainConfig()
        try:
            lr = TrainConfig(batch_size=train.get("batch_size", defaults.batch_size),
                             optimizer=train.get("optimizer", defaults.optimizer)).resolved_lr()
        except ModelUpdateError:  # a damaged config: shown as stored
            lr = None
        shown["train"] = train | {"lr": lr}
    return shown


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@with_options(EVALUATION)
def predict_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A model or ensemble "
                                               "checkpoint (.safetensors).")],
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Prediction file to write: .npz or "
                                      ".safetensors (logits, preds, targets, ids).")],
) -> None:
    """Run a checkpoint on a dataset split and write its predictions (for flip-report / compare)."""
    from ..workflows.predict import predict

    options = run(lambda: EVALUATION.of(ctx).config(data))
    assert options.data is not None
    with progress(f"predict {checkpoint.name}") as on_batch:
        result = run(lambda: predict(checkpoint, options.data, out, split=options.split,
                                     device=options.device, batch_size=options.batch_size,
                                     image_size_from_checkpoint=options.image_size_from_checkpoint,
                                     on_batch=on_batch))
    p = result.predictions
    print_written(result.out)
    table = Table()
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("samples", f"{len(p):,}")
    table.add_row("classes", str(p.num_classes))
    table.add_row("split", f"{p.meta.get('dataset')} / {p.meta.get('split')}")
    table.add_row("error rate", f"{100 * result.error_rate:.2f}%")
    table.add_row("checkpoint sha256", p.meta.get("checkpoint_sha256", "")[:16] + "...")
    out_console.print(table)


@with_options(EVALUATION, after="data")
@with_options(PREDICTION_FILES, after=EVALUATION)
@with_options(GATE_OPTIONS)
def flip_report_cmd(
    ctx: typer.Context,
    old: OldInput,
    new: Annotated[Path, typer.Option("--new", help="The candidate update: a checkpoint, an "
                                      "ensemble or a prediction file.")],
    data: OptionalData = None,
    json_path: JsonPath = None,
    markdown_path: MarkdownPath = None,
    flips_csv_path: Annotated[Path | None, typer.Option(
        "--flips-csv", help="Write every flipped sample (id, target, old and new prediction) "
        "as CSV.")] = None,
    html_path: HtmlPath = None,
    pr_comment_path: PrCommentPath = None,
) -> None:
    """How many regressions does the new model bring, where, and do the gates pass?

    Exit code 0: every gate passes; 1: a gate fails; 2: bad usage or input.
    """
    from ..gates import failed_gates
    from ..report import ReportFormat as F
    from ..report import flip_report_rich
    from ..workflows.flip_report import run_flip_report

    gates = GATE_OPTIONS.of(ctx)
    options = run(lambda: EVALUATION.of(ctx).config(data, PREDICTION_FILES.of(ctx)))
    done = run(lambda: run_flip_report(old, new, options, gates, {
        F.JSON: json_path, F.MARKDOWN: markdown_path, F.FLIPS_CSV: flips_csv_path, F.HTML: html_path,
        F.PR_COMMENT: pr_comment_path}))
    _show(done.stdout, lambda: flip_report_rich(done.report))
    if not done.report.passed:
        err_console.print(f"gate failed: {', '.join(failed_gates(done.report.gates))}", soft_wrap=True)
        raise typer.Exit(1)


@with_options(EVALUATION, after="data")
@with_options(PREDICTION_FILES, after=EVALUATION)
@with_options(GATE_OPTIONS)
def compare_cmd(
    ctx: typer.Context,
    candidates: Annotated[list[Path], typer.Argument(
        metavar="CANDIDATE", help="Candidate updates: checkpoints, ensembles or prediction "
        "files.")],
    old: OldInput,
    names: Annotated[list[str] | None, typer.Option(
        "--name", metavar="NAME", help="Name of a candidate, once per candidate in order [default: file "
        "names].")] = None,
    data: OptionalData = None,
    json_path: JsonPath = None,
    markdown_path: MarkdownPath = None,
    html_path: HtmlPath = None,
    pr_comment_path: PrCommentPath = None,
) -> None:
    """Several candidate updates against one old model: error, flips, cost, Pareto front, and the
    gates of flip-report held to each candidate.

    Exit code 0: every candidate passes every gate (also when none is set); 1: a candidate fails a
    gate; 2: bad usage or input.
    """
    from ..gates import failed_gates
    from ..report import ReportFormat as F
    from ..report import compare_rich
    from ..workflows.compare import run_compare

    gates = GATE_OPTIONS.of(ctx)
    options = run(lambda: EVALUATION.of(ctx).config(data, PREDICTION_FILES.of(ctx)))
    done = run(lambda: run_compare(old, candidates, names or [], options, {
        F.JSON: json_path, F.MARKDOWN: markdown_path, F.HTML: html_path, F.PR_COMMENT: pr_comment_path}, gates))
    _show(done.stdout, lambda: compare_rich(done.result))
    if not done.result.passed:
        failed = ", ".join(f"{row.name} ({', '.join(failed_gates(row.gates))})"
                           for row in done.result.rows if not row.passed)
        err_console.print(f"gate failed: {failed}", soft_wrap=True)
        raise typer.Exit(1)


def _show(stdout_text: str | None, rich) -> None:
    """The report asked for on stdout ('-'), as it is; else the tables."""
    if stdout_text is not None:
        sys.stdout.write(stdout_text)
        sys.stdout.flush()
    else:
        out_console.print(rich())
