"""Configuration dataclasses: the one place each default lives.

Each dataclass round-trips through JSON (``to_dict`` / ``from_dict``) so that
it can be stored in checkpoint metadata and read back without ``eval``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fields import field_error, flag, like, option_name
from .validation import (  # noqa: F401  (as_list, number_text, parse_number_list: the API and CLI's too)
    FIELD_CHECKS,
    _of_type,
    as_list,
    check_crop_pct,
    check_field_types,
    check_interpolation,
    check_subset_spec,
    guard_init,
    number_text,
    parse_arch_args,
    parse_number_list,
    parse_rand_augment,
)


def _from_dict(cls, data: dict[str, Any]):
    """Build dataclass ``cls`` from ``data``, refusing unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    return cls(**data)


def _check_seed(option: str, seed: int) -> None:
    if not 0 <= seed < 2**63:  # what torch's generators accept
        raise ConfigError(f"{option}: expected an integer in [0, 2^63), got {seed}")


class _JsonMixin:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # a mixin: every user is a dataclass

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return _from_dict(cls, data)


EVAL_BATCH_SIZE = 1024  # inference batch of every evaluation: large, no gradients kept
# the analysis commands' default batch holds at most this many input values (1024 images of 3 x 64 x 64):
# large inputs get smaller batches, so memory stays about the same (eval_batch_size_for)
EVAL_BATCH_VALUES = 1024 * 3 * 64 * 64


def eval_batch_size_for(input_shape: tuple[int, ...]) -> int:
    """A power of two in [16, EVAL_BATCH_SIZE] whose batch of ``input_shape`` images fits EVAL_BATCH_VALUES."""
    values = max(1, math.prod(input_shape))
    size = EVAL_BATCH_SIZE
    while size > 16 and size * values > EVAL_BATCH_VALUES:
        size //= 2
    return size
SPLITS = ("train", "val", "test")
# the columns of a prediction CSV (sample id, true label, predicted label) unless the user names others
CSV_COLUMNS = ("id", "target", "pred")


CROPS = ("pad", "random-resized", "none")
# the augmentation fields of DataConfig
AUGMENT_KEYS = ("hflip", "crop", "crop_pad", "crop_scale", "color_jitter", "rand_augment")


# --workers: loader processes per training process (the default takes 1 to 8)
MAX_WORKERS = 64
# --std: the normalisation's accepted range (a flat channel's measured std is 1e-3; 1: no scaling)
STD_RANGE = (1e-3, 1.0)


def _path_text(path: Path | None) -> str | None:
    """A folder option as the config keeps it: text, or None."""
    return str(path) if path else None


@dataclass
class DataConfig(_JsonMixin):
    """Which dataset, where it lives, how it is split and read; how the model sees an image; how training
    augments it. The fields come in those groups; --help lists their options in this order."""

    # --------------------------------------------------------------- the data source
    name: str = field(default="synthetic", metadata=flag(
        "--data", "Dataset: fashion-mnist, mnist, cifar10, cifar100, imagefolder:PATH or synthetic. PATH holds "
        "train/<class>/<images> and test/, val/ or both (torchvision's ImageNet layout: train/ and val/)."))
    data_dir: str | None = field(default=None, metadata=flag(
        "--data-dir", "Folder holding the dataset files.", typed_as=Path | None, parse=_path_text))
    download: bool = field(default=False, metadata=flag(
        "--download", "Download the dataset through torchvision if missing."))
    val_fraction: float = field(default=0.1, metadata=flag(
        "--val-fraction", "Share of train held out for validation (not for an image folder with a val/ folder: "
        "that is the validation split)."))
    # "0.33" (fraction) or "20000" (count) of the training split, seeded by split_seed.
    train_subset: str | None = field(default=None, metadata=flag(
        "--train-subset", "Train on a seeded subset: a fraction (0.33) or a count (20000)."))
    split_seed: int = field(default=0, metadata=flag("--split-seed", "Seed of the validation split and the subset."))
    # imagefolder only: read images from disk batch by batch (data/streaming.py) when asked to, or when the
    # decoded training set (N x 3 x S x S bytes) exceeds memory_budget GiB; workers: loader processes per
    # training process (None: from the cores, data/streaming.py::default_workers)
    stream: bool = field(default=False, metadata=flag(
        "--stream", "imagefolder: read the images from disk batch by batch instead of decoding them all into "
        "memory first [default: only when the decoded training set exceeds --memory-budget]."))
    memory_budget: float = field(default=4.0, metadata=flag(
        "--memory-budget", "imagefolder: stream when the decoded training set (N x 3 x size x size bytes) exceeds "
        "this, per process.", metavar="GIB"))
    workers: int | None = field(default=None, metadata=flag(
        "--workers", "Streamed data: loader processes per training process; 0: load in the training process",
        default_text="the cores this process may use, shared by the machine's processes, less one; 1 to 8"))
    # imagefolder only: an image whose header declares more pixels is refused before it is decoded. PIL's own
    # decompression-bomb threshold (Image.MAX_IMAGE_PIXELS): 268 MB decoded as uint8 RGB; the largest camera
    # photos (61 Mpx) pass, a small file declaring 40,000 x 40,000 (4.8 GB decoded) does not
    max_image_pixels: int = field(default=89_478_485, metadata=flag(
        "--max-image-pixels", "imagefolder: refuse an image whose header declares more pixels (width x height), "
        "before decoding it.", metavar="PIXELS"))
    # imagefolder only: where its listing and statistics are cached (None: $XDG_CACHE_HOME/modelupdate)
    cache_dir: str | None = field(default=None, metadata=flag(
        "--cache-dir", "imagefolder: keep the folder's listing and statistics cache here, never in the data folder",
        default_text="$XDG_CACHE_HOME/modelupdate, else ~/.cache/modelupdate", metavar="DIR",
        typed_as=Path | None, parse=_path_text))

    # --------------------------------------------------------------- preprocessing: how the model sees an image
    # imagefolder only: images are resized to this square size
    image_size: int = field(default=32, metadata=flag("--image-size", "imagefolder: resize images to this size."))
    # per-channel normalisation, "m1,m2,m3" (None: the dataset's own; an image folder's measured on its
    # training images once and cached with its listing)
    mean: str | None = field(default=None, metadata=flag(
        "--mean", "Per-channel mean of the normalisation (pixels in 0..1)", metavar="M1,M2,...",
        default_text="the dataset's; an image folder's measured on its training images"))
    std: str | None = field(default=None, metadata=flag(
        "--std", "Per-channel std of the normalisation; with --mean.", metavar="S1,S2,..."))
    # the evaluation transform of the model trained on this data (data/transforms.py): the shorter side
    # resized to image_size / crop_pct, then the centre cropped (None: 0.875 from 128 px up, else 1);
    # resize: the shorter side in pixels instead of crop_pct
    crop_pct: float | None = field(default=None, metadata=flag(
        "--crop-pct", "Evaluation: resize the shorter side to --image-size / SHARE, then crop the centre "
        "(torchvision's Resize(256) + CenterCrop(224) is 0.875) [default: 0.875 for inputs of 128 px and more, "
        "else 1: the whole image]. Recorded in the checkpoint: every command evaluates the model this way.",
        metavar="SHARE"))
    resize: int | None = field(default=None, metadata=flag(
        "--resize", "Evaluation: the shorter side before the centre crop, instead of --crop-pct.", metavar="PIXELS"))
    interpolation: str = field(default="bilinear", metadata=flag(
        "--interpolation", "Evaluation resize: bilinear, bicubic or nearest."))

    # --------------------------------------------------------------- training augmentation
    # augmentation policy; None: the dataset's default (docs/method.md lists them); `augment` False: none at all
    augment: bool = field(default=True, metadata=flag(
        "--no-augment", "Turn off every train-time augmentation.", negated=True))
    hflip: float | None = field(default=None, metadata=flag(
        "--hflip", "Horizontal flip probability; 0: none", metavar="P",
        default_text="the dataset's: 0.5, but 0 for mnist and synthetic"))
    crop: str | None = field(default=None, metadata=flag(
        "--crop", "pad (shift in a zero border), random-resized, or none", default_text="pad"))
    crop_pad: int | None = field(default=None, metadata=flag(
        "--crop-pad", "--crop pad: the largest shift", metavar="PIXELS", default_text="the dataset's"))
    crop_scale: float = field(default=0.35, metadata=flag(
        "--crop-scale", "--crop random-resized: the smallest share of the image's area a crop keeps.", metavar="MIN"))
    color_jitter: float = field(default=0.0, metadata=flag(
        "--color-jitter", "Brightness and contrast scaled by a factor in [1-S, 1+S] per image; 0: off.", metavar="S"))
    rand_augment: str | None = field(default=None, metadata=flag(
        "--rand-augment", "torchvision's RandAugment: N operations per image at magnitude M (0..30).",
        metavar="N,M"))

    # --------------------------------------------------------------- the synthetic dataset (no options)
    synthetic_classes: int = 4
    synthetic_size: int = 12
    synthetic_channels: int = 1
    # 2048: 14 steps per epoch at batch 128, enough for 2 epochs of cnn-s to learn it
    synthetic_train: int = 2048
    synthetic_test: int = 256

    def __post_init__(self) -> None:
        # mean, std, rand_augment: a list or the CLI's "a,b,c", kept as that text (one recipe either way)
        self.mean, self.std = number_text("DataConfig.mean", self.mean), number_text("DataConfig.std", self.std)
        if self.rand_augment is not None and not isinstance(self.rand_augment, str):
            self.rand_augment = ",".join(map(str, as_list("DataConfig.rand_augment", self.rand_augment, int) or []))
        if isinstance(self.train_subset, numbers.Real) and not isinstance(self.train_subset, bool):
            self.train_subset = str(self.train_subset)  # 0.33 or 20000, as typed on the command line
        check_field_types(self)
        if not 0.0 <= self.val_fraction < 1.0:
            raise field_error(self, "val_fraction", "expected a value in [0, 1)")
        if self.hflip is not None and not 0.0 <= self.hflip <= 1.0:
            raise field_error(self, "hflip", "expected a probability in [0, 1]")
        if self.crop is not None and self.crop not in CROPS:
            raise field_error(self, "crop", f"expected one of {', '.join(CROPS)}")
        if self.crop_pad is not None and self.crop_pad < 0:
            raise field_error(self, "crop_pad", "expected pixels >= 0")
        if not 0.0 < self.crop_scale <= 1.0:
            raise field_error(self, "crop_scale", "expected the smallest area share in (0, 1]")
        if not 0.0 <= self.color_jitter < 1.0:
            raise field_error(self, "color_jitter", "expected a strength in [0, 1)")
        if self.rand_augment is not None:
            parse_rand_augment(self.rand_augment)
        if self.train_subset is not None:  # '' too: it would train on everything without a word
            check_subset_spec(self.train_subset)
        self._check_augment_options_agree()

    def _check_augment_options_agree(self) -> None:
        """An option that would be silently ignored is refused instead."""
        defaults = DataConfig.__dataclass_fields__
        chosen = [option_name(DataConfig, key) for key in AUGMENT_KEYS if getattr(self, key) != defaults[key].default]
        if not self.augment and chosen:
            raise ConfigError(f"--no-augment: turns off every augmentation, so {', '.join(chosen)} would do nothing")
        if self.crop_pad is not None and self.crop not in (None, "pad"):
            raise ConfigError(f"--crop-pad: only used by --crop pad, not --crop {self.crop}")
        if self.crop_scale != defaults["crop_scale"].default and self.crop != "random-resized":
            raise ConfigError("--crop-scale: only used by --crop random-resized")
        if self.image_size < 1:
            raise field_error(self, "image_size", "expected a positive number of pixels")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("--mean / --std: give both or neither")
        if self.std is not None:
            values = parse_number_list("--std", self.std)
            means = parse_number_list("--mean", self.mean)
            if not all(math.isfinite(v) and v > 0 for v in values):
                raise field_error(self, "std", "expected finite values > 0")
            if not all(math.isfinite(v) for v in means or []):  # nan or 1e309 would only show as a nan loss
                raise field_error(self, "mean", "expected finite values")
            # pixels are in 0..1, and so is their mean; a std below what a flat channel is measured with
            # (1e-3) overflows the inputs (1e-320: inf), which would also only show as a nan loss
            if not all(0.0 <= v <= 1.0 for v in means or []):
                raise field_error(self, "mean", "expected values in [0, 1] (pixels are in 0..1)")
            if not all(STD_RANGE[0] <= v <= STD_RANGE[1] for v in values):
                raise ConfigError(f"--std: expected values in [{STD_RANGE[0]:g}, {STD_RANGE[1]:g}] (pixels are in "
                                  f"0..1; 1/255 feeds 0..255), got {self.std!r}")
        if not self.memory_budget > 0:
            raise field_error(self, "memory_budget", "expected GiB > 0")
        if self.workers is not None and not 0 <= self.workers <= MAX_WORKERS:
            raise field_error(self, "workers", f"expected a number of processes in [0, {MAX_WORKERS}]")
        if isinstance(self.max_image_pixels, bool) or not isinstance(self.max_image_pixels, int) \
                or self.max_image_pixels < 1:
            raise field_error(self, "max_image_pixels", "expected a number of pixels >= 1")
        _check_seed("--split-seed", self.split_seed)
        if self.name.startswith("imagefolder:") and self.image_size ** 2 > self.max_image_pixels:
            # every image is resized to this square: it may be no larger than an image that may be decoded
            raise ConfigError(f"--image-size: expected pixels in [1, {math.isqrt(self.max_image_pixels)}] (its "
                              f"square within --max-image-pixels {self.max_image_pixels}), got {self.image_size}")
        self._check_eval_transform()

    def _check_eval_transform(self) -> None:
        if self.crop_pct is not None and self.resize is not None:
            raise ConfigError("--resize / --crop-pct: give one of them (--crop-pct = --image-size / --resize)")
        if self.crop_pct is not None:
            check_crop_pct("--crop-pct", self.crop_pct)
        if self.resize is not None and not (isinstance(self.resize, int) and not isinstance(self.resize, bool)
                                            and self.resize >= 1):
            raise field_error(self, "resize", "expected the shorter side in pixels")
        check_interpolation("--interpolation", self.interpolation)


# Train-time dropout of the models of an update (every ldi-train method and the reference's members) where
# --dropout is not given: LDI compares the reference with the student's function, and a squared loss on
# one dropout sample of it is mostly noise; the plain update and the members train the same way, so that
# every method is compared at one recipe (docs/method.md).
UPDATE_DROPOUT = 0.0


@dataclass
class TrainConfig(_JsonMixin):
    """How one model is trained: the model and its optimisation, mixing, and the runtime. Shared by every
    training command; the fields come in those groups, and --help lists their options in this order."""

    # --------------------------------------------------------------- the model and its optimisation
    arch: str = field(default="cnn-s", metadata=flag(
        "--arch", "Architecture (see `modelupdate models`) or package.module:factory."))
    arch_args: dict[str, Any] = field(default_factory=dict, metadata=flag(
        "--arch-args", "Architecture arguments as a JSON object, e.g. '{\"width\": 48}'.", typed_as=str,
        parse=parse_arch_args, typed_default="{}"))
    epochs: int = field(default=2, metadata=flag("--epochs", "Training epochs."))
    batch_size: int = field(default=128, metadata=flag("--batch-size", "Batch size per process."))
    lr: float | None = field(default=None, metadata=flag(
        "--lr", "Peak learning rate", default_text="0.1*batch/256 for SGD, 2e-3 for AdamW"))
    optimizer: str = field(default="sgd", metadata=flag("--optimizer", "sgd (nesterov momentum) or adamw."))
    weight_decay: float = field(default=5e-4, metadata=flag(
        "--weight-decay", "Weight decay (not on biases / norms)."))
    label_smoothing: float = field(default=0.0, metadata=flag(
        "--label-smoothing", "Label smoothing of the cross-entropy."))
    warmup_epochs: float = field(default=0.5, metadata=flag(
        "--warmup-epochs", "Linear warm-up before the cosine decay."))
    # None or 0: no clipping; else the max L2 norm of all gradients together. None: the ldi-train method's
    # (methods.py), which cli/options.py shows as the default
    clip_grad_norm: float | None = field(default=None, metadata=flag(
        "--clip-grad-norm", "Clip the L2 norm of all gradients together to this value; 0: no clipping"))
    # train-time dropout probability of every dropout layer; None: the architecture's own
    dropout: float | None = field(default=None, metadata=flag(
        "--dropout", "Train-time probability of every dropout layer; 0 turns dropout off",
        default_text=f"the architecture's own for train, {UPDATE_DROPOUT:g} for ensemble-train's members and "
        "every ldi-train method"))
    # weight EMA: the horizon of the average in epochs (0: off); the checkpoint then holds the average
    ema_epochs: float | None = field(default=None, metadata=flag(  # None: the method's (methods.py), else off
        "--ema-epochs", "Keep an exponential moving average of the weights (and BatchNorm statistics) over about "
        "the last H epochs and ship it instead of the last weights; 0: off. Each epoch logs validation metrics "
        "of both", metavar="H"))
    seed: int = field(default=0, metadata=flag("--seed", "Seed of initialisation, data order and augmentation."))

    # --------------------------------------------------------------- mixing
    # mixup / cutmix: Beta(a, a) concentrations (0: off); a share mix_prob of the batches is mixed, with
    # cutmix chosen with probability mix_switch_prob when both are on (timm's scheme)
    mixup: float = field(default=0.0, metadata=flag(
        "--mixup", "MixUp: Beta(a, a) concentration of the mixing weight; 0: off. The reference sees the same "
        "mixed batch."))
    cutmix: float = field(default=0.0, metadata=flag("--cutmix", "CutMix: Beta(a, a) concentration; 0: off."))
    mix_prob: float = field(default=1.0, metadata=flag(
        "--mix-prob", "Share of the batches that are mixed (mixup/cutmix)."))
    mix_switch_prob: float = field(default=0.5, metadata=flag(
        "--mix-switch-prob", "With both --mixup and --cutmix: chance that a mixed batch uses CutMix."))

    # --------------------------------------------------------------- the runtime: where, how fast, how often saved
    device: str = field(default="auto", metadata=flag(
        "--device", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps."))
    amp: str = field(default="off", metadata=flag(
        "--amp", "Mixed precision: off, auto, bf16, fp16 (fp16: CUDA only)."))
    channels_last: bool = field(default=False, metadata=flag("--channels-last", "channels_last memory format."))
    compile: bool = field(default=False, metadata=flag("--compile", "torch.compile the model."))
    deterministic: bool = field(default=False, metadata=flag(
        "--deterministic", "Deterministic algorithms (bitwise resume on CPU)."))
    sync_bn: bool = field(default=False, metadata=flag("--sync-bn", "SyncBatchNorm under torchrun."))
    checkpoint_every: int = field(default=200, metadata=flag(  # 0: only at epoch end
        "--checkpoint-every", "Steps between resumable-state saves."))

    # --------------------------------------------------------------- set by the commands, not typed
    momentum: float = 0.9
    eval_batch_size: int = EVAL_BATCH_SIZE
    # learning-rate cycles: the cosine schedule restarts this many times over the run (snapshot ensembles)
    lr_cycles: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.epochs < 1:
            raise field_error(self, "epochs", "expected a positive integer")
        if self.batch_size < 1:
            raise field_error(self, "batch_size", "expected a positive integer")
        if self.optimizer not in ("sgd", "adamw"):
            raise field_error(self, "optimizer", "expected 'sgd' or 'adamw'")
        if self.amp not in ("off", "bf16", "fp16", "auto"):
            raise field_error(self, "amp", "expected off, bf16, fp16 or auto")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise field_error(self, "lr", "expected a positive finite number")
        if not 0 <= self.weight_decay < math.inf:
            raise field_error(self, "weight_decay", "expected a finite number >= 0")
        if not 0 <= self.momentum < 1:
            raise field_error(self, "momentum", "expected a value in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise field_error(self, "label_smoothing", "expected a value in [0, 1)")
        if not 0 <= self.warmup_epochs < math.inf:
            raise field_error(self, "warmup_epochs", "expected a finite number >= 0")
        if self.eval_batch_size < 1:
            raise field_error(self, "eval_batch_size", "expected a positive integer")
        if self.checkpoint_every < 0:
            raise field_error(self, "checkpoint_every", "expected an integer >= 0")
        _check_seed("--seed", self.seed)
        if self.clip_grad_norm is not None and not 0 <= self.clip_grad_norm < math.inf:
            raise field_error(self, "clip_grad_norm", "expected a number >= 0 (0: no clipping)")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise field_error(self, "dropout", "expected a probability in [0, 1)")
        for name in ("mixup", "cutmix"):
            if not (0.0 <= getattr(self, name) < math.inf):
                raise field_error(self, name, "expected a Beta concentration >= 0 (0: off)")
        if self.lr_cycles < 1:
            raise ConfigError(f"--snapshots: expected a positive number of cycles, got {self.lr_cycles}")
        if self.ema_epochs is not None and not 0.0 <= self.ema_epochs < math.inf:
            raise field_error(self, "ema_epochs", "expected a horizon in epochs >= 0 (0: off)")
        for name in ("mix_prob", "mix_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise field_error(self, name, "expected a probability in [0, 1]")

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 2e-3


DEFAULT_MEMBERS = 4


@dataclass(frozen=True)
class EnsembleConfig:
    """How ensemble-train makes the reference's members: M models trained apart, or M snapshots of one run."""

    members: int | None = field(default=None, metadata=flag(
        "--members", "Number of members, trained apart (seeds seed+100..seed+100+M-1: apart from the other "
        "commands' seeds)", short="-m", default_text=str(DEFAULT_MEMBERS)))
    snapshots: int | None = field(default=None, metadata=flag(
        "--snapshots", "Instead of --members: M snapshots of one run whose cosine schedule restarts M times (a "
        "reference for the cost of one training).", metavar="M"))

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.members is not None and self.snapshots is not None:
            raise ConfigError("--snapshots: replaces --members; give one of them")

    @property
    def count(self) -> int:
        """How many members the ensemble has."""
        given = self.snapshots if self.snapshots is not None else self.members
        return given if given is not None else DEFAULT_MEMBERS


# member i trains with seed --seed + MEMBER_SEED_OFFSET + i: apart from the seeds single models train with
# by default (a reference member must not be the plain update it is compared with)
MEMBER_SEED_OFFSET = 100


def with_update_dropout(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the update's dropout where the user left it unset."""
    return cfg if cfg.dropout is not None else replace(cfg, dropout=UPDATE_DROPOUT)


GATE_ON_CHOICES = ("value", "upper")


@dataclass(frozen=True)
class GateSpec:
    """CI thresholds of flip-report (fractions, e.g. 0.02 for 2 %); ``None`` means no such gate."""

    max_nfr: float | None = None
    max_rel_nfr: float | None = None
    max_er: float | None = None
    max_er_increase: float | None = None
    min_btc: float | None = None
    max_class_nfr: float | None = None
    max_nfi: float | None = None
    gate_on: str = field(default="value", metadata=flag(
        "--gate-on", "value: gate on the point estimates; upper: on the pessimistic end of the 95% interval (upper "
        "for max gates, lower for --min-btc)."))

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.gate_on not in GATE_ON_CHOICES:
            raise ConfigError(f"--gate-on: {self.gate_on!r} is not one of {', '.join(GATE_ON_CHOICES)}")


@dataclass(frozen=True)
class EvalConfig:
    """How checkpoints are evaluated: which data and split, where, in what batch size."""

    data: DataConfig | None = None
    split: str = field(default="test", metadata=flag(
        "--split", "Which split checkpoints are run on: test, val or train (an image folder's val/ folder when it "
        "has one)."))
    device: str = field(default="auto", metadata=like(TrainConfig, "device"))
    # None: by each checkpoint's input size (eval_batch_size_for)
    batch_size: int | None = field(default=None, metadata=flag(
        "--batch-size", "Batch size of inference", default_text="by the model's input size: 1024 up to 3x64x64, "
        "fewer for larger inputs, down to 16"))
    # imagefolder: resize images to each checkpoint's own input size (the user gave none)
    image_size_from_checkpoint: bool = False
    # prediction CSVs: which columns hold the id, the true label and the prediction
    id_column: str = field(default=CSV_COLUMNS[0], metadata=flag(
        "--id-column", "Prediction CSVs: the column holding the sample id."))
    label_column: str = field(default=CSV_COLUMNS[1], metadata=flag(
        "--label-column", "Prediction CSVs: the column holding the true label (a class index or a class name)."))
    pred_column: str = field(default=CSV_COLUMNS[2], metadata=flag(
        "--pred-column", "Prediction CSVs: the column holding the predicted label (a class index or a class "
        "name)."))
    # class names, in index order, that label columns may hold instead of indices (None: from a checkpoint)
    classes: tuple[str, ...] | None = field(default=None, metadata=flag(
        "--classes", "Class names in index order, for CSV labels given as names: a file with one name per line, "
        "or a comma list", default_text="the checkpoint's classes", typed_as=str | None))
    # the file --classes was read from, if any: an input, so no report may be written over it
    classes_file: str | None = None
    # inputs whose provenance names other datasets, fingerprints or splits are compared anyway
    allow_other_data: bool = field(default=False, metadata=flag(
        "--allow-other-data", "Compare inputs whose recorded dataset, data fingerprint or split differ (refused by "
        "default: their flips would compare different samples)."))

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.batch_size is not None and self.batch_size < 1:
            raise field_error(self, "batch_size", "expected a positive integer")
        if self.split not in SPLITS:
            raise field_error(self, "split", f"expected {', '.join(SPLITS)}")
        check_csv_columns(self.id_column, self.label_column, self.pred_column)

    def reading(self) -> dict[str, Any]:
        """How prediction files are read, for a report's provenance."""
        return {"id_column": self.id_column, "label_column": self.label_column, "pred_column": self.pred_column,
                "classes": list(self.classes) if self.classes is not None else None, "classes_file": self.classes_file}

    def input_files(self) -> list[str]:
        """Files this configuration reads beside the models (the --classes file)."""
        return [self.classes_file] if self.classes_file else []

    @property
    def csv_columns(self) -> tuple[str, str, str]:
        return (self.id_column, self.label_column, self.pred_column)


def check_csv_columns(id_column: str, label_column: str, pred_column: str) -> None:
    """Each column option names a column, and three different ones."""
    named = {"--id-column": id_column, "--label-column": label_column, "--pred-column": pred_column}
    for option, name in named.items():
        if not name.strip():
            raise ConfigError(f"{option}: expected a column name, got {name!r}")
    seen: dict[str, str] = {}
    for option, name in named.items():
        key = name.strip().lower()
        if key in seen:
            raise ConfigError(f"{seen[key]} and {option} both name column {name!r}; expected three columns")
        seen[key] = option


FIELD_CHECKS["DataConfig"] = ("a DataConfig", _of_type(DataConfig))
for _cls in (DataConfig, TrainConfig, GateSpec, EvalConfig, EnsembleConfig):
    guard_init(_cls)
