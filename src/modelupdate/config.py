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
from typing import Any

from .errors import ConfigError
from .validation import (  # noqa: F401  (as_list, number_text, parse_number_list: the API and CLI's too)
    FIELD_CHECKS,
    _of_type,
    as_list,
    check_field_types,
    guard_init,
    number_text,
    parse_number_list,
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


def parse_arch_args(text: str) -> dict[str, Any]:
    """``--arch-args`` as typed: a JSON object (its values are checked against the factory when it is built)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"--arch-args: expected a JSON object such as '{{\"width\": 32}}', got {text!r}")
    return value


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


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # of the evaluation resize (data/transforms.py)


def check_crop_pct(option: str, crop_pct: float) -> None:
    if not (isinstance(crop_pct, int | float) and not isinstance(crop_pct, bool) and 0.0 < crop_pct <= 1.0):
        raise ConfigError(f"{option}: expected a share of the resized image in (0, 1], got {crop_pct!r}")


def check_interpolation(option: str, interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"{option}: expected one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")


# --workers: loader processes per training process (the default takes 1 to 8)
MAX_WORKERS = 64
# --std: the normalisation's accepted range (a flat channel's measured std is 1e-3; 1: no scaling)
STD_RANGE = (1e-3, 1.0)


def check_subset_spec(spec: str) -> None:
    """``--train-subset``: a fraction in (0, 1] or a count >= 1, checked before any data is read (whether
    the count fits the training split is the loader's to check)."""
    try:
        value = float(spec)
    except ValueError:
        value = math.nan
    fraction = 0 < value <= 1 and ("." in spec or value < 1)
    if not (math.isfinite(value) and (fraction or (value >= 1 and value == int(value)))):
        raise ConfigError(f"--train-subset: expected a fraction in (0, 1] or a count, got {spec!r}")


def parse_rand_augment(text: str) -> tuple[int, int]:
    """``--rand-augment N,M``: N operations per image at magnitude M (torchvision's RandAugment, M in 0..30)."""
    try:
        n, m = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--rand-augment: expected N,M (operations per image, magnitude), got {text!r}") from None
    if not (1 <= n <= 10 and 0 <= m <= 30):
        raise ConfigError(f"--rand-augment: expected N in 1..10 and M in 0..30, got {text!r}")
    return n, m


@dataclass
class DataConfig(_JsonMixin):
    """Which dataset, where it lives, and how it is split."""

    name: str = "synthetic"
    data_dir: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    # "0.33" (fraction) or "20000" (count) of the training split, seeded by split_seed.
    train_subset: str | None = None
    split_seed: int = 0
    augment: bool = True
    # synthetic dataset only
    synthetic_classes: int = 4
    synthetic_size: int = 12
    synthetic_channels: int = 1
    # 2048: 14 steps per epoch at batch 128, enough for 2 epochs of cnn-s to learn it
    synthetic_train: int = 2048
    synthetic_test: int = 256
    # imagefolder only: images are resized to this square size
    image_size: int = 32
    # augmentation policy; None: the dataset's default (docs/method.md lists them); `augment` False: none at all
    hflip: float | None = None
    crop: str | None = None
    crop_pad: int | None = None
    crop_scale: float = 0.35
    color_jitter: float = 0.0
    rand_augment: str | None = None
    # imagefolder only: read images from disk batch by batch (data/streaming.py) when asked to, or when the
    # decoded training set (N x 3 x S x S bytes) exceeds memory_budget GiB; workers: loader processes per
    # training process (None: from the cores, data/streaming.py::default_workers)
    stream: bool = False
    memory_budget: float = 4.0
    workers: int | None = None
    # per-channel normalisation, "m1,m2,m3" (None: the dataset's own; an image folder's measured on its
    # training images once and cached with its listing)
    mean: str | None = None
    std: str | None = None
    # imagefolder only: an image whose header declares more pixels is refused before it is decoded. PIL's own
    # decompression-bomb threshold (Image.MAX_IMAGE_PIXELS): 268 MB decoded as uint8 RGB; the largest camera
    # photos (61 Mpx) pass, a small file declaring 40,000 x 40,000 (4.8 GB decoded) does not
    max_image_pixels: int = 89_478_485
    # imagefolder only: where its listing and statistics are cached (None: $XDG_CACHE_HOME/modelupdate)
    cache_dir: str | None = None
    # the evaluation transform of the model trained on this data (data/transforms.py): the shorter side
    # resized to image_size / crop_pct, then the centre cropped (None: 0.875 from 128 px up, else 1);
    # resize: the shorter side in pixels instead of crop_pct
    crop_pct: float | None = None
    resize: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        # mean, std, rand_augment: a list or the CLI's "a,b,c", kept as that text (one recipe either way)
        self.mean, self.std = number_text("DataConfig.mean", self.mean), number_text("DataConfig.std", self.std)
        if self.rand_augment is not None and not isinstance(self.rand_augment, str):
            self.rand_augment = ",".join(map(str, as_list("DataConfig.rand_augment", self.rand_augment, int) or []))
        if isinstance(self.train_subset, numbers.Real) and not isinstance(self.train_subset, bool):
            self.train_subset = str(self.train_subset)  # 0.33 or 20000, as typed on the command line
        check_field_types(self)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction: expected a value in [0, 1), got {self.val_fraction}")
        if self.hflip is not None and not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f"--hflip: expected a probability in [0, 1], got {self.hflip}")
        if self.crop is not None and self.crop not in CROPS:
            raise ConfigError(f"--crop: expected one of {', '.join(CROPS)}, got {self.crop!r}")
        if self.crop_pad is not None and self.crop_pad < 0:
            raise ConfigError(f"--crop-pad: expected pixels >= 0, got {self.crop_pad}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"--crop-scale: expected the smallest area share in (0, 1], got {self.crop_scale}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ConfigError(f"--color-jitter: expected a strength in [0, 1), got {self.color_jitter}")
        if self.rand_augment is not None:
            parse_rand_augment(self.rand_augment)
        if self.train_subset is not None:  # '' too: it would train on everything without a word
            check_subset_spec(self.train_subset)
        self._check_augment_options_agree()

    def _check_augment_options_agree(self) -> None:
        """An option that would be silently ignored is refused instead."""
        defaults = DataConfig.__dataclass_fields__
        chosen = [f"--{key.replace('_', '-')}" for key in AUGMENT_KEYS if getattr(self, key) != defaults[key].default]
        if not self.augment and chosen:
            raise ConfigError(f"--no-augment: turns off every augmentation, so {', '.join(chosen)} would do nothing")
        if self.crop_pad is not None and self.crop not in (None, "pad"):
            raise ConfigError(f"--crop-pad: only used by --crop pad, not --crop {self.crop}")
        if self.crop_scale != defaults["crop_scale"].default and self.crop != "random-resized":
            raise ConfigError("--crop-scale: only used by --crop random-resized")
        if self.image_size < 1:
            raise ConfigError(f"--image-size: expected a positive number of pixels, got {self.image_size}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("--mean / --std: give both or neither")
        if self.std is not None:
            values = parse_number_list("--std", self.std)
            means = parse_number_list("--mean", self.mean)
            if not all(math.isfinite(v) and v > 0 for v in values):
                raise ConfigError(f"--std: expected finite values > 0, got {self.std!r}")
            if not all(math.isfinite(v) for v in means or []):  # nan or 1e309 would only show as a nan loss
                raise ConfigError(f"--mean: expected finite values, got {self.mean!r}")
            # pixels are in 0..1, and so is their mean; a std below what a flat channel is measured with
            # (1e-3) overflows the inputs (1e-320: inf), which would also only show as a nan loss
            if not all(0.0 <= v <= 1.0 for v in means or []):
                raise ConfigError(f"--mean: expected values in [0, 1] (pixels are in 0..1), got {self.mean!r}")
            if not all(STD_RANGE[0] <= v <= STD_RANGE[1] for v in values):
                raise ConfigError(f"--std: expected values in [{STD_RANGE[0]:g}, {STD_RANGE[1]:g}] (pixels are in "
                                  f"0..1; 1/255 feeds 0..255), got {self.std!r}")
        if not self.memory_budget > 0:
            raise ConfigError(f"--memory-budget: expected GiB > 0, got {self.memory_budget}")
        if self.workers is not None and not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers: expected a number of processes in [0, {MAX_WORKERS}], got {self.workers}")
        if isinstance(self.max_image_pixels, bool) or not isinstance(self.max_image_pixels, int) \
                or self.max_image_pixels < 1:
            raise ConfigError(f"--max-image-pixels: expected a number of pixels >= 1, got {self.max_image_pixels!r}")
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
            raise ConfigError(f"--resize: expected the shorter side in pixels, got {self.resize!r}")
        check_interpolation("--interpolation", self.interpolation)


@dataclass
class TrainConfig(_JsonMixin):
    """How one model is trained. Shared by every training command."""

    arch: str = "cnn-s"
    arch_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 2
    batch_size: int = 128
    lr: float | None = None  # None: 0.1 * batch/256 for SGD, 2e-3 for AdamW
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.5
    clip_grad_norm: float | None = None  # None or 0: no clipping; else the max L2 norm of all gradients together
    seed: int = 0
    device: str = "auto"
    amp: str = "off"  # off | bf16 | fp16 | auto
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    sync_bn: bool = False
    eval_batch_size: int = EVAL_BATCH_SIZE
    checkpoint_every: int = 200  # steps between resumable-state saves (0: only at epoch end)
    # train-time dropout probability of every dropout layer; None: the architecture's own
    dropout: float | None = None
    # mixup / cutmix: Beta(a, a) concentrations (0: off); a share mix_prob of the batches is mixed, with
    # cutmix chosen with probability mix_switch_prob when both are on (timm's scheme)
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    # weight EMA: the horizon of the average in epochs (0: off); the checkpoint then holds the average
    ema_epochs: float | None = None  # None: the method's (methods.py) for ldi-train, else off
    # learning-rate cycles: the cosine schedule restarts this many times over the run (snapshot ensembles)
    lr_cycles: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.epochs < 1:
            raise ConfigError(f"--epochs: expected a positive integer, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size: expected a positive integer, got {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"--optimizer: expected 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.amp not in ("off", "bf16", "fp16", "auto"):
            raise ConfigError(f"--amp: expected off, bf16, fp16 or auto, got {self.amp!r}")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise ConfigError(f"--lr: expected a positive finite number, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"--weight-decay: expected a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"TrainConfig.momentum: expected a value in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing: expected a value in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.warmup_epochs < math.inf:
            raise ConfigError(f"--warmup-epochs: expected a finite number >= 0, got {self.warmup_epochs}")
        if self.eval_batch_size < 1:
            raise ConfigError(f"TrainConfig.eval_batch_size: expected a positive integer, got {self.eval_batch_size}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every: expected an integer >= 0, got {self.checkpoint_every}")
        _check_seed("--seed", self.seed)
        if self.clip_grad_norm is not None and not 0 <= self.clip_grad_norm < math.inf:
            raise ConfigError(f"--clip-grad-norm: expected a number >= 0 (0: no clipping), got {self.clip_grad_norm}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout: expected a probability in [0, 1), got {self.dropout}")
        for name in ("mixup", "cutmix"):
            value = getattr(self, name)
            if not (0.0 <= value < math.inf):
                raise ConfigError(f"--{name}: expected a Beta concentration >= 0 (0: off), got {value}")
        if self.lr_cycles < 1:
            raise ConfigError(f"--snapshots: expected a positive number of cycles, got {self.lr_cycles}")
        if self.ema_epochs is not None and not 0.0 <= self.ema_epochs < math.inf:
            raise ConfigError(f"--ema-epochs: expected a horizon in epochs >= 0 (0: off), got {self.ema_epochs}")
        for name in ("mix_prob", "mix_switch_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')}: expected a probability in [0, 1], got {value}")

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 2e-3


# Train-time dropout of the models of an update (every ldi-train method and the reference's members) where
# --dropout is not given: LDI compares the reference with the student's function, and a squared loss on
# one dropout sample of it is mostly noise; the plain update and the members train the same way, so that
# every method is compared at one recipe (docs/method.md).
UPDATE_DROPOUT = 0.0
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
    gate_on: str = "value"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.gate_on not in GATE_ON_CHOICES:
            raise ConfigError(f"--gate-on: {self.gate_on!r} is not one of {', '.join(GATE_ON_CHOICES)}")


@dataclass(frozen=True)
class EvalConfig:
    """How checkpoints are evaluated: which data and split, where, in what batch size."""

    data: DataConfig | None = None
    split: str = "test"
    device: str = "auto"
    batch_size: int | None = None  # None: by each checkpoint's input size (eval_batch_size_for)
    # imagefolder: resize images to each checkpoint's own input size (the user gave none)
    image_size_from_checkpoint: bool = False
    # prediction CSVs: which columns hold the id, the true label and the prediction
    id_column: str = CSV_COLUMNS[0]
    label_column: str = CSV_COLUMNS[1]
    pred_column: str = CSV_COLUMNS[2]
    # class names, in index order, that label columns may hold instead of indices (None: from a checkpoint)
    classes: tuple[str, ...] | None = None
    # the file --classes was read from, if any: an input, so no report may be written over it
    classes_file: str | None = None
    # inputs whose provenance names other datasets, fingerprints or splits are compared anyway
    allow_other_data: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size: expected a positive integer, got {self.batch_size}")
        if self.split not in SPLITS:
            raise ConfigError(f"--split: expected {', '.join(SPLITS)}, got {self.split!r}")
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
for _cls in (DataConfig, TrainConfig, GateSpec, EvalConfig):
    guard_init(_cls)
