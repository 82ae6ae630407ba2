"""Resuming must not silently mix two training recipes."""

from pathlib import Path

import pytest

from modelupdate.config import TrainConfig
from modelupdate.engine import RECIPE_KEYS, check_same_recipe
from modelupdate.errors import ConfigError


def test_same_recipe_passes_and_device_may_differ():
    saved = TrainConfig(epochs=3, device="cpu").to_dict()
    check_same_recipe(saved, TrainConfig(epochs=3, device="auto"), Path("s.safetensors"))


@pytest.mark.parametrize("key,value", [("epochs", 5), ("lr", 0.3), ("batch_size", 64), ("seed", 7), ("arch", "cnn-m"),
                                       ("clip_grad_norm", 5.0)])
def test_a_changed_recipe_is_refused_naming_the_option(key, value):
    saved = TrainConfig(epochs=3).to_dict()
    with pytest.raises(ConfigError) as err:
        check_same_recipe(saved, TrainConfig(**(TrainConfig(epochs=3).to_dict() | {key: value})), Path("s.safetensors"))
    message = str(err.value)
    assert key in message and "s.safetensors" in message and repr(value) in message
    assert "\n" not in message


def test_recipe_keys_are_train_config_fields():
    assert set(RECIPE_KEYS) <= set(TrainConfig().to_dict())
