"""Each model's preprocessing (data/transforms.py) against hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from modelupdate.data.transforms import EvalTransform, default_crop_pct
from modelupdate.errors import ConfigError


def blocks(size: int, cells: list[list[int]]) -> torch.Tensor:
    """uint8 [1, 1, size, size]: a grid of constant blocks with the given values."""
    n = len(cells)
    grid = torch.tensor(cells, dtype=torch.uint8)
    return grid.repeat_interleave(size // n, 0).repeat_interleave(size // n, 1)[None, None]


def test_same_size_whole_image_is_normalisation_alone():
    images = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8)
    t = EvalTransform((1, 8, 8), (0.5,), (0.25,))
    assert torch.equal(t.apply(images), (images.float() / 255 - 0.5) / 0.25)


def test_centre_crop_of_the_resized_image():
    images = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8)
    t = EvalTransform((1, 4, 4), (0.0,), (1.0,), crop_pct=0.5)  # resize to 8 (already), crop the centre 4x4
    assert t.resize_size == 8
    assert torch.equal(t.resize_and_crop(images), images[..., 2:6, 2:6])


def test_resize_then_crop_keeps_what_the_pipeline_keeps():
    # 16 px image of 4x4 blocks of 4 px; resize to 8 (nearest: blocks of 2 px), centre-crop 4: the inner blocks
    cells = [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 100, 110], [120, 130, 140, 150]]
    t = EvalTransform((1, 4, 4), (0.0,), (1.0,), crop_pct=0.5, interpolation="nearest")
    out = t.resize_and_crop(blocks(16, cells))
    assert torch.equal(out, blocks(4, [[50, 60], [90, 100]]))


def test_the_student_view_is_resized_and_renormalised_for_another_model():
    student = EvalTransform((1, 8, 8), (0.5,), (0.25,))
    other = EvalTransform((1, 4, 4), (0.0,), (1.0,), interpolation="nearest")
    pixels = blocks(8, [[0, 255], [51, 102]])
    view = student.apply(pixels)
    seen = other.adapt(view, student)
    assert torch.allclose(seen, blocks(4, [[0, 255], [51, 102]]).float() / 255, atol=1e-6)
    assert student.adapt(view, student) is view, "a model with the student's preprocessing sees the view itself"


def test_defaults_follow_torchvision_references_for_large_inputs():
    assert default_crop_pct((3, 224, 224)) == 0.875 and EvalTransform((3, 224, 224), (0,) * 3, (1,) * 3,
                                                                      0.875).resize_size == 256
    assert default_crop_pct((3, 32, 32)) == 1.0


@pytest.mark.parametrize("kwargs,option", [({"crop_pct": 0.0}, "crop_pct"), ({"crop_pct": 1.5}, "crop_pct"),
                                           ({"interpolation": "lanczos9"}, "interpolation")])
def test_bad_values_are_refused(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        EvalTransform((1, 4, 4), (0.0,), (1.0,), **kwargs)
