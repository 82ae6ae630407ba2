"""config.py: the configuration dataclasses' checks, their JSON round trip and the small helpers beside them."""

from __future__ import annotations

import json

import pytest

from modelupdate.config import (
    DataConfig,
    EvalConfig,
    TrainConfig,
    check_subset_spec,
    eval_batch_size_for,
    parse_arch_args,
    parse_rand_augment,
    with_update_dropout,
)
from modelupdate.errors import ConfigError


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "--epochs: expected a positive integer, got 0"),
    ({"optimizer": "adam"}, "--optimizer: expected 'sgd' or 'adamw', got 'adam'"),
    ({"lr": 0.0}, "--lr: expected a positive finite number, got 0.0"),
    ({"lr": float("inf")}, "--lr: expected a positive finite number, got inf"),
    ({"momentum": 1.0}, "TrainConfig.momentum: expected a value in [0, 1), got 1.0"),
    ({"seed": -1}, "--seed: expected an integer in [0, 2^63), got -1"),
    ({"lr_cycles": 0}, "--snapshots: expected a positive number of cycles, got 0"),
    ({"mix_switch_prob": 1.5}, "--mix-switch-prob: expected a probability in [0, 1], got 1.5"),
    ({"clip_grad_norm": -1.0}, "--clip-grad-norm: expected a number >= 0 (0: no clipping), got -1.0"),
])
def test_train_config_refusals_name_the_option(options, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**options)
    assert str(info.value) == message
    assert info.value.exit_code == 2  # bad input, as the CLI exits


@pytest.mark.parametrize("options, message", [
    ({"val_fraction": 1.0}, "--val-fraction: expected a value in [0, 1), got 1.0"),
    ({"image_size": 0}, "--image-size: expected a positive number of pixels, got 0"),
    ({"split_seed": -1}, "--split-seed: expected an integer in [0, 2^63), got -1"),
    # beyond 64 bits the type check speaks first, naming the field too
    ({"split_seed": 2**63}, "--split-seed (DataConfig.split_seed): expected an integer that fits in 64 bits, got "
                            "9223372036854775808 (int)"),
    ({"synthetic_train": 2**63}, "DataConfig.synthetic_train: expected an integer that fits in 64 bits, got "
                                 "9223372036854775808 (int)"),  # no command sets it: its field is named
    ({"workers": 65}, "--workers: expected a number of processes in [0, 64], got 65"),
    ({"crop_pct": 0.9, "resize": 40}, "--resize / --crop-pct: give one of them (--crop-pct = --image-size / --resize)"),
    ({"interpolation": "lanczos"}, "--interpolation: expected one of bilinear, bicubic, nearest, got 'lanczos'"),
    # an image folder's square images may be no larger than an image that may be decoded: isqrt(10000) = 100
    ({"name": "imagefolder:/nowhere", "image_size": 101, "max_image_pixels": 10_000},
     "--image-size: expected pixels in [1, 100] (its square within --max-image-pixels 10000), got 101"),
])
def test_data_config_refusals_name_the_option(options, message):
    with pytest.raises(ConfigError) as info:
        DataConfig(**options)
    assert str(info.value) == message
    # the same size that just fits is accepted, and a synthetic dataset is not held to it
    DataConfig(name="imagefolder:/nowhere", image_size=100, max_image_pixels=10_000)
    DataConfig(image_size=101, max_image_pixels=10_000)


def test_configs_round_trip_through_json_and_refuse_unknown_keys():
    data = DataConfig(name="synthetic", val_fraction=0.2, train_subset=0.5, hflip=0.0, crop="random-resized",
                      crop_scale=0.5, rand_augment=[2, 9], mean=[0.5, 0.25, 0.75], std=(0.25, 0.5, 1.0))
    # lists are kept as the CLI's text, so that one recipe is stored either way
    assert (data.train_subset, data.rand_augment, data.mean, data.std) == ("0.5", "2,9", "0.5,0.25,0.75",
                                                                          "0.25,0.5,1.0")
    assert DataConfig.from_dict(json.loads(data.to_json())) == data
    train = TrainConfig(arch="tiny", arch_args={"width": 16}, epochs=3, optimizer="adamw", lr=1e-3, dropout=0.1)
    back = TrainConfig.from_dict(json.loads(train.to_json()))
    assert back == train and back.arch_args == {"width": 16}
    assert train.to_dict()["epochs"] == 3 and json.loads(train.to_json())["optimizer"] == "adamw"

    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": 1, "zeta": 1, "alpha": 2})
    assert str(info.value) == "TrainConfig: unknown field(s) alpha, zeta"  # sorted
    with pytest.raises(ConfigError, match=r"^DataConfig: expected a JSON object, got list$"):
        DataConfig.from_dict([("name", "synthetic")])
    with pytest.raises(ConfigError, match=r"^TrainConfig: "):  # a misspelt keyword: ConfigError, not TypeError
        TrainConfig(epoch=3)


def test_resolved_lr_by_optimizer_and_batch():
    # SGD: 0.1 per 256 samples of a batch; AdamW: 2e-3 whatever the batch; an explicit --lr always wins
    assert TrainConfig(batch_size=512).resolved_lr() == pytest.approx(0.2)
    assert TrainConfig(batch_size=32).resolved_lr() == pytest.approx(0.0125)
    assert TrainConfig(batch_size=512, optimizer="adamw").resolved_lr() == pytest.approx(2e-3)
    assert TrainConfig(batch_size=512, optimizer="adamw", lr=0.05).resolved_lr() == 0.05
    assert TrainConfig(batch_size=32, lr=0.3).resolved_lr() == 0.3
    # where --dropout is unset an update trains without dropout; a given one is kept
    assert with_update_dropout(TrainConfig()).dropout == 0.0
    given = TrainConfig(dropout=0.3)
    assert with_update_dropout(given) is given


@pytest.mark.parametrize("shape, expected", [
    ((3, 96, 96), 256),  # 27648 values: 512 x 27648 > 1024 x 12288 >= 256 x 27648
    ((3, 128, 128), 256),  # 4 x the reference image: exactly 1024 / 4
    ((3, 129, 129), 128),  # a pixel more and the 256 batch no longer fits
    ((1, 8, 8), 1024),  # small images keep the largest batch
    ((), 1024), ((0, 5), 1024),  # no values: counted as one
    ((3, 4096, 4096), 16),  # never below 16
])
def test_eval_batch_size_for(shape, expected):
    assert eval_batch_size_for(shape) == expected


def test_option_parsers():
    for spec in ("0.5", "1.0", "1", "20000", "2.0", "1e3"):
        check_subset_spec(spec)  # a fraction in (0, 1], or a whole count
    for spec in ("0", "0.0", "1.5", "-3", "abc", "", "nan", "inf"):
        with pytest.raises(ConfigError, match=r"^--train-subset: expected a fraction in \(0, 1\] or a count"):
            check_subset_spec(spec)
    assert parse_rand_augment("2,9") == (2, 9) and parse_rand_augment("10,0") == (10, 0)
    for text in ("0,9", "11,9", "2,-1", "a,b", "2,9,1"):
        with pytest.raises(ConfigError, match=r"^--rand-augment: expected N"):
            parse_rand_augment(text)
    assert parse_arch_args('{"width": 32, "depth": 2}') == {"width": 32, "depth": 2}
    for text in ("[32]", "width=32", "", "null"):
        with pytest.raises(ConfigError, match=r"^--arch-args: expected a JSON object"):
            parse_arch_args(text)
    options = EvalConfig(id_column="image", classes=("a", "b"), classes_file="classes.txt")
    assert options.csv_columns == ("image", "target", "pred")
    assert options.input_files() == ["classes.txt"] and EvalConfig().input_files() == []
    assert options.reading() == {"id_column": "image", "label_column": "target", "pred_column": "pred",
                                 "classes": ["a", "b"], "classes_file": "classes.txt"}
    with pytest.raises(ConfigError, match=r"^--split: expected train, val, test, got 'holdout'$"):
        EvalConfig(split="holdout")
