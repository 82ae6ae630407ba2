"""The commands' option groups, generated from the config fields (``cli/groups.py``), and the options of
several commands that no config holds (--old, the report paths).

A training command takes ``TRAINING`` (one ``TrainingRun``), ensemble-train also ``ENSEMBLE``, ldi-train
also ``METHOD`` (one ``UpdateConfig``) and ``CSV_COLUMNS``; an analysis command takes ``EVALUATION`` (one
``Evaluation``) and, where it reads prediction files or gates, ``PREDICTION_FILES`` and ``GATE_OPTIONS``.
Flags, help and defaults live with the config fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import DataConfig, EnsembleConfig, EvalConfig, GateSpec, TrainConfig, check_csv_columns
from ..fields import Flag, flag, flag_of, like
from ..gates import GATES, Gate
from ..methods import UpdateConfig, set_by_methods
from .groups import NESTED, FieldOption, OptionGroup, build, option_of, options_of

DATA, EVAL = DataConfig(), EvalConfig()

# --------------------------------------------------------------------------- training


@dataclass
class TrainingRun:
    """What a training command runs: where it writes, on which data, how it trains, and how it reports."""

    out: Path = field(default=Path("model.safetensors"), metadata=flag("--out", "Output checkpoint (.safetensors)."))
    # built in this order (a bad --epochs is reported before a bad --hflip); --help lists the data first
    train: TrainConfig = field(default_factory=TrainConfig, metadata=NESTED)
    data: DataConfig = field(default_factory=DataConfig, metadata=NESTED)
    resume: bool = field(default=False, metadata=flag("--resume", "Continue an interrupted run of the same command."))
    quiet: bool = field(default=False, metadata=flag(
        "--quiet", "Plain per-epoch log lines instead of a progress bar.", short="-q"))
    # text, not a Path: Typer would turn '' into '.', the current folder, before it could be refused
    tensorboard: str | None = field(default=None, metadata=flag(
        "--tensorboard", "Also log the training curves, the recipe and the final test metrics to TensorBoard, as "
        "the run DIR/<--out's stem> (needs the tensorboard package).", metavar="DIR"))
    mlflow: str | None = field(default=None, metadata=flag(
        "--mlflow", "Also log the recipe, the training curves and the final test metrics to an MLflow run named "
        "after --out: a folder (a local file store) or a tracking URI (needs modelupdate[mlflow]).",
        metavar="URI"))

    def __post_init__(self) -> None:
        from ..workflows.common import check_apart_from_out

        if self.tensorboard is not None:
            from ..events.tracking import check_tensorboard

            check_tensorboard(self.tensorboard)
            check_apart_from_out(self.out, {"--tensorboard": Path(self.tensorboard)})
        if self.mlflow is not None:
            from ..events.tracking import check_mlflow, local_store

            check_mlflow(self.mlflow)
            check_apart_from_out(self.out, {"--mlflow": local_store(self.mlflow)})

    @property
    def logdir(self) -> Path | None:
        """--tensorboard's folder."""
        return Path(self.tensorboard) if self.tensorboard is not None else None


TRAINING = OptionGroup("training", options_of(TrainingRun, [
    "out", "data", "train", "resume", "quiet", "tensorboard", "mlflow"], default_texts={
    # where the user gives none, ldi-train's methods choose (methods.py's registry)
    "clip_grad_norm": f"none, but {set_by_methods('clip_grad_norm')} (squared logit differences have unbounded "
    "gradients)",
    "ema_epochs": f"off, but {set_by_methods('ema_epochs')}",
}), lambda values: build(TrainingRun, values))

ENSEMBLE = OptionGroup("ensemble", options_of(EnsembleConfig), lambda values: build(EnsembleConfig, values))

METHOD = OptionGroup("method", options_of(UpdateConfig), lambda values: build(UpdateConfig, values))


def _csv_columns(values: dict[str, Any]) -> tuple[str, str, str]:
    check_csv_columns(values["id_column"], values["label_column"], values["pred_column"])
    return (values["id_column"], values["label_column"], values["pred_column"])


# the columns of an --old prediction CSV whose class names come from the dataset (ldi-train)
CSV_COLUMNS = OptionGroup("csv_columns", options_of(EvalConfig, ["id_column", "label_column", "pred_column"]),
                          _csv_columns)

# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """The evaluation options of predict, flip-report and compare, less the dataset (whose option differs)."""

    split: str = field(default=EVAL.split, metadata=like(EvalConfig, "split"))
    data_dir: str | None = field(default=DATA.data_dir, metadata=like(DataConfig, "data_dir"))
    download: bool = field(default=DATA.download, metadata=like(DataConfig, "download"))
    val_fraction: float = field(default=DATA.val_fraction, metadata=like(DataConfig, "val_fraction"))
    split_seed: int = field(default=DATA.split_seed, metadata=like(DataConfig, "split_seed"))
    # None: each checkpoint's own input size
    image_size: int | None = field(default=None, metadata=like(
        DataConfig, "image_size", help="imagefolder: resize images to this size",
        default_text="the checkpoint's input size"))
    device: str = field(default=EVAL.device, metadata=like(EvalConfig, "device"))
    batch_size: int | None = field(default=EVAL.batch_size, metadata=like(EvalConfig, "batch_size"))
    max_image_pixels: int = field(default=DATA.max_image_pixels, metadata=like(DataConfig, "max_image_pixels"))
    cache_dir: str | None = field(default=DATA.cache_dir, metadata=like(DataConfig, "cache_dir"))

    def config(self, data: str | None, files: PredictionFiles | None = None) -> EvalConfig:
        """How checkpoints are evaluated (and ``files``: how prediction files are read); without
        ``--image-size`` an image folder takes each checkpoint's size."""
        size = self.image_size if self.image_size is not None else DATA.image_size
        data_cfg = None if data is None else DataConfig(
            name=data, data_dir=self.data_dir, download=self.download, val_fraction=self.val_fraction,
            split_seed=self.split_seed, augment=False, image_size=size, max_image_pixels=self.max_image_pixels,
            cache_dir=self.cache_dir)
        return EvalConfig(data=data_cfg, split=self.split, device=self.device, batch_size=self.batch_size,
                          image_size_from_checkpoint=self.image_size is None,
                          **(dataclasses.asdict(files) if files is not None else {}))


EVALUATION = OptionGroup("evaluation", options_of(Evaluation), lambda values: build(Evaluation, values))


@dataclass
class PredictionFiles:
    """How prediction files are read: the CSV columns, and the class names CSV labels may use."""

    id_column: str
    label_column: str
    pred_column: str
    classes: tuple[str, ...] | None
    classes_file: str | None  # where --classes names a file: an input no output may overwrite
    allow_other_data: bool = False


def _prediction_files(values: dict[str, Any]) -> PredictionFiles:
    from ..prediction_csv import read_class_list

    classes = values["classes"]
    return PredictionFiles(*_csv_columns(values), read_class_list(classes) if classes is not None else None,
                           classes if classes is not None and Path(classes).is_file() else None,
                           values["allow_other_data"])


PREDICTION_FILES = OptionGroup("prediction_files", options_of(
    EvalConfig, ["id_column", "label_column", "pred_column", "classes", "allow_other_data"]), _prediction_files)


def _gate_option(gate: Gate) -> FieldOption:
    """A gate's option, from its entry in ``gates.GATES``: a threshold typed as 0.02 or 2%."""
    return FieldOption(gate.field, Flag(gate.flag, gate.help + " Accepts 0.02 or 2%."), str | None, None)


def _gate_spec(values: dict[str, Any]) -> GateSpec:
    from ..gates import gate_spec

    thresholds = {o.field: values[o.param] for o in GATE_OPTIONS.options}
    return gate_spec(thresholds.pop("gate_on"), **thresholds)


# one option per gate of gates.GATES, parsed by gates.gate_spec: a bad threshold is one line naming the option
GATE_OPTIONS = OptionGroup("gates", tuple(_gate_option(g) for g in GATES) + (
    option_of(GateSpec, "gate_on"),), _gate_spec)

# --------------------------------------------------------------------------- options no config holds

Data = Annotated[str, typer.Option("--data", help=flag_of(DataConfig, "name").help)]
OptionalData = Annotated[str | None, typer.Option(
    "--data", help="Dataset to run checkpoints on (fashion-mnist, mnist, cifar10, cifar100, "
    "imagefolder:PATH, synthetic); not needed for prediction files.")]
OldInput = Annotated[Path, typer.Option(
    "--old", help="The deployed model: a checkpoint, an ensemble or a prediction file "
    "(.npz, .csv, predictions .safetensors).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
JsonPath = Annotated[str | None, typer.Option(
    "--json", help="Write the JSON report here ('-': to stdout, instead of the tables).")]
MarkdownPath = Annotated[str | None, typer.Option(
    "--markdown", help="Write a Markdown report here ('-': to stdout, instead of the tables).")]
PrCommentPath = Annotated[Path | None, typer.Option(
    "--pr-comment", metavar="FILE", help="Write a short Markdown comment for a pull request here: the verdict, the "
    "key rates and the top flips (post it with `gh pr comment --body-file FILE`).")]
HtmlPath = Annotated[Path | None, typer.Option(
    "--html", help="Write a self-contained HTML report with plots here.")]
