"""Shared Typer options: names, help texts, and defaults read from ``config`` (one place for each).

A command function lists the options it takes; ``training_command`` gives a training command every
option the three training commands share, gathered into one ``TrainingRun``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..config import UPDATE_DROPOUT, DataConfig, EvalConfig, TrainConfig, check_csv_columns, parse_arch_args
from ..gates import GATES
from ..methods import REGISTRY, UpdateConfig
from .errors import run

DATA, TRAIN, EVAL, UPDATE = DataConfig(), TrainConfig(), EvalConfig(), UpdateConfig()


def per_method(values: dict[str, Any], none: str = "none") -> str:
    """A default that depends on the method, for --help: "0.1 for fd-lm, else 0.5"; every value named when
    none is shared ("4 for kd, 100 for fd-kl")."""
    def show(value: Any) -> str:
        return none if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    groups: dict[str, list[str]] = {}
    for name, value in values.items():
        groups.setdefault(show(value), []).append(name)
    common = max(groups, key=lambda v: len(groups[v]))
    if len(groups) == 1:
        return common
    if len(groups[common]) == 1:
        return ", ".join(f"{v} for {names[0]}" for v, names in groups.items())
    return ", ".join(f"{v} for {', '.join(names)}" for v, names in groups.items() if v != common) + f", else {common}"


def _ldi_train(attribute: str) -> str:
    """"ldi-train's elodi, ldi-old and fd-lm: 5": the methods whose ``attribute`` is set, and its value(s)."""
    set_by = {m.name: getattr(m, attribute) for m in REGISTRY.values() if getattr(m, attribute)}
    return f"ldi-train's {', '.join(set_by)}: {per_method(set_by)}"

# --------------------------------------------------------------------------- training options

Data = Annotated[str, typer.Option("--data", help="Dataset: fashion-mnist, mnist, cifar10, cifar100, "
                                   "imagefolder:PATH or synthetic. PATH holds train/<class>/<images> and test/, "
                                   "val/ or both (torchvision's ImageNet layout: train/ and val/).")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Folder holding the dataset files.")]
Download = Annotated[bool, typer.Option("--download", help="Download the dataset through torchvision if missing.")]
ValFraction = Annotated[float, typer.Option("--val-fraction", help="Share of train held out for validation (not "
                                            "for an image folder with a val/ folder: that is the validation split).")]
TrainSubset = Annotated[str | None, typer.Option("--train-subset", help="Train on a seeded subset: a fraction "
                                                 "(0.33) or a count (20000).")]
SplitSeed = Annotated[int, typer.Option("--split-seed", help="Seed of the validation split and the subset.")]
NoAugment = Annotated[bool, typer.Option("--no-augment", help="Turn off every train-time augmentation.")]
Hflip = Annotated[float | None, typer.Option("--hflip", metavar="P", help="Horizontal flip probability; 0: none "
                                             "[default: the dataset's: 0.5, but 0 for mnist and synthetic].")]
Crop = Annotated[str | None, typer.Option("--crop", help="pad (shift in a zero border), random-resized, or none "
                                          "[default: pad].")]
CropPad = Annotated[int | None, typer.Option("--crop-pad", metavar="PIXELS", help="--crop pad: the largest shift "
                                             "[default: the dataset's].")]
CropScale = Annotated[float, typer.Option("--crop-scale", metavar="MIN", help="--crop random-resized: the smallest "
                                          "share of the image's area a crop keeps.")]
ColorJitter = Annotated[float, typer.Option("--color-jitter", metavar="S", help="Brightness and contrast scaled by "
                                            "a factor in [1-S, 1+S] per image; 0: off.")]
RandAugment = Annotated[str | None, typer.Option("--rand-augment", metavar="N,M", help="torchvision's RandAugment: "
                                                 "N operations per image at magnitude M (0..30).")]
ImageSize = Annotated[int, typer.Option("--image-size", help="imagefolder: resize images to this size.")]
Mean = Annotated[str | None, typer.Option("--mean", metavar="M1,M2,...", help="Per-channel mean of the "
                                          "normalisation (pixels in 0..1) [default: the dataset's; an image "
                                          "folder's measured on its training images].")]
Std = Annotated[str | None, typer.Option("--std", metavar="S1,S2,...", help="Per-channel std of the "
                                         "normalisation; with --mean.")]
Stream = Annotated[bool, typer.Option("--stream", help="imagefolder: read the images from disk batch by batch "
                                      "instead of decoding them all into memory first [default: only when the "
                                      "decoded training set exceeds --memory-budget].")]
MemoryBudget = Annotated[float, typer.Option("--memory-budget", metavar="GIB", help="imagefolder: stream when the "
                                             "decoded training set (N x 3 x size x size bytes) exceeds this, per "
                                             "process.")]
Workers = Annotated[int | None, typer.Option("--workers", help="Streamed data: loader processes per training "
                                             "process; 0: load in the training process [default: the cores this "
                                             "process may use, shared by the machine's processes, less one; 1 to 8].")]
CropPct = Annotated[float | None, typer.Option(
    "--crop-pct", metavar="SHARE", help="Evaluation: resize the shorter side to --image-size / SHARE, then crop the "
    "centre (torchvision's Resize(256) + CenterCrop(224) is 0.875) [default: 0.875 for inputs of 128 px and more, "
    "else 1: the whole image]. Recorded in the checkpoint: every command evaluates the model this way.")]
Resize = Annotated[int | None, typer.Option(
    "--resize", metavar="PIXELS", help="Evaluation: the shorter side before the centre crop, instead of --crop-pct.")]
Interpolation = Annotated[str, typer.Option(
    "--interpolation", help="Evaluation resize: bilinear, bicubic or nearest.")]
MaxImagePixels = Annotated[int, typer.Option(
    "--max-image-pixels", metavar="PIXELS", help="imagefolder: refuse an image whose header declares more pixels "
    "(width x height), before decoding it.")]
CacheDir = Annotated[Path | None, typer.Option(
    "--cache-dir", metavar="DIR", help="imagefolder: keep the folder's listing and statistics cache here, never in "
    "the data folder [default: $XDG_CACHE_HOME/modelupdate, else ~/.cache/modelupdate].")]
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
    f"[default: none, but {_ldi_train('clip_grad_norm')} (squared logit differences have unbounded "
    "gradients)].")]
Dropout = Annotated[float | None, typer.Option(
    "--dropout", help="Train-time probability of every dropout layer; 0 turns dropout off [default: the "
    f"architecture's own for train, {UPDATE_DROPOUT:g} for ensemble-train's members and every ldi-train "
    "method].")]
Mixup = Annotated[float, typer.Option("--mixup", help="MixUp: Beta(a, a) concentration of the mixing weight; "
                                      "0: off. The reference sees the same mixed batch.")]
Cutmix = Annotated[float, typer.Option("--cutmix", help="CutMix: Beta(a, a) concentration; 0: off.")]
MixProb = Annotated[float, typer.Option("--mix-prob", help="Share of the batches that are mixed (mixup/cutmix).")]
MixSwitchProb = Annotated[float, typer.Option("--mix-switch-prob", help="With both --mixup and --cutmix: "
                                              "chance that a mixed batch uses CutMix.")]
EmaEpochs = Annotated[float | None, typer.Option(
    "--ema-epochs", metavar="H", help="Keep an exponential moving average of the weights (and BatchNorm "
    "statistics) over about the last H epochs and ship it instead of the last weights; 0: off. Each epoch "
    f"logs validation metrics of both [default: off, but {_ldi_train('ema_epochs')}].")]
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
# text, not a Path: Typer would turn '' into '.', the current folder, before it could be refused
TensorBoard = Annotated[str | None, typer.Option(
    "--tensorboard", metavar="DIR", help="Also log the training curves, the recipe and the final test metrics to "
    "TensorBoard, as the run DIR/<--out's stem> (needs the tensorboard package).")]
Mlflow = Annotated[str | None, typer.Option(
    "--mlflow", metavar="URI", help="Also log the recipe, the training curves and the final test metrics to an "
    "MLflow run named after --out: a folder (a local file store) or a tracking URI (needs "
    "modelupdate[mlflow]).")]



# --------------------------------------------------------------------------- evaluation options

OptionalData = Annotated[str | None, typer.Option(
    "--data", help="Dataset to run checkpoints on (fashion-mnist, mnist, cifar10, cifar100, "
    "imagefolder:PATH, synthetic); not needed for prediction files.")]
SplitName = Annotated[str, typer.Option("--split", help="Which split checkpoints are run on: "
                                        "test, val or train (an image folder's val/ folder when it has one).")]
EvalBatchSize = Annotated[int | None, typer.Option("--batch-size", help="Batch size of inference [default: by the "
                                                  "model's input size: 1024 up to 3x64x64, fewer for larger "
                                                  "inputs, down to 16].")]
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
PrCommentPath = Annotated[Path | None, typer.Option(
    "--pr-comment", metavar="FILE", help="Write a short Markdown comment for a pull request here: the verdict, the "
    "key rates and the top flips (post it with `gh pr comment --body-file FILE`).")]
HtmlPath = Annotated[Path | None, typer.Option(
    "--html", help="Write a self-contained HTML report with plots here.")]
IdColumn = Annotated[str, typer.Option("--id-column", help="Prediction CSVs: the column holding the sample id.")]
LabelColumn = Annotated[str, typer.Option("--label-column", help="Prediction CSVs: the column holding the true "
                                          "label (a class index or a class name).")]
PredColumn = Annotated[str, typer.Option("--pred-column", help="Prediction CSVs: the column holding the "
                                         "predicted label (a class index or a class name).")]
Classes = Annotated[str | None, typer.Option(
    "--classes", help="Class names in index order, for CSV labels given as names: a file with one name per "
    "line, or a comma list [default: the checkpoint's classes].")]


def _threshold(flag: str, text: str):  # -> an Annotated option type
    return Annotated[str | None, typer.Option(flag, help=text + " Accepts 0.02 or 2%.")]


# one option type per gate of gates.GATES (its flag and help live there)
GATE_OPTIONS = {g.field: _threshold(g.flag, g.help) for g in GATES}
MaxNfr, MaxRelNfr, MaxEr = GATE_OPTIONS["max_nfr"], GATE_OPTIONS["max_rel_nfr"], GATE_OPTIONS["max_er"]
MaxErIncrease, MinBtc = GATE_OPTIONS["max_er_increase"], GATE_OPTIONS["min_btc"]
MaxClassNfr, MaxNfi = GATE_OPTIONS["max_class_nfr"], GATE_OPTIONS["max_nfi"]
GateOn = Annotated[str, typer.Option(
    "--gate-on", help="value: gate on the point estimates; upper: on the pessimistic end of "
    "the 95% interval (upper for max gates, lower for --min-btc).")]




@dataclass
class Evaluation:
    """The evaluation options of predict, flip-report and compare, less the dataset (whose option differs)."""

    split: str
    data_dir: Path | None
    download: bool
    val_fraction: float
    split_seed: int
    image_size: int | None
    device: str
    batch_size: int | None
    max_image_pixels: int = DATA.max_image_pixels
    cache_dir: Path | None = None

    def config(self, data: str | None, files: PredictionFiles | None = None) -> EvalConfig:
        """How checkpoints are evaluated (and ``files``: how prediction files are read); without
        ``--image-size`` an image folder takes each checkpoint's size."""
        size = self.image_size if self.image_size is not None else DATA.image_size
        data_cfg = None if data is None else DataConfig(
            name=data, data_dir=str(self.data_dir) if self.data_dir else None, download=self.download,
            val_fraction=self.val_fraction, split_seed=self.split_seed, augment=False, image_size=size,
            max_image_pixels=self.max_image_pixels, cache_dir=str(self.cache_dir) if self.cache_dir else None)
        return EvalConfig(data=data_cfg, split=self.split, device=self.device, batch_size=self.batch_size,
                          image_size_from_checkpoint=self.image_size is None,
                          **(dataclasses.asdict(files) if files is not None else {}))


@dataclass
class PredictionFiles:
    """How prediction files are read: the CSV columns, and the class names CSV labels may use."""

    id_column: str
    label_column: str
    pred_column: str
    classes: tuple[str, ...] | None
    classes_file: str | None  # where --classes names a file: an input no output may overwrite
    allow_other_data: bool = False


AllowOtherData = Annotated[bool, typer.Option(
    "--allow-other-data", help="Compare inputs whose recorded dataset, data fingerprint or split differ "
    "(refused by default: their flips would compare different samples).")]


def _prediction_file_options(id_column: IdColumn = EVAL.id_column, label_column: LabelColumn = EVAL.label_column,
                             pred_column: PredColumn = EVAL.pred_column, classes: Classes = None,
                             allow_other_data: AllowOtherData = False) -> PredictionFiles:
    """The options of every command that reads prediction files."""
    from ..prediction_csv import read_class_list

    return PredictionFiles(*_csv_column_options(id_column, label_column, pred_column),
                           read_class_list(classes) if classes is not None else None,
                           classes if classes is not None and Path(classes).is_file() else None,
                           allow_other_data)


def _evaluation_options(
    split: SplitName = EVAL.split, data_dir: DataDir = None, download: Download = DATA.download,
    val_fraction: ValFraction = DATA.val_fraction, split_seed: SplitSeed = DATA.split_seed,
    image_size: EvalImageSize = None, device: Device = EVAL.device, batch_size: EvalBatchSize = EVAL.batch_size,
    max_image_pixels: MaxImagePixels = DATA.max_image_pixels, cache_dir: CacheDir = None,
) -> Evaluation:
    """The options every analysis command shares (one place for their names and help)."""
    return Evaluation(split, data_dir, download, val_fraction, split_seed, image_size, device, batch_size,
                      max_image_pixels, cache_dir)


@dataclass
class TrainingRun:
    out: Path
    data: DataConfig
    train: TrainConfig
    resume: bool
    quiet: bool
    tensorboard: Path | None = None
    mlflow: str | None = None


R = TypeVar("R")
_GATHERED: Any = None  # the default of a parameter that shared_options fills with what its gatherer returns


def shared_options(gather: Callable[..., Any], parameter: str, *, in_place: bool
                   ) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a command the options of ``gather``; it receives what ``gather`` returns as ``parameter``.

    The shared options appear in ``--help`` where ``parameter`` stands (``in_place``) or after the command's own.
    """

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        shared = inspect.signature(gather, eval_str=True).parameters
        names = list(inspect.signature(fn, eval_str=True).parameters)
        own = [p for name, p in inspect.signature(fn, eval_str=True).parameters.items() if name != parameter]
        at = names.index(parameter) if in_place else len(own)

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> R:
            shared_kwargs = {name: kwargs.pop(name) for name in shared}
            gathered = run(lambda: gather(**shared_kwargs))
            return fn(**{parameter: gathered}, **kwargs)

        wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # read by Typer
            own[:at] + list(shared.values()) + own[at:])
        # evaluated annotations: the command's module does not define the shared option types
        wrapper.__annotations__ = {
            k: v for k, v in inspect.get_annotations(fn, eval_str=True).items() if k != parameter} | {
            k: v for k, v in inspect.get_annotations(gather, eval_str=True).items() if k != "return"}
        return wrapper

    return decorate


def _data_source_options(
    data: Data = DATA.name, data_dir: DataDir = None, download: Download = DATA.download,
    val_fraction: ValFraction = DATA.val_fraction, train_subset: TrainSubset = DATA.train_subset,
    split_seed: SplitSeed = DATA.split_seed, stream: Stream = DATA.stream,
    memory_budget: MemoryBudget = DATA.memory_budget, workers: Workers = DATA.workers,
    max_image_pixels: MaxImagePixels = DATA.max_image_pixels, cache_dir: CacheDir = None,
) -> dict[str, Any]:
    """Which data, where it lives, how it is split and read: DataConfig's fields."""
    return dict(name=data, data_dir=str(data_dir) if data_dir else None, download=download, val_fraction=val_fraction,
                train_subset=train_subset, split_seed=split_seed, stream=stream, memory_budget=memory_budget,
                workers=workers, max_image_pixels=max_image_pixels, cache_dir=str(cache_dir) if cache_dir else None)


def _preprocessing_options(
    image_size: ImageSize = DATA.image_size, mean: Mean = DATA.mean, std: Std = DATA.std,
    crop_pct: CropPct = DATA.crop_pct, resize: Resize = DATA.resize, interpolation: Interpolation = DATA.interpolation,
) -> dict[str, Any]:
    """How the model sees an image: DataConfig's input size, normalisation and evaluation transform."""
    return dict(image_size=image_size, mean=mean, std=std, crop_pct=crop_pct, resize=resize,
                interpolation=interpolation)


def _augmentation_options(
    no_augment: NoAugment = not DATA.augment, hflip: Hflip = DATA.hflip, crop: Crop = DATA.crop,
    crop_pad: CropPad = DATA.crop_pad, crop_scale: CropScale = DATA.crop_scale,
    color_jitter: ColorJitter = DATA.color_jitter, rand_augment: RandAugment = DATA.rand_augment,
) -> dict[str, Any]:
    """The training augmentation: DataConfig's augmentation fields."""
    return dict(augment=not no_augment, hflip=hflip, crop=crop, crop_pad=crop_pad, crop_scale=crop_scale,
                color_jitter=color_jitter, rand_augment=rand_augment)


def _optimisation_options(
    arch: Arch = TRAIN.arch, arch_args: ArchArgs = json.dumps(TRAIN.arch_args), epochs: Epochs = TRAIN.epochs,
    batch_size: BatchSize = TRAIN.batch_size, lr: Lr = TRAIN.lr, optimizer: Optimizer = TRAIN.optimizer,
    weight_decay: WeightDecay = TRAIN.weight_decay, label_smoothing: LabelSmoothing = TRAIN.label_smoothing,
    warmup_epochs: Warmup = TRAIN.warmup_epochs, clip_grad_norm: ClipGradNorm = TRAIN.clip_grad_norm,
    dropout: Dropout = TRAIN.dropout, ema_epochs: EmaEpochs = TRAIN.ema_epochs, seed: Seed = TRAIN.seed,
) -> dict[str, Any]:
    """The model and how it is optimised: TrainConfig's fields of the recipe."""
    return dict(arch=arch, arch_args=parse_arch_args(arch_args), epochs=epochs, batch_size=batch_size, lr=lr,
                optimizer=optimizer, weight_decay=weight_decay, label_smoothing=label_smoothing,
                warmup_epochs=warmup_epochs, clip_grad_norm=clip_grad_norm, dropout=dropout, ema_epochs=ema_epochs,
                seed=seed)


def _mixing_options(mixup: Mixup = TRAIN.mixup, cutmix: Cutmix = TRAIN.cutmix, mix_prob: MixProb = TRAIN.mix_prob,
                    mix_switch_prob: MixSwitchProb = TRAIN.mix_switch_prob) -> dict[str, Any]:
    """MixUp and CutMix: TrainConfig's mixing fields."""
    return dict(mixup=mixup, cutmix=cutmix, mix_prob=mix_prob, mix_switch_prob=mix_switch_prob)


def _runtime_options(
    device: Device = TRAIN.device, amp: Amp = TRAIN.amp, channels_last: ChannelsLast = TRAIN.channels_last,
    compile: Compile = TRAIN.compile, deterministic: Deterministic = TRAIN.deterministic,
    sync_bn: SyncBn = TRAIN.sync_bn,
    checkpoint_every: CheckpointEvery = TRAIN.checkpoint_every,
) -> dict[str, Any]:
    """Where and how fast it runs, and how often its state is saved: TrainConfig's runtime fields."""
    return dict(device=device, amp=amp, channels_last=channels_last, compile=compile, deterministic=deterministic,
                sync_bn=sync_bn, checkpoint_every=checkpoint_every)


@shared_options(_data_source_options, "source", in_place=True)
@shared_options(_preprocessing_options, "preprocessing", in_place=True)
@shared_options(_augmentation_options, "augmentation", in_place=True)
@shared_options(_optimisation_options, "optimisation", in_place=True)
@shared_options(_mixing_options, "mixing", in_place=True)
@shared_options(_runtime_options, "runtime_options", in_place=True)
def _training_options(
    out: Out = Path("model.safetensors"), source: dict[str, Any] = _GATHERED,
    preprocessing: dict[str, Any] = _GATHERED, augmentation: dict[str, Any] = _GATHERED,
    optimisation: dict[str, Any] = _GATHERED,
    mixing: dict[str, Any] = _GATHERED, runtime_options: dict[str, Any] = _GATHERED, resume: Resume = False,
    quiet: Quiet = False, tensorboard: TensorBoard = None, mlflow: Mlflow = None,
) -> TrainingRun:
    """The options every training command shares, one group per part of the configs (above)."""
    train = TrainConfig(**optimisation, **mixing, **runtime_options)
    data_cfg = run(lambda: DataConfig(**source, **preprocessing, **augmentation))
    logdir: Path | None = None  # --tensorboard's folder
    if tensorboard is not None:
        from ..events.tracking import check_tensorboard
        from ..workflows.common import check_apart_from_out

        run(lambda: check_tensorboard(tensorboard))
        logdir = Path(tensorboard)
        run(lambda: check_apart_from_out(out, {"--tensorboard": logdir}))
    if mlflow is not None:
        from ..events.tracking import check_mlflow, local_store
        from ..workflows.common import check_apart_from_out

        run(lambda: check_mlflow(mlflow))
        run(lambda: check_apart_from_out(out, {"--mlflow": local_store(mlflow)}))
    return TrainingRun(out=out, data=data_cfg, train=train, resume=resume, quiet=quiet, tensorboard=logdir,
                       mlflow=mlflow)


# a training command receives its shared options as ``job: TrainingRun``; an analysis command as
# ``evaluation: Evaluation``
training_command = shared_options(_training_options, "job", in_place=False)
evaluation_command = shared_options(_evaluation_options, "evaluation", in_place=True)
# a command reading prediction files receives their options as ``files: PredictionFiles``
prediction_file_command = shared_options(_prediction_file_options, "files", in_place=True)


def _csv_column_options(id_column: IdColumn = EVAL.id_column, label_column: LabelColumn = EVAL.label_column,
                        pred_column: PredColumn = EVAL.pred_column) -> tuple[str, str, str]:
    """The CSV columns of a command whose class names come from its dataset (ldi-train --old)."""
    check_csv_columns(id_column, label_column, pred_column)
    return (id_column, label_column, pred_column)


# ... receives them as ``csv_columns: tuple[str, str, str]``
csv_column_command = shared_options(_csv_column_options, "csv_columns", in_place=True)
