"""Datasets held in memory as uint8 tensors, split, and augmented in batch.

Small image datasets (MNIST-like, CIFAR) fit in memory several times over, so
the expensive part of a PIL pipeline (per-image decode and transform in Python)
is avoided: each split is one ``uint8`` tensor ``[N, C, H, W]``; a batch is
moved to the training device as uint8 and cropped / flipped / normalised there.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import DataConfig
from .errors import DataError

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
    """Train-time augmentation applied to a whole batch: pad-and-crop, horizontal flip."""

    pad: int = 0
    hflip: bool = False


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

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass
class Split:
    """One split held in memory. images uint8 [N, C, H, W]; targets, ids int64 [N]."""

    images: torch.Tensor
    targets: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.targets[index], self.ids[index])


@dataclass
class Dataset:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"--split: expected train, val or test, got {name!r}")
        split = getattr(self, name)
        if len(split) == 0:
            raise DataError(f"dataset {self.info.name!r}: the {name} split is empty")
        return split


# --------------------------------------------------------------------------- registry

Loader = Callable[[DataConfig], tuple[Split, Split, list[str], tuple, tuple, AugmentSpec]]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str):
    def wrap(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return wrap


def known_datasets() -> list[str]:
    return sorted(DATASETS) + ["imagefolder:PATH"]


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load ``cfg.name``, carve a seeded validation split and apply ``train_subset``."""
    name = cfg.name
    if name.startswith("imagefolder:"):
        loader: Loader = _load_imagefolder
    elif name in DATASETS:
        loader = DATASETS[name]
    else:
        raise DataError(f"--data: unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    train_all, test, classes, mean, std, augment = loader(cfg)
    if len(train_all) == 0 or len(test) == 0:
        raise DataError(f"dataset {name!r}: empty train or test split")
    fingerprint = _fingerprint(train_all, test)
    train, val = split_train_val(train_all, cfg.val_fraction, cfg.split_seed)
    if len(train) == 0:
        raise DataError(f"--val-fraction {cfg.val_fraction}: leaves none of the {len(train_all)} training samples "
                        f"of {name!r} to train on; expected a smaller fraction")
    if cfg.train_subset:
        train = take_subset(train, cfg.train_subset, cfg.split_seed)
    if not cfg.augment:
        augment = AugmentSpec()
    info = DatasetInfo(
        name=name,
        classes=list(classes),
        input_shape=tuple(int(s) for s in train_all.images.shape[1:]),  # type: ignore[arg-type]
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        fingerprint=fingerprint,
        augment=augment,
    )
    return Dataset(info, train, val, test)


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
    count = parse_subset(spec, len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))
    return train.subset(order[:count].sort().values)


def _fingerprint(train: Split, test: Split) -> str:
    h = hashlib.sha256()
    for t in (train.images, train.targets, test.images, test.targets):
        h.update(t.contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()[:16]


# --------------------------------------------------------------------------- IDX (MNIST-like)


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a uint8 tensor."""
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
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelupdate"


def _idx_candidates(cfg: DataConfig, slug: str, tv_name: str) -> list[Path]:
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
    parts = {k: read_idx(_idx_path(found, v)) for k, v in IDX_FILES.items()}  # type: ignore[arg-type]
    train = _idx_split(parts["train_images"], parts["train_labels"], found)
    test = _idx_split(parts["test_images"], parts["test_labels"], found)
    return train, test, classes


def _idx_split(images: torch.Tensor, labels: torch.Tensor, where: Path) -> Split:
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


def _load_imagefolder(cfg: DataConfig):
    """``imagefolder:PATH`` with PATH/train/<class>/* and PATH/test/<class>/*, resized in memory."""
    import torchvision
    from torchvision.transforms import functional as TF

    root = Path(cfg.name.split(":", 1)[1])
    for sub in ("train", "test"):
        if not (root / sub).is_dir():
            raise DataError(f"--data imagefolder:{root}: missing folder {root / sub} (expected train/ and test/)")
    size = cfg.image_size
    if size < 1:
        raise DataError(f"--image-size: expected a positive number of pixels, got {size}")

    def load(sub: str):
        try:
            ds = torchvision.datasets.ImageFolder(str(root / sub))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(f"--data imagefolder:{root}: {str(exc).rstrip('.')}; "
                            f"expected {root / sub}/<class>/<image files>") from None
        images = torch.empty(len(ds), 3, size, size, dtype=torch.uint8)
        for i, (path, _) in enumerate(ds.samples):
            try:
                img = ds.loader(path).convert("RGB")
                images[i] = TF.pil_to_tensor(TF.resize(TF.center_crop(img, min(img.size)), [size, size]))
            except (OSError, ValueError, SyntaxError) as exc:  # PIL: corrupt, truncated, unreadable, no access
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(f"--data imagefolder:{root}: cannot read image {path} ({reason}); expected a "
                                f"readable image file") from None
        targets = torch.tensor(ds.targets, dtype=torch.long)
        return Split(images, targets, torch.arange(len(targets))), ds.classes

    train, classes = load("train")
    if len(classes) < 2:
        raise DataError(f"--data imagefolder:{root}: {root / 'train'} has {len(classes)} class folder(s); "
                        f"expected at least 2 (one folder per class)")
    test, test_classes = load("test")
    if classes != test_classes:
        raise DataError(f"--data imagefolder:{root}: train classes {classes} differ from test classes {test_classes}")
    return train, test, classes, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), AugmentSpec(max(1, size // 8), True)


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    images: torch.Tensor  # float [B, C, H, W], normalised, on device
    targets: torch.Tensor  # int64 [B], on device
    ids: torch.Tensor  # int64 [B], on device
    # [B, C] class probabilities of a mixed batch (mixup / cutmix), else None: CE uses them when present
    soft_targets: torch.Tensor | None = None


def step_seed(seed: int, epoch: int, step: int, rank: int = 0, stream: str = "augment") -> int:
    """A 63-bit seed for one (seed, epoch, step, rank) and one use of it, from a hash.

    A hash, not a linear formula: no two runs, epochs, steps, ranks or streams (augmentation,
    dropout, mixing) share a seed, so adjacent seeds never replay each other's draws.
    """
    key = f"{stream}:{seed}:{epoch}:{step}:{rank}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def step_generator(seed: int, epoch: int, step: int, rank: int = 0, stream: str = "augment") -> torch.Generator:
    """The RNG of one training step on one rank, derived from (seed, epoch, step, rank) alone.

    Deriving it instead of carrying one stream through the run makes a resumed
    run draw exactly the augmentations the uninterrupted run would have drawn;
    each torchrun rank draws its own.
    """
    return torch.Generator().manual_seed(step_seed(seed, epoch, step, rank, stream))


def normalize(images_u8: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 [B,C,H,W] -> float32 normalised, on the tensor's device."""
    mean = torch.tensor(info.mean, device=images_u8.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=images_u8.device).view(1, -1, 1, 1)
    return (images_u8.float().div_(255) - mean) / std


def augment_batch(images: torch.Tensor, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    """Random pad-and-crop and horizontal flip of a whole batch [B,C,H,W] at once."""
    b, _, h, w = images.shape
    if spec.pad > 0:
        p = spec.pad
        padded = torch.nn.functional.pad(images, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(images.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        bidx = torch.arange(b, device=images.device)[:, None, None, None]
        cidx = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[bidx, cidx, rows, cols]
    if spec.hflip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(images.device)[:, None, None, None]
        images = torch.where(flip, images.flip(3), images)
    return images


def mix_batch(batch: Batch, num_classes: int, *, mixup: float, cutmix: float, mix_prob: float = 1.0,
              switch_prob: float = 0.5, seed: int) -> Batch:
    """MixUp or CutMix of a whole batch with the batch reversed (timm's batch mode), from ``seed`` alone.

    With probability ``mix_prob`` the batch is mixed: by CutMix with probability ``switch_prob`` when both
    concentrations are > 0, else by the one that is. The mixing weight is ``lam ~ Beta(a, a)`` (for CutMix,
    the share of the image left uncut). Returns the mixed images, ``soft_targets`` [B, C] =
    ``lam * onehot(y) + (1 - lam) * onehot(y reversed)``, and as ``targets`` the label with the larger share.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if (mixup <= 0 and cutmix <= 0) or rng.random() >= mix_prob:
        return batch
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < switch_prob)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    images, partner = batch.images, batch.images.flip(0)
    if use_cutmix:
        h, w = images.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        images = images.clone()
        images[..., y1:y2, x1:x2] = partner[..., y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)  # the share actually kept
    else:
        images = lam * images + (1.0 - lam) * partner
    one_hot = torch.nn.functional.one_hot(batch.targets, num_classes).float()
    soft = lam * one_hot + (1.0 - lam) * one_hot.flip(0)
    targets = batch.targets if lam >= 0.5 else batch.targets.flip(0)
    return Batch(images, targets, batch.ids, soft)


def shard_indices(n: int, rank: int, world: int) -> torch.Tensor:
    """Contiguous, non-overlapping, unpadded shard for evaluation (pooled counts stay exact)."""
    per = (n + world - 1) // world
    return torch.arange(min(n, rank * per), min(n, (rank + 1) * per))  # late ranks of a small set: empty


def train_order(n: int, *, seed: int, epoch: int, rank: int, world: int, batch_size: int) -> list[int]:
    """Sample order of one epoch for this rank, via torch's DistributedSampler.

    ``drop_last``: every rank gets the same number of full batches so DDP stays in step.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = list(sampler)
    full = (len(order) // batch_size) * batch_size
    return order[:full] if full > 0 else order


def train_batches(
    split: Split, info: DatasetInfo, *, batch_size: int, seed: int, epoch: int, start_step: int = 0,
    device: torch.device, rank: int = 0, world: int = 1, channels_last: bool = False,
) -> Iterator[tuple[int, Batch]]:
    """Yield (step, batch) for one training epoch from ``start_step`` on."""
    order = torch.tensor(train_order(len(split), seed=seed, epoch=epoch, rank=rank, world=world, batch_size=batch_size))
    steps = (len(order) + batch_size - 1) // batch_size
    for step in range(start_step, steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        images = split.images[idx].to(device, non_blocking=True)
        images = augment_batch(images, info.augment, step_generator(seed, epoch, step, rank))
        x = normalize(images, info)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield step, Batch(x, split.targets[idx].to(device), split.ids[idx].to(device))


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    per_rank = n // world
    full = (per_rank // batch_size) * batch_size
    return max(1, (full if full > 0 else per_rank + batch_size - 1) // batch_size)


def eval_batches(
    split: Split, info: DatasetInfo, *, batch_size: int, device: torch.device,
    rank: int = 0, world: int = 1, channels_last: bool = False,
) -> Iterator[Batch]:
    """Un-augmented batches of this rank's shard, in id order."""
    idx_all = shard_indices(len(split), rank, world)
    for start in range(0, len(idx_all), batch_size):
        idx = idx_all[start : start + batch_size]
        x = normalize(split.images[idx].to(device, non_blocking=True), info)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield Batch(x, split.targets[idx].to(device), split.ids[idx].to(device))
