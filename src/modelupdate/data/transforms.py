"""Each model's own preprocessing: how it sees an image, recorded in its checkpoint.

A model is evaluated through its ``EvalTransform``: the decoded uint8 image's shorter side resized to
``round(H / crop_pct)`` (torchvision's reference scripts: Resize(256) then CenterCrop(224), i.e.
crop_pct 0.875; timm's ``crop_pct``), the centre ``H x W`` cropped, then normalised with the model's own
mean and std. In training, a model held beside the student (the reference, the old model) sees the
student's augmented view itself, resized to its input size and normalised its own way (``adapt``), so
every model of an update keeps its preprocessing (docs/your-models.md, "Preprocessing").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from ..errors import ConfigError, ModelUpdateWarning
from ..validation import check_crop_pct, check_interpolation

# inputs this size and larger are evaluated on a centre crop of CROP_PCT of the resized image, as
# torchvision's ImageNet reference scripts do; smaller ones (CIFAR, MNIST sizes) on the whole image
LARGE_INPUT = 128
CROP_PCT = 0.875


# images resized by more than this factor either way are said in one warning line
RESIZE_WARNING = 2.0


def warn_if_resized_far(native: int | None, size: int, source: str) -> None:
    """Legal but suspicious: images of about ``native`` px fed to a model at more than twice or half of it."""
    import warnings

    if native and max(size / native, native / size) > RESIZE_WARNING:
        warnings.warn(f"{source}: its images are about {native} px and are resized to {size} px "
                      f"({max(size / native, native / size):.1f}x) for this model; check --image-size (or the "
                      f"model's input size)", ModelUpdateWarning, stacklevel=3)


def default_crop_pct(input_shape: tuple[int, ...]) -> float:
    return CROP_PCT if min(input_shape[1:]) >= LARGE_INPUT else 1.0


def normalize_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 pixels (0..255) or floats in 0..1, [B, C, H, W] -> float32 ``(x - mean) / std`` per channel, on the
    images' device: the one normalisation of training, evaluation and the API."""
    x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
    return (x - torch.tensor(mean, device=x.device).view(1, -1, 1, 1)) / torch.tensor(std, device=x.device).view(
        1, -1, 1, 1)


@dataclass(frozen=True)
class EvalTransform:
    """uint8 images [B, C, h, w] of any size -> float32 [B, C, H, W] as the model expects them."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        check_crop_pct("crop_pct", self.crop_pct)
        check_interpolation("interpolation", self.interpolation)

    @property
    def resize_size(self) -> int:
        """The shorter side the image is resized to before the centre crop."""
        return int(math.floor(min(self.input_shape[1:]) / self.crop_pct + 0.5))

    def to_meta(self) -> dict[str, Any]:
        """What a checkpoint records beside its input shape and normalisation."""
        return {"crop_pct": self.crop_pct, "resize": self.resize_size, "interpolation": self.interpolation}

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, h, w] -> normalised float32 [B, C, H, W]: resize, centre crop, normalise."""
        return self.normalize(self.resize_and_crop(images))

    def resize_and_crop(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, h, w] -> uint8 [B, C, H, W]; nothing is done where it would change nothing."""
        from torchvision.transforms.v2 import functional as TF

        size = self.input_shape[1:]
        if tuple(images.shape[-2:]) == tuple(size) and self.crop_pct == 1.0:
            return images
        if min(images.shape[-2:]) != self.resize_size:
            images = TF.resize(images, self.resize_size, interpolation=self._mode(), antialias=True)
        return TF.center_crop(images, list(size))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_pixels(images, self.mean, self.std)

    def adapt(self, x: torch.Tensor, view: EvalTransform) -> torch.Tensor:
        """A batch normalised by ``view`` (the student's augmented training view, float [B, C, h, w]) as
        this model sees it: the same pixels, the whole view resized to this input size (no crop: the
        view is already what training looks at), normalised this model's way. Identity where they agree."""
        same_norm = _close(self.mean, view.mean) and _close(self.std, view.std)
        size = tuple(self.input_shape[1:])
        if same_norm and tuple(x.shape[-2:]) == size:
            return x
        from torchvision.transforms.v2 import functional as TF

        pixels = x * torch.tensor(view.std, device=x.device).view(1, -1, 1, 1) + \
            torch.tensor(view.mean, device=x.device).view(1, -1, 1, 1)
        if tuple(pixels.shape[-2:]) != size:
            pixels = TF.resize(pixels, list(size), interpolation=self._mode(), antialias=True)
        return (pixels - torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)) / \
            torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)

    def _mode(self):
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)


def data_transform(data_cfg: Any, input_shape: tuple[int, int, int], mean: tuple[float, ...],
                   std: tuple[float, ...]) -> EvalTransform:
    """The transform of a model trained on ``data_cfg`` (a DataConfig) whose inputs are ``input_shape``."""
    crop_pct = resolve_crop_pct(data_cfg.crop_pct, data_cfg.resize, input_shape, default_crop_pct(input_shape))
    return EvalTransform(cast("tuple[int, int, int]", tuple(input_shape)), tuple(mean), tuple(std), crop_pct,
                         data_cfg.interpolation)


def resolve_crop_pct(crop_pct: float | None, resize: Any, input_shape: tuple[int, ...], fallback: float) -> float:
    """The crop share from ``--crop-pct`` or ``--resize`` (the shorter side, in pixels), else ``fallback``."""
    if crop_pct is not None and resize is not None:
        raise ConfigError("--resize / --crop-pct: give one of them (--crop-pct = the input size / --resize)")
    if resize is None:
        return fallback if crop_pct is None else crop_pct
    side = min(input_shape[1:])
    if not isinstance(resize, int) or isinstance(resize, bool) or resize < side:
        raise ConfigError(f"--resize {resize}: smaller than the input size {side}; expected at least it (the "
                          f"centre crop is cut from the resized image)")
    return side / resize


def transform_of(meta: Any) -> EvalTransform:
    """A checkpoint's transform (``formats.ModelMeta``); a file without one: the whole image resized."""
    recorded = meta.eval_transform or {}
    return EvalTransform(tuple(meta.input_shape), tuple(meta.normalization["mean"]), tuple(meta.normalization["std"]),
                         crop_pct=float(recorded.get("crop_pct", 1.0)),
                         interpolation=recorded.get("interpolation", "bilinear"))


class SeenThrough(torch.nn.Module):
    """``model`` fed a batch normalised by ``view`` (the student's), adapted to its own preprocessing."""

    def __init__(self, model: torch.nn.Module, transform: EvalTransform, view: EvalTransform):
        super().__init__()
        self.model, self.transform, self.view = model, transform, view
        self.eval()

    def train(self, mode: bool = True) -> SeenThrough:
        """Always in eval mode, whatever asks: a model held beside the student is never trained."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform.adapt(x, self.view))


def whole_view(view: EvalTransform) -> EvalTransform:
    """``view`` without its centre crop: the whole decoded image, as training batches show it."""
    return EvalTransform(view.input_shape, view.mean, view.std, 1.0, view.interpolation)


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(p - q) < 1e-6 for p, q in zip(a, b, strict=True))
