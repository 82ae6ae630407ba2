"""The "same recipe" rule: what two trainings must share for one to continue, or stand beside, the other.

One comparator serves every place that mixes the work of two runs: ``--resume`` (the resumable state
against the command), the members ``ensemble-train --resume`` keeps, and merging ensembles. A recipe
has three sections: ``train`` (TrainConfig fields that change the weights), ``data`` (the data and
augmentation options, and the data's fingerprint) and ``update`` (ldi-train's method, its parameters
and the sha256 of every model the student is held against or measured on). A difference is named by
the option a user types (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import AUGMENT_KEYS, DataConfig, TrainConfig
from .errors import ConfigError
from .fields import option_name
from .methods import UpdateConfig

# TrainConfig fields that change the trained weights (device, compile, eval batch and the like do not)
TRAIN_KEYS = ("arch", "arch_args", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
              "label_smoothing", "warmup_epochs", "clip_grad_norm", "seed", "dropout", "mixup", "cutmix",
              "mix_prob", "mix_switch_prob", "amp", "ema_epochs", "lr_cycles")
# DataConfig fields that change what is trained on (streaming, workers and the memory budget do not)
DATA_KEYS = ("name", "val_fraction", "train_subset", "split_seed", "augment", "image_size", "synthetic_classes",
             "synthetic_size", "synthetic_channels", "synthetic_train", "synthetic_test", *AUGMENT_KEYS,
             "mean", "std", "crop_pct", "resize", "interpolation")

# recipe keys that are no config field with a flag: the option that sets them
KEY_OPTIONS = {"fingerprint": "--data (the files it holds)", "reference_sha256": "--reference",
               "parent_sha256": "--old", "parent_predictions_sha256": "--old", "reference_cache": "--reference-cache",
               "lr_cycles": "--snapshots", **{f"synthetic_{k}": "--data synthetic"
                                              for k in ("classes", "size", "channels", "train", "test")}}


def option_for(key: str) -> str:
    """The option a recipe key comes from: its field's flag (``fields.py``), else ``KEY_OPTIONS``."""
    if key in KEY_OPTIONS:
        return KEY_OPTIONS[key]
    cls = next((c for c in (TrainConfig, DataConfig, UpdateConfig) if key in c.__dataclass_fields__), None)
    return option_name(cls, key) if cls is not None else key


def train_recipe(train: dict[str, Any]) -> dict[str, Any]:
    """The weight-changing fields of a TrainConfig's dict; a field the dict predates counts as its default."""
    full = TrainConfig().to_dict() | train
    full["ema_epochs"] = full["ema_epochs"] or 0.0  # unset (None) and 0 both train without an average
    return {key: full[key] for key in TRAIN_KEYS}


def data_recipe(data: dict[str, Any], fingerprint: str | None = None) -> dict[str, Any]:
    """The data fields of a DataConfig's dict (defaults where it predates one) and the data's fingerprint."""
    full = DataConfig().to_dict() | data
    recipe = {key: full[key] for key in DATA_KEYS}
    fingerprint = fingerprint or data.get("fingerprint")
    return recipe | ({"fingerprint": fingerprint} if fingerprint else {})


def update_recipe(update: dict[str, Any] | None) -> dict[str, Any] | None:
    """ldi-train's method, its resolved parameters, whether the reference's logits come from a cache, and
    the sha256 of the old model (or its prediction file) and of the reference."""
    if not update:
        return None
    return {"method": update.get("method"), **(update.get("params") or {}),
            "reference_cache": bool(update.get("reference_cache")),
            **{key: update.get(key) for key in ("parent_sha256", "parent_predictions_sha256", "reference_sha256")}}


def recipe_of(train: dict[str, Any], data: dict[str, Any], update: dict[str, Any] | None = None,
              fingerprint: str | None = None) -> dict[str, dict[str, Any]]:
    """A whole recipe from config dicts (as stored in checkpoints and training states)."""
    recipe = {"train": train_recipe(train), "data": data_recipe(data, fingerprint)}
    return recipe | ({"update": upd} if (upd := update_recipe(update)) else {})


def differences(saved: Mapping[str, dict[str, Any] | None], current: dict[str, dict[str, Any]], *,
                ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(key, saved value, current value) for every key the two recipes disagree on. A section or key that
    ``saved`` lacks (written before it was recorded) is not compared; one that only ``saved`` has is."""
    found = []
    for section, saved_values in saved.items():
        if not saved_values:
            continue
        current_values = current.get(section) or {}
        for key in saved_values:
            if key in ignore:
                continue
            if saved_values[key] != current_values.get(key):
                found.append((key, saved_values[key], current_values.get(key)))
    return found


def shown(key: str, value: Any) -> str:
    """A value as the message shows it: a sha256 by its first 12 digits."""
    if key.endswith("sha256") and isinstance(value, str):
        return f"sha256 {value[:12]}"
    return repr(value)


def check_same(saved: Mapping[str, dict[str, Any] | None], current: dict[str, dict[str, Any]], *, what: str,
               remedy: str, ignore: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming the first option on which ``current`` differs from ``saved`` (``what``:
    the thing written with ``saved``, e.g. "--resume: m.state.safetensors")."""
    found = differences(saved, current, ignore=ignore)
    if found:
        key, was, now = found[0]
        raise ConfigError(f"{what} was written with {option_for(key)} = {shown(key, was)} ({key}), this command "
                          f"has {shown(key, now)}; {remedy}")
