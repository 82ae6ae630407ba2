"""Augmentation users choose: --hflip, --crop, --color-jitter, --rand-augment, on whole batches, seeded per step."""

from __future__ import annotations

import pytest
import torch

from modelupdate import recipe
from modelupdate.config import DataConfig
from modelupdate.data.batches import (
    augment_batch,
    jitter_brightness_contrast,
    rand_augment,
    random_resized_boxes,
    random_resized_crop,
    train_batches,
)
from modelupdate.data.sources import AugmentSpec, DatasetInfo, Split, augment_policy
from modelupdate.errors import ConfigError
from modelupdate.recipe import check_same
from modelupdate.workflows.common import data_recipe


def asymmetric_split(n: int = 64, size: int = 8) -> Split:
    """Images bright on the left half only: a flipped one is bright on the right."""
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    images[:, :, :, : size // 2] = 200
    return Split(images, torch.zeros(n, dtype=torch.long), torch.arange(n))


def info_with(spec: AugmentSpec, size: int = 8) -> DatasetInfo:
    return DatasetInfo(name="t", classes=["a", "b"], input_shape=(1, size, size), mean=(0.0,), std=(1.0 / 255,),
                       fingerprint="x", augment=spec)


def batches(spec: AugmentSpec) -> torch.Tensor:
    split = asymmetric_split()
    out = [b.images for _, b in train_batches(split, info_with(spec), batch_size=32, seed=0, epoch=0,
                                              device=torch.device("cpu"))]
    return torch.cat(out)  # normalised as (x/255 - 0) * 255: the pixel values again


@pytest.mark.parametrize("p, flipped", [(0.0, 0), (1.0, 64)])
def test_hflip_probability_is_honoured(p, flipped):
    images = batches(AugmentSpec(crop="none", hflip=p))
    right_bright = (images[:, 0, :, -1] > 100).all(dim=1)
    assert int(right_bright.sum()) == flipped
    if p == 0.0:
        assert torch.allclose(images, asymmetric_split().images.float(), atol=1e-3)


def test_policy_puts_the_options_over_the_dataset_default():
    default = AugmentSpec(pad=2, hflip=True)
    assert augment_policy(default, DataConfig()) == AugmentSpec(pad=2, hflip=0.5)
    chosen = augment_policy(default, DataConfig(hflip=0.0, crop="random-resized", crop_scale=0.5, color_jitter=0.2,
                                                rand_augment="2,9"))
    assert chosen == AugmentSpec(pad=0, hflip=0.0, crop="random-resized", scale=0.5, color_jitter=0.2,
                                 rand_augment=(2, 9))
    assert augment_policy(default, DataConfig(crop_pad=5)).pad == 5
    assert augment_policy(default, DataConfig(augment=False)) == AugmentSpec()  # --no-augment: none


@pytest.mark.parametrize("field, value, message", [
    ("hflip", 1.5, "--hflip: expected a probability"), ("crop", "zoom", "--crop: expected one of pad"),
    ("crop_scale", 0.0, "--crop-scale"), ("color_jitter", 1.0, "--color-jitter"),
    ("rand_augment", "2", "--rand-augment: expected N,M"), ("rand_augment", "2,40", "M in 0..30"),
])
def test_bad_augmentation_options_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**{field: value})


def test_random_resized_boxes_stay_inside_and_keep_their_area():
    boxes = random_resized_boxes(1000, 20, 30, 0.35, torch.Generator().manual_seed(0))
    x1, y1, x2, y2 = boxes.unbind(1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 30 + 1e-4).all() and (y2 <= 20 + 1e-4).all()
    area = (x2 - x1) * (y2 - y1) / 600
    assert area.max() <= 1 + 1e-5 and area.min() >= 0.35 * 0.75 - 1e-5  # clipping to the image can cut it by 3/4


def test_random_resized_crop_of_a_flat_image_is_flat_and_the_whole_box_is_the_identity():
    flat = torch.full((4, 3, 16, 16), 77, dtype=torch.uint8)
    assert torch.equal(random_resized_crop(flat, 0.3, torch.Generator().manual_seed(1)), flat)
    ramp = torch.arange(16, dtype=torch.uint8).repeat(2, 1, 16, 1) * 10
    whole = random_resized_crop(ramp, 1.0, torch.Generator().manual_seed(2))  # area 1: at most an aspect squeeze
    assert whole.shape == ramp.shape and whole.dtype == torch.uint8


def test_color_jitter_scales_brightness_within_its_strength():
    flat = torch.full((256, 1, 4, 4), 100, dtype=torch.uint8)
    out = jitter_brightness_contrast(flat, 0.25, torch.Generator().manual_seed(0)).float()
    assert out.min() >= 75 and out.max() <= 125 and out.std() > 5  # contrast does nothing to a flat image
    assert (out == out[:, :, :1, :1]).all()


def test_rand_augment_replays_from_the_step_generator_and_leaves_torch_rng_alone():
    images = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = rand_augment(images, 2, 9, torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = rand_augment(images, 2, 9, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, images)


def test_every_step_of_a_policy_replays_exactly():
    spec = AugmentSpec(crop="random-resized", scale=0.5, hflip=0.5, color_jitter=0.3, rand_augment=(1, 5))
    split = asymmetric_split()
    one = augment_batch(split.images, spec, torch.Generator().manual_seed(9))
    two = augment_batch(split.images, spec, torch.Generator().manual_seed(9))
    assert torch.equal(one, two) and one.dtype == torch.uint8


def test_a_changed_policy_is_refused_on_resume_and_an_unset_one_keeps_old_states(tmp_path):
    info = info_with(AugmentSpec())
    saved = data_recipe(DataConfig(hflip=0.0), info)
    with pytest.raises(ConfigError, match="--hflip = 0.0"):
        check_same({"data": saved}, {"data": data_recipe(DataConfig(), info)}, what="state", remedy="")
    # a state written before the augmentation options existed recorded none of them: their defaults
    older = {k: v for k, v in data_recipe(DataConfig(), info).items() if k not in ("hflip", "crop", "mean")}
    check_same({"data": recipe.data_recipe(older)}, {"data": data_recipe(DataConfig(), info)}, what="state", remedy="")


def test_the_policy_is_recorded_in_the_checkpoint(tmp_path, run_cli):
    from modelupdate.formats import read_meta

    out = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "--data", "synthetic", "--arch", "tiny", "--epochs", "1", "--device", "cpu",
                           "--quiet", "--hflip", "0", "--crop", "random-resized", "--crop-scale", "0.6",
                           "--color-jitter", "0.1", "--out", out)
    assert code == 0, err
    data = read_meta(out).config["data"]
    assert (data["hflip"], data["crop"], data["crop_scale"], data["color_jitter"]) == (0.0, "random-resized", 0.6, 0.1)
    code, _, err = run_cli("train", "--data", "synthetic", "--out", tmp_path / "x.safetensors", "--crop", "zoom")
    assert code == 2 and "--crop: expected one of pad, random-resized, none" in err


@pytest.mark.parametrize("options, message", [
    ({"augment": False, "hflip": 0.5, "rand_augment": "2,9"}, "--no-augment: .* so --hflip, --rand-augment would do"),
    ({"crop": "none", "crop_pad": 2}, "--crop-pad: only used by --crop pad, not --crop none"),
    ({"crop_scale": 0.5}, "--crop-scale: only used by --crop random-resized"),
])
def test_options_that_would_be_ignored_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**options)
    DataConfig(crop="random-resized", crop_scale=0.5)  # together they are fine


def test_a_pad_as_large_as_the_image_is_refused():
    from modelupdate.data.sources import load_dataset
    from modelupdate.errors import DataError

    with pytest.raises(DataError, match="--crop-pad 12: as large as the images"):
        load_dataset(DataConfig(name="synthetic", synthetic_train=16, synthetic_test=8, crop_pad=12))
