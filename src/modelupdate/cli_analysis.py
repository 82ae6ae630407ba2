"""The analysis commands: ``predict``, ``flip-report`` (the CI gate) and ``compare``.

Registered on the app of ``cli.py``, which imports this module at its end. Each command
parses options, calls one workflow and renders its result. Exit codes: 0 success (every
gate passes), 1 a gate fails (flip-report), 2 bad usage or input (one line on stderr).
Output files are rendered in memory first and written atomically only once every input
has been read and checked, so bad inputs leave no files behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .atomic import check_target
from .cli import (
    Data,
    DataDir,
    Device,
    Download,
    SplitSeed,
    ValFraction,
    app,
    data_config,
    err_console,
    out_console,
    run,
)
from .config import DataConfig
from .errors import ConfigError, OutputError

if TYPE_CHECKING:
    from .workflows.predict import EvalOptions

STDOUT = "-"

# --------------------------------------------------------------------------- options

OptionalData = Annotated[str | None, typer.Option(
    "--data", help="Dataset to run checkpoints on (fashion-mnist, mnist, cifar10, cifar100, "
    "imagefolder:PATH, synthetic); not needed for prediction files.")]
SplitName = Annotated[str, typer.Option("--split", help="Which split checkpoints are run on: "
                                        "test, val or train.")]
EvalBatchSize = Annotated[int, typer.Option("--batch-size", help="Batch size of inference.")]
EvalImageSize = Annotated[int | None, typer.Option(
    "--image-size", help="imagefolder: resize images to this size [default: the checkpoint's "
    "input size].")]
OldInput = Annotated[Path, typer.Option(
    "--old", help="The deployed model: a checkpoint, an ensemble or a prediction file "
    "(.npz, .csv, predictions .safetensors).")]
JsonPath = Annotated[str | None, typer.Option(
    "--json", help="Write the JSON report here ('-': to stdout, instead of the tables).")]
MarkdownPath = Annotated[str | None, typer.Option(
    "--markdown", help="Write a Markdown report here ('-': to stdout, instead of the tables).")]
HtmlPath = Annotated[Path | None, typer.Option(
    "--html", help="Write a self-contained HTML report with plots here.")]


def _threshold(flag: str, text: str):  # -> an Annotated option type
    return Annotated[str | None, typer.Option(flag, help=text + " Accepts 0.02 or 2%.")]


MaxNfr = _threshold("--max-nfr", "Gate: fail when NFR is above this.")
MaxRelNfr = _threshold("--max-rel-nfr", "Gate: fail when relative NFR (a ratio; 1.0 = as many "
                       "flips as independent errors) is above this.")
MaxEr = _threshold("--max-er", "Gate: fail when the new error rate is above this.")
MaxErIncrease = _threshold("--max-er-increase", "Gate: fail when ER new - ER old is above this "
                           "(negative: require a gain, e.g. -0.5%).")
MinBtc = _threshold("--min-btc", "Gate: fail when BTC (share of old-correct samples still "
                    "correct) is below this.")
MaxClassNfr = _threshold("--max-class-nfr", "Gate: fail when the NFR within any class is above "
                         "this.")
GateOn = Annotated[str, typer.Option(
    "--gate-on", help="value: gate on the point estimates; upper: on the pessimistic end of "
    "the 95% interval (upper for max gates, lower for --min-btc).")]


def _eval_data(data: str | None, data_dir: Path | None, download: bool, val_fraction: float,
               split_seed: int, image_size: int | None) -> DataConfig | None:
    if data is None:
        return None
    return data_config(data, data_dir, download, val_fraction, None, split_seed, True,
                       image_size if image_size is not None else 32)


def _eval_options(data: str | None, data_dir: Path | None, download: bool, val_fraction: float,
                  split_seed: int, image_size: int | None, split: str, device: str,
                  batch_size: int) -> EvalOptions:
    from .workflows.predict import EvalOptions

    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, got {batch_size}")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split: expected train, val or test, got {split!r}")
    return EvalOptions(data=_eval_data(data, data_dir, download, val_fraction, split_seed,
                                       image_size),
                       split=split, device=device, batch_size=batch_size,
                       image_size_from_checkpoint=image_size is None)


# --------------------------------------------------------------------------- output files


class Outputs:
    """Where each rendered report goes; checked before any work, written after all of it."""

    def __init__(self, inputs: list[Path]) -> None:
        self.files: dict[str, Path] = {}  # option name -> path
        self.stdout: str | None = None  # option whose report goes to stdout
        self._inputs = {p.resolve() for p in inputs}

    def add(self, option: str, value: str | Path | None) -> None:
        if value is None:
            return
        if str(value) == STDOUT:
            if self.stdout is not None:
                raise ConfigError(f"{self.stdout} and {option} cannot both write to stdout ('-')")
            self.stdout = option
            return
        path = Path(value)
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{option} {path}: folder {parent} does not exist")
        check_target(path, option)
        if path.resolve() in self._inputs:
            raise ConfigError(f"{option} {path}: is one of the inputs; refusing to overwrite it")
        for other, taken in self.files.items():
            if taken.resolve() == path.resolve():
                raise ConfigError(f"{other} and {option} both write {path}")
        self.files[option] = path

    def wanted(self, option: str) -> bool:
        return option in self.files or self.stdout == option

    def write(self, texts: dict[str, str]) -> None:
        """Write every requested file atomically (the stdout one is printed by the caller)."""
        from .atomic import atomic_write_many

        atomic_write_many({path: texts[option].encode("utf-8") for option, path in self.files.items()})


def _step_summary() -> Path | None:
    """``$GITHUB_STEP_SUMMARY`` when set (GitHub Actions), checked like an output path."""
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    if not value:
        return None
    path = Path(value)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or path.is_dir():
        raise OutputError(f"$GITHUB_STEP_SUMMARY {path}: cannot append (no such folder, "
                          "or a folder)")
    return path


def _append_step_summary(path: Path | None, markdown: str) -> None:
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    except OSError as exc:
        raise OutputError(f"$GITHUB_STEP_SUMMARY {path}: cannot append ({exc.strerror})") from None


def _emit_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --------------------------------------------------------------------------- predict


@app.command("predict")
def predict_cmd(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A model or ensemble "
                                               "checkpoint (.safetensors).")],
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Prediction file to write: .npz or "
                                      ".safetensors (logits, preds, targets, ids).")],
    split: SplitName = "test",
    data_dir: DataDir = None,
    download: Download = False,
    val_fraction: ValFraction = 0.1,
    split_seed: SplitSeed = 0,
    image_size: EvalImageSize = None,
    device: Device = "auto",
    batch_size: EvalBatchSize = 1024,
) -> None:
    """Run a checkpoint on a dataset split and write its predictions (for flip-report / compare)."""
    from .workflows.predict import predict

    options = run(lambda: _eval_options(data, data_dir, download, val_fraction, split_seed,
                                        image_size, split, device, batch_size))
    assert options.data is not None
    result = run(lambda: predict(checkpoint, options.data, out, split=options.split,
                                 device=options.device, batch_size=options.batch_size,
                                 image_size_from_checkpoint=options.image_size_from_checkpoint))
    p = result.predictions
    table = Table(title=f"wrote {result.out}", title_justify="left")
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("samples", f"{len(p):,}")
    table.add_row("classes", str(p.num_classes))
    table.add_row("split", f"{p.meta.get('dataset')} / {p.meta.get('split')}")
    table.add_row("error rate", f"{100 * result.error_rate:.2f}%")
    table.add_row("checkpoint sha256", p.meta.get("checkpoint_sha256", "")[:16] + "...")
    out_console.print(table)


# --------------------------------------------------------------------------- flip-report


@app.command("flip-report")
def flip_report_cmd(
    old: OldInput,
    new: Annotated[Path, typer.Option("--new", help="The candidate update: a checkpoint, an "
                                      "ensemble or a prediction file.")],
    data: OptionalData = None,
    split: SplitName = "test",
    data_dir: DataDir = None,
    download: Download = False,
    val_fraction: ValFraction = 0.1,
    split_seed: SplitSeed = 0,
    image_size: EvalImageSize = None,
    device: Device = "auto",
    batch_size: EvalBatchSize = 1024,
    json_path: JsonPath = None,
    markdown_path: MarkdownPath = None,
    flips_csv_path: Annotated[Path | None, typer.Option(
        "--flips-csv", help="Write every flipped sample (id, target, old and new prediction) "
        "as CSV.")] = None,
    html_path: HtmlPath = None,
    max_nfr: MaxNfr = None,
    max_rel_nfr: MaxRelNfr = None,
    max_er: MaxEr = None,
    max_er_increase: MaxErIncrease = None,
    min_btc: MinBtc = None,
    max_class_nfr: MaxClassNfr = None,
    gate_on: GateOn = "value",
) -> None:
    """How many regressions does the new model bring, where, and do the gates pass?

    Exit code 0: every gate passes; 1: a gate fails; 2: bad usage or input.
    """
    from .gates import GateSpec, parse_threshold

    def gate_spec() -> GateSpec:
        def value(flag: str, text: str | None, allow_negative: bool = False, rate: bool = True) -> float | None:
            return None if text is None else parse_threshold(text, flag, allow_negative, rate)

        return GateSpec(max_nfr=value("--max-nfr", max_nfr),
                        max_rel_nfr=value("--max-rel-nfr", max_rel_nfr, rate=False),
                        max_er=value("--max-er", max_er),
                        max_er_increase=value("--max-er-increase", max_er_increase, True),
                        min_btc=value("--min-btc", min_btc),
                        max_class_nfr=value("--max-class-nfr", max_class_nfr),
                        gate_on=gate_on)

    def outputs() -> Outputs:
        plan = Outputs([old, new])
        plan.add("--json", json_path)
        plan.add("--markdown", markdown_path)
        plan.add("--flips-csv", flips_csv_path)
        plan.add("--html", html_path)
        return plan

    gates = run(gate_spec)
    plan = run(outputs)
    summary_file = run(_step_summary)
    options = run(lambda: _eval_options(data, data_dir, download, val_fraction, split_seed,
                                        image_size, split, device, batch_size))

    from . import report as render
    from .workflows.flip_report import flip_report
    from .workflows.predict import load_inputs

    old_p, new_p = run(lambda: load_inputs([old, new], options))
    result = run(lambda: flip_report(old_p, new_p, gates))

    _deliver(plan, summary_file, result, rich=render.flip_report_rich, renderers={
        "--json": render.flip_report_json, "--markdown": render.flip_report_markdown,
        "--flips-csv": render.flips_csv, "--html": render.flip_report_html})
    if not result.passed:
        failed = ", ".join(g.name for g in result.gates if not g.passed)
        err_console.print(f"gate failed: {failed}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


# --------------------------------------------------------------------------- compare


@app.command("compare")
def compare_cmd(
    candidates: Annotated[list[Path], typer.Argument(
        metavar="CANDIDATE", help="Candidate updates: checkpoints, ensembles or prediction "
        "files.")],
    old: OldInput,
    names: Annotated[list[str] | None, typer.Option(
        "--name", help="Name of a candidate, once per candidate in order [default: file "
        "names].")] = None,
    data: OptionalData = None,
    split: SplitName = "test",
    data_dir: DataDir = None,
    download: Download = False,
    val_fraction: ValFraction = 0.1,
    split_seed: SplitSeed = 0,
    image_size: EvalImageSize = None,
    device: Device = "auto",
    batch_size: EvalBatchSize = 1024,
    json_path: JsonPath = None,
    markdown_path: MarkdownPath = None,
    html_path: HtmlPath = None,
) -> None:
    """Several candidate updates against one old model: error, flips, cost, Pareto front.

    Exit code 0 on success, 2 for bad usage or input.
    """

    def outputs() -> Outputs:
        plan = Outputs([old, *candidates])
        plan.add("--json", json_path)
        plan.add("--markdown", markdown_path)
        plan.add("--html", html_path)
        return plan

    labels = run(lambda: candidate_names(candidates, names or []))
    plan = run(outputs)
    summary_file = run(_step_summary)
    options = run(lambda: _eval_options(data, data_dir, download, val_fraction, split_seed,
                                        image_size, split, device, batch_size))

    from . import report as render
    from .workflows.compare import compare
    from .workflows.predict import cost_columns, load_inputs

    # time the candidates' inference (the old model's cost is not compared)
    loaded = run(lambda: load_inputs([old, *candidates], options,
                                     timed=[False] + [True] * len(candidates)))
    old_p, candidate_p = loaded[0], dict(zip(labels, loaded[1:], strict=True))
    extra = {name: cost_columns(p) for name, p in candidate_p.items()}
    result = run(lambda: compare(old_p, candidate_p, extra))

    _deliver(plan, summary_file, result, rich=render.compare_rich, renderers={
        "--json": render.compare_json, "--markdown": render.compare_markdown, "--html": render.compare_html})


def candidate_names(paths: list[Path], names: list[str]) -> list[str]:
    """One unique name per candidate: the --name values, else file names (paths on a clash)."""
    if names:
        if len(names) != len(paths):
            raise ConfigError(f"--name given {len(names)} times for {len(paths)} candidates; "
                              "give one per candidate, in order")
        if len(set(names)) != len(names):
            raise ConfigError("--name: candidate names must be unique")
        return list(names)
    if len({p.resolve() for p in paths}) != len(paths):
        raise ConfigError("a candidate is given twice")
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def _deliver(plan, summary_file, result, *, rich, renderers) -> None:
    """Render the requested outputs in memory, write them (atomically, all or none), append the
    Markdown to the step summary, then print the JSON/Markdown asked for on stdout or the rich report."""
    texts = {option: fn(result) for option, fn in renderers.items()
             if plan.wanted(option) or (option == "--markdown" and summary_file is not None)}
    run(lambda: plan.write(texts))
    run(lambda: _append_step_summary(summary_file, texts.get("--markdown", "")))
    if plan.stdout is not None:
        _emit_stdout(texts[plan.stdout])
    else:
        out_console.print(rich(result))
