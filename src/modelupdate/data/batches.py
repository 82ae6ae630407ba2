"""Batches on the device: seeded per-step RNGs, normalisation, augmentation, mixing, sharding, order.

A batch is moved to the training device as uint8 ``[B, C, H, W]`` and cropped,
flipped and normalised there, a whole batch at once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .sources import AugmentSpec, DatasetInfo, Split
from .transforms import normalize_pixels


@dataclass
class Batch:
    """One batch of samples on the training device (shapes per field)."""

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
    """uint8 [B, C, H, W] -> float32 [B, C, H, W], ``(x / 255 - mean) / std`` per channel, on the input's device."""
    return normalize_pixels(images_u8, info.mean, info.std)


def augment_batch(images: torch.Tensor, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    """The policy ``spec`` on a whole batch at once: uint8 [B, C, H, W] -> uint8 [B, C, H, W].

    Every random draw comes from ``gen`` on the CPU, so a step replays on any device and after a resume.
    """
    if spec.crop == "pad" and spec.pad > 0:
        images = pad_crop(images, spec.pad, gen)
    elif spec.crop == "random-resized":
        images = random_resized_crop(images, spec.scale, gen)
    if spec.hflip > 0:
        flip = (torch.rand(images.shape[0], generator=gen) < spec.hflip).to(images.device)[:, None, None, None]
        images = torch.where(flip, images.flip(3), images)
    if spec.color_jitter > 0:
        images = jitter_brightness_contrast(images, spec.color_jitter, gen)
    if spec.rand_augment is not None:
        images = rand_augment(images, *spec.rand_augment, gen)
    return images


def pad_crop(images: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels each way, the border filled with zeros."""
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(images.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    bidx = torch.arange(b, device=images.device)[:, None, None, None]
    cidx = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[bidx, cidx, rows, cols]


def random_resized_boxes(b: int, h: int, w: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """[B, 4] boxes (x1, y1, x2, y2) in pixels: an area share in [scale, 1], an aspect ratio in [3/4, 4/3]
    (log-uniform), clipped to the image, at a uniform position."""
    area = scale + (1 - scale) * torch.rand(b, generator=gen)
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(b, generator=gen)
    ratio = torch.exp(log_ratio)
    cw = torch.sqrt(area * ratio).clamp(max=1.0) * w
    ch = torch.sqrt(area / ratio).clamp(max=1.0) * h
    x1 = torch.rand(b, generator=gen) * (w - cw)
    y1 = torch.rand(b, generator=gen) * (h - ch)
    return torch.stack([x1, y1, x1 + cw, y1 + ch], dim=1)


def random_resized_crop(images: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Each image's random box resized back to the full size (bilinear, one batched op)."""
    from torchvision.ops import roi_align

    b, _, h, w = images.shape
    boxes = random_resized_boxes(b, h, w, scale, gen)
    rois = torch.cat([torch.arange(b, dtype=torch.float32)[:, None], boxes], dim=1).to(images.device)
    out = roi_align(images.float(), rois, (h, w), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return out.round_().clamp_(0, 255).to(images.dtype)


def jitter_brightness_contrast(images: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Brightness and contrast each scaled by a factor in [1 - strength, 1 + strength], per image."""
    b = images.shape[0]
    bright = (1 - strength + 2 * strength * torch.rand(b, generator=gen)).to(images.device).view(b, 1, 1, 1)
    contrast = (1 - strength + 2 * strength * torch.rand(b, generator=gen)).to(images.device).view(b, 1, 1, 1)
    x = images.float() * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean).round_().clamp_(0, 255).to(images.dtype)


def rand_augment(images: torch.Tensor, num_ops: int, magnitude: int, gen: torch.Generator) -> torch.Tensor:
    """torchvision's RandAugment, image by image, with torch's RNG seeded from ``gen`` inside a fork (the
    global RNG the training loop uses is left as it was)."""
    from torchvision.transforms import v2

    transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(img) for img in images.cpu()]).to(images.device)


def mix_batch(batch: Batch, num_classes: int, *, mixup: float, cutmix: float, mix_prob: float = 1.0,
              switch_prob: float = 0.5, seed: int) -> Batch:
    """MixUp or CutMix of a whole batch (images [B, C, H, W]) with the batch reversed (timm's batch mode).

    With probability ``mix_prob`` the batch is mixed: by CutMix with probability ``switch_prob`` when both
    concentrations are > 0, else by the one that is. The mixing weight is ``lam ~ Beta(a, a)`` (for CutMix,
    the share of the image left uncut). Returns the mixed images, ``soft_targets`` [B, C] =
    ``lam * onehot(y) + (1 - lam) * onehot(y reversed)``, and as ``targets`` [B] the label with the larger share.
    Every draw comes from ``seed`` alone, so a resumed run mixes as the uninterrupted one did.
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
    """Indices int64 [<= ceil(n / world)] of this rank's evaluation shard: contiguous, non-overlapping, unpadded
    (so counts pooled over ranks stay exact)."""
    per = (n + world - 1) // world
    return torch.arange(min(n, rank * per), min(n, (rank + 1) * per))  # late ranks of a small set: empty


def train_order(n: int, *, seed: int, epoch: int, rank: int, world: int, batch_size: int) -> list[int]:
    """Sample indices of one epoch for this rank, via torch's DistributedSampler, cut to full batches.

    ``drop_last``: every rank gets the same number of full batches so DDP stays in step; a rank with fewer
    samples than one batch keeps them all rather than train on nothing.
    """
    from torch.utils.data import DistributedSampler

    sampler: DistributedSampler[int] = DistributedSampler(
        range(n),  # type: ignore[arg-type]  # a range stands in for a dataset: the sampler only takes its len()
        num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = list(sampler)
    full = (len(order) // batch_size) * batch_size
    return order[:full] if full > 0 else order


def train_batches(
    split: Split, info: DatasetInfo, *, batch_size: int, seed: int, epoch: int, start_step: int = 0,
    device: torch.device, rank: int = 0, world: int = 1, channels_last: bool = False,
) -> Iterator[tuple[int, Batch]]:
    """Yield (step, batch) for one training epoch from ``start_step`` on: augmented, normalised batches of
    ``batch_size`` (images float32 [B, C, H, W]) in this rank's ``train_order``."""
    order = torch.tensor(train_order(len(split), seed=seed, epoch=epoch, rank=rank, world=world, batch_size=batch_size))
    steps = (len(order) + batch_size - 1) // batch_size
    plan = [order[step * batch_size : (step + 1) * batch_size] for step in range(start_step, steps)]
    # a streamed split reads only these batches from disk (the skipped ones of a resumed epoch never)
    for step, idx, images in zip(range(start_step, steps), plan, split.image_batches(plan, device), strict=True):
        images = images.to(device, non_blocking=True)
        images = augment_batch(images, info.augment, step_generator(seed, epoch, step, rank))
        x = normalize(images, info)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield step, Batch(x, split.targets[idx].to(device), split.ids[idx].to(device))


def eval_batches(
    split: Split, info: DatasetInfo, *, batch_size: int, device: torch.device,
    rank: int = 0, world: int = 1, channels_last: bool = False, transform=None,
) -> Iterator[Batch]:
    """Un-augmented batches (images float32 [<= batch_size, C, H, W]) of this rank's shard, in id order, through
    ``transform`` (a model's own ``transforms.EvalTransform``), else the data's, else its normalisation alone."""
    idx_all = shard_indices(len(split), rank, world)
    plan = [idx_all[start : start + batch_size] for start in range(0, len(idx_all), batch_size)]
    transform = transform if transform is not None else info.eval_transform
    for idx, images in zip(plan, split.image_batches(plan, device), strict=True):
        images = images.to(device, non_blocking=True)
        x = transform.apply(images) if transform is not None else normalize(images, info)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield Batch(x, split.targets[idx].to(device), split.ids[idx].to(device))
