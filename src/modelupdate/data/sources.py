"""Where datasets come from: the registry, the loaders, splits, subsets and the fingerprint.

Small image datasets (MNIST-like, CIFAR) fit in memory several times over, so
each split is loaded once into one ``uint8`` tensor ``[N, C, H, W]`` and the
per-image decode and transform of a PIL pipeline is avoided; batches.py turns
slices of it into training and evaluation batches on the device.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from ..config import DataConfig
from ..errors import DataError
from ..validation import parse_number_list, parse_rand_augment
from .folders import (
    check_class_count,
    folder_classes,
    folder_fingerprint,
    folder_root,
    folder_stats,
    list_split,
    native_side,
    read_square,
    split_folders,
)
from .streaming import StreamSplit, should_stream, stream_splits
from .transforms import data_transform, warn_if_resized_far

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class AugmentSpec:
    """Train-time augmentation applied to a whole batch, in this order: a crop (``pad``: shift by up to
    ``pad`` pixels in a zero border; ``random-resized``: an area share in [``scale``, 1] at an aspect in
    [3/4, 4/3], resized back), a horizontal flip with probability ``hflip``, brightness and contrast
    jitter of strength ``color_jitter``, and torchvision's RandAugment (``rand_augment`` = (N, M))."""

    pad: int = 0
    hflip: float = 0.0  # a dataset's default may say True / False: 0.5 / 0
    crop: str = "pad"
    scale: float = 0.35
    color_jitter: float = 0.0
    rand_augment: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hflip, bool):
            object.__setattr__(self, "hflip", 0.5 if self.hflip else 0.0)  # frozen


def augment_policy(default: AugmentSpec, cfg: DataConfig) -> AugmentSpec:
    """The dataset's default augmentation with every option the user set put over it (none with
    ``--no-augment``)."""
    if not cfg.augment:
        return AugmentSpec()
    crop = cfg.crop or default.crop
    pad = cfg.crop_pad if cfg.crop_pad is not None else default.pad
    return AugmentSpec(pad=pad if crop == "pad" else 0, hflip=cfg.hflip if cfg.hflip is not None else default.hflip,
                       crop=crop, scale=cfg.crop_scale, color_jitter=cfg.color_jitter,
                       rand_augment=parse_rand_augment(cfg.rand_augment) if cfg.rand_augment else None)


@dataclass
class DatasetInfo:
    """What a model trained on this data must agree with (stored in checkpoints)."""

    name: str
    classes: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    augment: AugmentSpec
    # how a model trained on this data is evaluated (transforms.EvalTransform); None: normalisation alone
    eval_transform: Any = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass
class Split:
    """One split held in memory. images uint8 [N, C, H, W]; targets, ids int64 [N].

    ``id_names``: where samples have names (``imagefolder:``, the image's path relative to the
    dataset root, e.g. ``test/cat/001.png``), the name of the sample with id ``i`` is
    ``id_names[i]``; a subset shares the table. None: the integer ids are the names.
    """

    images: torch.Tensor
    targets: torch.Tensor
    ids: torch.Tensor
    id_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.targets[index], self.ids[index], self.id_names)

    def sample_ids(self, ids: torch.Tensor | None = None) -> list[int] | list[str]:
        """The ids users see of ``ids`` (default: this split's, in order): names where samples have them."""
        values = (self.ids if ids is None else ids).tolist()
        return values if self.id_names is None else [self.id_names[i] for i in values]

    def image_batches(self, plan: list[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """uint8 [len(idx), C, H, W] for each ``idx`` of ``plan`` (positions in this split), in order (a
        streamed split reads them from disk instead: streaming.StreamSplit)."""
        for idx in plan:
            yield self.images[idx]


@dataclass
class Dataset:
    """A loaded dataset: its ``info`` and three in-memory splits (``val`` may be empty; so may ``test``, for an
    image folder of train/ and val/ only: ``absent`` then says why, by split name)."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    absent: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        """The split called ``name`` (train, val or test); a DataError if it is unknown, absent or empty."""
        if name not in ("train", "val", "test"):
            raise DataError(f"--split: expected train, val or test, got {name!r}")
        if name in self.absent:
            raise DataError(f"--split {name}: {self.absent[name]}")
        split = getattr(self, name)
        if len(split) == 0:
            raise DataError(f"dataset {self.info.name!r}: the {name} split is empty")
        return split


# --------------------------------------------------------------------------- registry

# A loader returns (train, test, classes, mean, std, augment); load_dataset carves val out of train.
Loader = Callable[[DataConfig], tuple[Split, Split, list[str], tuple, tuple, AugmentSpec]]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str):
    """Decorator: register the decorated loader as ``--data name``."""

    def wrap(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return wrap


def known_datasets() -> list[str]:
    """The names ``--data`` accepts, registered ones sorted, then ``imagefolder:PATH``."""
    return sorted(DATASETS) + ["imagefolder:PATH"]


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load ``cfg.name``, carve a seeded validation split and apply ``train_subset``."""
    name = cfg.name
    folder: ImageFolder | None = None
    if name.startswith("imagefolder:"):
        folder = open_image_folder(cfg)
    elif name not in DATASETS:
        raise DataError(f"--data: unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    if cfg.stream and folder is None:
        raise DataError(f"--stream: only imagefolder:PATH data is read from disk batch by batch; --data {name} is "
                        f"held in memory (leave --stream out)")
    held_out: Split | StreamSplit | None = None  # an image folder's own val/
    absent: dict[str, str] = {}
    if folder is not None:
        splits, classes, mean, std, augment = _load_imagefolder(cfg, folder)
        train_all, held_out = splits["train"], splits.get("val")
        test = splits["test"] if "test" in splits else _empty_split(cfg.image_size)
        if "test" not in splits:
            absent["test"] = (f"imagefolder:{folder.root} has no test/ folder (train/ and val/ only); expected "
                              f"--split val or train, or a folder {folder.root / 'test'}/<class>/<image files>")
    else:
        train_all, test, classes, mean, std, augment = DATASETS[name](cfg)
    if cfg.mean is not None:  # the user's normalisation over the dataset's own
        mean, std = given_normalization(cfg, len(mean) if mean is not None else 3)
    if len(train_all) == 0 or (len(test) == 0 and "test" not in absent):
        raise DataError(f"dataset {name!r}: empty train or test split")
    # an image folder's from its files' names and sizes: streamed or not, no image is decoded for it
    fingerprint = folder.fingerprint if folder is not None else _fingerprint(train_all, test)
    if held_out is not None:  # the folder's own val/: train/ is not split
        train, val = train_all, held_out
    else:
        train, val = split_train_val(train_all, cfg.val_fraction, cfg.split_seed)
    if len(train) == 0:
        raise DataError(f"--val-fraction {cfg.val_fraction}: leaves none of the {len(train_all)} training samples "
                        f"of {name!r} to train on; expected a smaller fraction")
    if cfg.train_subset:
        train = take_subset(train, cfg.train_subset, cfg.split_seed)
    augment = augment_policy(augment, cfg)
    # (C, H, W); an image folder's without decoding one (a streamed split holds no images)
    input_shape = (3, cfg.image_size, cfg.image_size) if folder is not None else \
        tuple(int(s) for s in train_all.images.shape[1:])
    if augment.crop == "pad" and augment.pad >= min(input_shape[1:]):
        raise DataError(f"--crop-pad {augment.pad}: as large as the images ({list(input_shape[1:])} px); "
                        f"expected fewer pixels")
    info = DatasetInfo(
        name=name,
        classes=list(classes),
        input_shape=input_shape,  # type: ignore[arg-type]  # three ints by construction
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        fingerprint=fingerprint,
        augment=augment,
        eval_transform=data_transform(cfg, input_shape,  # type: ignore[arg-type]  # three ints by construction
                                      tuple(float(m) for m in mean), tuple(float(s) for s in std)),
    )
    return Dataset(info, train, val, test, absent)  # type: ignore[arg-type]  # a StreamSplit stands in for a Split


def split_train_val(train: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """A seeded split of the training set: ``round(val_fraction * N)`` samples go to val."""
    n = len(train)
    n_val = int(round(val_fraction * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return train.subset(train_idx), train.subset(val_idx)


def parse_subset(spec: str, n: int) -> int:
    """'0.33' -> a fraction of n; '20000' -> a count. Returns the count."""
    try:
        value = float(spec)
    except ValueError:
        raise DataError(f"--train-subset: expected a fraction in (0, 1] or a count, got {spec!r}") from None
    if not math.isfinite(value):
        raise DataError(f"--train-subset: expected a fraction in (0, 1] or a count, got {spec!r}")
    if 0 < value <= 1 and ("." in spec or value < 1):
        count = int(round(value * n))
    elif value >= 1 and value == int(value):
        count = int(value)
    else:
        raise DataError(f"--train-subset: expected a fraction in (0, 1] or a count, got {spec!r}")
    if count < 1 or count > n:
        raise DataError(f"--train-subset: {spec!r} selects {count} of {n} training samples")
    return count


def take_subset(train: Split, spec: str, seed: int) -> Split:
    """A seeded subset of ``train`` as ``parse_subset(spec)`` sizes it, ids kept in order."""
    # seed + 1: the subset draw must not replay split_train_val's permutation of the same seed
    count = parse_subset(spec, len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))
    return train.subset(order[:count].sort().values)


def _fingerprint(train: Split, test: Split) -> str:
    """``sha256:`` and 16 hex digits over the images and targets of train (before the val split) and test."""
    h = hashlib.sha256()
    for t in (train.images, train.targets, test.images, test.targets):
        h.update(t.contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()[:16]


# --------------------------------------------------------------------------- IDX (MNIST-like)


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a uint8 tensor of the dims in its header ([N, H, W], [N])."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    expected = 4 + 4 * ndim
    if len(data) < expected:
        raise DataError(f"{path}: truncated IDX file (header needs {expected} bytes, got {len(data)})")
    dims = struct.unpack(">" + "I" * ndim, data[4:expected])
    count = 1
    for d in dims:
        count *= d
    if len(data) != expected + count:
        raise DataError(f"{path}: truncated IDX file (expected {expected + count} bytes, got {len(data)})")
    return torch.frombuffer(bytearray(data[expected:]), dtype=torch.uint8).reshape(dims)


def _find_idx_dir(candidates: list[Path]) -> Path | None:
    """The first folder that holds all four IDX files, gzipped or not."""
    for d in candidates:
        if all(_idx_path(d, stem) for stem in IDX_FILES.values()):
            return d
    return None


def _idx_path(d: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        p = d / name
        if p.is_file():
            return p
    return None


def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/modelupdate``, by default ``~/.cache/modelupdate``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelupdate"


def _idx_candidates(cfg: DataConfig, slug: str, tv_name: str) -> list[Path]:
    """Folders to search in order: each root, root/<slug> (Debian's layout), root/<TorchvisionName>/raw."""
    roots: list[Path] = []
    if cfg.data_dir:
        roots.append(Path(cfg.data_dir))
    if os.environ.get("MODELUPDATE_DATA"):
        roots.append(Path(os.environ["MODELUPDATE_DATA"]))
    roots.append(Path("/usr/share/datasets"))
    roots.append(cache_dir())
    out: list[Path] = []
    for r in roots:
        out += [r, r / slug, r / tv_name / "raw"]
    return out


def _load_idx_dataset(cfg: DataConfig, slug: str, tv_name: str, classes: list[str]):
    """(train, test, classes) from IDX files found on disk, or downloaded by torchvision with ``--download``."""
    candidates = _idx_candidates(cfg, slug, tv_name)
    found = _find_idx_dir(candidates)
    if found is None and cfg.download:
        import torchvision

        getattr(torchvision.datasets, tv_name)(root=str(cache_dir()), train=True, download=True)
        getattr(torchvision.datasets, tv_name)(root=str(cache_dir()), train=False, download=True)
        found = _find_idx_dir(candidates)
    if found is None:
        searched = ", ".join(str(c) for c in candidates[:4])
        raise DataError(
            f"--data {slug}: IDX files not found (searched --data-dir, $MODELUPDATE_DATA, "
            f"/usr/share/datasets/{slug}, {cache_dir()}; e.g. {searched}); "
            f"pass --download, or on Debian: apt-get install dataset-{slug}"
        )
    parts = {k: read_idx(cast(Path, _idx_path(found, v))) for k, v in IDX_FILES.items()}  # found holds all four
    train = _idx_split(parts["train_images"], parts["train_labels"], found)
    test = _idx_split(parts["test_images"], parts["test_labels"], found)
    return train, test, classes


def _idx_split(images: torch.Tensor, labels: torch.Tensor, where: Path) -> Split:
    """images uint8 [N, H, W] and labels [N] -> a Split with images [N, 1, H, W]."""
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{where}: IDX images {tuple(images.shape)} and labels {tuple(labels.shape)} disagree")
    return Split(images.unsqueeze(1).contiguous(), labels.long(), torch.arange(len(labels)))


@register_dataset("fashion-mnist")
def _fashion(cfg: DataConfig):
    train, test, classes = _load_idx_dataset(cfg, "fashion-mnist", "FashionMNIST", FASHION_CLASSES)
    return train, test, classes, (0.2860,), (0.3530,), AugmentSpec(pad=2, hflip=True)


@register_dataset("mnist")
def _mnist(cfg: DataConfig):
    train, test, classes = _load_idx_dataset(cfg, "mnist", "MNIST", [str(i) for i in range(10)])
    return train, test, classes, (0.1307,), (0.3081,), AugmentSpec(pad=2, hflip=False)


def _torchvision_cifar(cfg: DataConfig, cls_name: str):
    """(train, test, classes) of torchvision's CIFAR10 / CIFAR100; images [N, H, W, C] -> [N, C, H, W]."""
    import torchvision

    root = cfg.data_dir or os.environ.get("MODELUPDATE_DATA") or str(cache_dir())
    cls = getattr(torchvision.datasets, cls_name)
    try:
        tr = cls(root=root, train=True, download=cfg.download)
        te = cls(root=root, train=False, download=cfg.download)
    except RuntimeError as exc:
        raise DataError(f"--data {cls_name.lower()}: not found under {root} ({exc}); pass --download") from None

    def to_split(ds) -> Split:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        targets = torch.tensor(ds.targets, dtype=torch.long)
        return Split(images, targets, torch.arange(len(targets)))

    return to_split(tr), to_split(te), list(tr.classes)


@register_dataset("cifar10")
def _cifar10(cfg: DataConfig):
    train, test, classes = _torchvision_cifar(cfg, "CIFAR10")
    return train, test, classes, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), AugmentSpec(4, True)


@register_dataset("cifar100")
def _cifar100(cfg: DataConfig):
    train, test, classes = _torchvision_cifar(cfg, "CIFAR100")
    return train, test, classes, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), AugmentSpec(4, True)


@register_dataset("synthetic")
def _synthetic(cfg: DataConfig):
    """Noisy stripes whose orientation and period name the class: learnable fast, not perfectly.

    Class k is a sine grating at angle pi*k/K with a period of 3 px (even k) or 5 px (odd k),
    a random phase (so a shift or crop keeps the class) and a random contrast in [0, 0.45]
    under Gaussian pixel noise: low-contrast samples are ambiguous, which leaves every model
    some errors, and different seeds make different ones. A texture, unlike a fixed pixel
    pattern, survives the global pooling of the CNNs, so 2 epochs of cnn-s learn it.
    """
    c, s, k = cfg.synthetic_channels, cfg.synthetic_size, cfg.synthetic_classes
    if k < 2 or s < 4 or c < 1 or cfg.synthetic_train < k or cfg.synthetic_test < 1:
        raise DataError("synthetic: need >= 2 classes, size >= 4, >= 1 channel and non-empty splits")
    g = torch.Generator().manual_seed(20240611)
    angle = math.pi * torch.arange(k, dtype=torch.float32) / k
    frequency = 2 * math.pi / torch.where(torch.arange(k) % 2 == 0, 3.0, 5.0)
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")

    def make(n: int) -> Split:
        targets = torch.arange(n) % k
        targets = targets[torch.randperm(n, generator=g)]
        phase = torch.rand(n, generator=g) * 2 * math.pi
        contrast = 0.45 * torch.rand(n, generator=g)
        a, f = angle[targets].view(n, 1, 1), frequency[targets].view(n, 1, 1)
        wave = torch.sin(f * (xx * torch.cos(a) + yy * torch.sin(a)) + phase.view(n, 1, 1))
        noise = torch.randn(n, c, s, s, generator=g) * 0.2
        images = (0.5 + contrast.view(n, 1, 1, 1) * wave.unsqueeze(1) + noise).clamp(0, 1)
        return Split((images * 255).round().to(torch.uint8), targets, torch.arange(n))

    train, test = make(cfg.synthetic_train), make(cfg.synthetic_test)
    classes = [f"class{i}" for i in range(k)]
    return train, test, classes, (0.5,) * c, (0.25,) * c, AugmentSpec(pad=1, hflip=False)


@dataclass(frozen=True)
class ImageFolder:
    """``imagefolder:PATH`` before any image is decoded: its classes, sample counts per split folder (train
    and val and/or test) and fingerprint (folders.py; the listing is cached in the user cache folder)."""

    root: Path
    classes: list[str]
    counts: dict[str, int]
    fingerprint: str


def given_normalization(cfg: DataConfig, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # called where --mean is given, and DataConfig checks that --std is given with it
    mean, std = cast(list, parse_number_list("--mean", cfg.mean)), cast(list, parse_number_list("--std", cfg.std))
    for option, values in (("--mean", mean), ("--std", std)):
        if len(values) != channels:
            raise DataError(f"{option}: {cfg.name} has {channels} channel(s); expected {channels} values, got "
                            f"{len(values)}")
    return tuple(mean), tuple(std)


def open_image_folder(cfg: DataConfig) -> ImageFolder:
    """Check PATH's layout (PATH/train/<class>/*, and PATH/val/<class>/* and/or PATH/test/<class>/*) and
    summarise it without decoding."""
    root = folder_root(cfg.name)
    splits = split_folders(root)
    if "val" in splits and cfg.val_fraction != DataConfig.val_fraction:
        raise DataError(f"--val-fraction {cfg.val_fraction}: imagefolder:{root} has a val/ folder, which is the "
                        f"validation split (train/ is not split); expected no --val-fraction")
    classes = folder_classes(root, splits)
    fingerprint, counts = folder_fingerprint(root, classes, cfg.image_size, listing_cache(cfg), splits)
    check_class_count(root, classes)
    warn_if_resized_far(native_side(root, list_split(root, "train", classes)[0]), cfg.image_size, f"imagefolder:{root}")
    return ImageFolder(root, classes, counts, fingerprint)


def folder_fingerprint_at(cfg: DataConfig, size: int) -> str:
    """The fingerprint ``cfg``'s image folder has when read at ``size`` px (a model of another input size
    trained on the same files)."""
    root = folder_root(cfg.name)
    splits = split_folders(root)
    return folder_fingerprint(root, folder_classes(root, splits), size, listing_cache(cfg), splits)[0]


def listing_cache(cfg: DataConfig) -> Path:
    """Where an image folder's listing and statistics are cached: ``--cache-dir``, else the user cache folder."""
    return Path(cfg.cache_dir) if cfg.cache_dir else cache_dir()


def _load_imagefolder(cfg: DataConfig, folder: ImageFolder):
    """``imagefolder:PATH``: RGB, centre-cropped to a square and resized to ``cfg.image_size``, so images are
    uint8 [N, 3, S, S] (folders.read_square). Each sample is named by its file's path relative to PATH
    (``test/cat/001.png``): ``Split.id_names``. Held in memory unless ``--stream`` or the decoded training
    set exceeds ``--memory-budget``: then read from disk batch by batch (streaming.py).

    Returns the splits by folder name (train, and val and/or test), classes, mean, std and augmentation."""
    size = cfg.image_size
    splits: dict[str, Split | StreamSplit]
    if should_stream(cfg.stream, folder.counts["train"], size, cfg.memory_budget):
        splits = dict(stream_splits(folder.root, folder.classes, folder.counts, size, cfg.workers,
                                    cfg.max_image_pixels))
    else:
        splits = {sub: _decoded_split(folder, sub, size, cfg.max_image_pixels) for sub in folder.counts}
    train = splits["train"]
    decoded = train.images if isinstance(train, Split) else None  # held in memory: no file read twice
    mean, std = (None, None) if cfg.mean is not None else \
        folder_stats(folder.root, folder.classes, size, listing_cache(cfg), decoded, cfg.max_image_pixels)
    return splits, folder.classes, mean, std, AugmentSpec(max(1, size // 8), True)


def _decoded_split(folder: ImageFolder, sub: str, size: int, max_pixels: int) -> Split:
    """Every image of PATH/sub decoded once into one uint8 tensor [N, 3, size, size]."""
    names, targets = list_split(folder.root, sub, folder.classes)
    images = torch.empty(len(names), 3, size, size, dtype=torch.uint8)
    for i, name in enumerate(names):
        try:
            images[i] = read_square(folder.root / name, size, max_pixels)
        except DataError as exc:
            raise DataError(f"--data imagefolder:{folder.root}: {exc}") from None
    return Split(images, torch.tensor(targets, dtype=torch.long), torch.arange(len(names)), tuple(names))


def _empty_split(size: int) -> Split:
    """The test split of an image folder without test/: no samples (``Dataset.absent`` says why)."""
    empty = torch.zeros(0, dtype=torch.long)
    return Split(torch.empty(0, 3, size, size, dtype=torch.uint8), empty, empty.clone(), ())
