"""Bad inputs to the Python API: each raises a ModelUpdateError subclass with one line naming the parameter
(never a TypeError, ValueError, AttributeError or MemoryError from deep inside), lists are accepted as a list
or as the CLI's "a,b,c" everywhere, per_class takes class names, and `info` shows only what applies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modelupdate import api
from modelupdate.config import DataConfig, EvalConfig, GateSpec, TrainConfig
from modelupdate.errors import ConfigError, ModelUpdateError, PredictionFileError
from modelupdate.methods import UpdateConfig

LABELS = np.array([0, 1, 2, 3]), np.array([0, 1, 3, 3]), np.array([0, 1, 2, 2])  # old, new, targets


def raises_naming(param: str, fn, error: type[ModelUpdateError] = ConfigError) -> str:
    """``fn()`` raises ``error`` with a one-line message that names ``param``; returns the message."""
    with pytest.raises(error) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    assert param in message, message
    return message


@pytest.fixture(scope="module")
def loaded(trained_model):
    return api.load(trained_model)


# --------------------------------------------------------------------------- the configuration classes

CONFIG_CASES = [
    # (what is built, the parameter the message names)
    (lambda: DataConfig(mean=["x", 1], std=[1, 1]), "DataConfig.mean"),
    (lambda: DataConfig(mean=[True], std=[1.0]), "DataConfig.mean"),
    (lambda: DataConfig(mean=5, std=[1.0]), "DataConfig.mean"),
    (lambda: DataConfig(mean=[float("nan")], std=[1.0]), "--mean"),
    (lambda: DataConfig(val_fraction="0.1"), "DataConfig.val_fraction"),
    (lambda: DataConfig(val_fraction=None), "DataConfig.val_fraction"),
    (lambda: DataConfig(name=5), "DataConfig.name"),
    (lambda: DataConfig(image_size=2.5), "DataConfig.image_size"),
    (lambda: DataConfig(image_size="32"), "DataConfig.image_size"),
    (lambda: DataConfig(crop="pad", crop_pad="4"), "DataConfig.crop_pad"),
    (lambda: DataConfig(hflip="x"), "DataConfig.hflip"),
    (lambda: DataConfig(split_seed=1.5), "DataConfig.split_seed"),
    (lambda: DataConfig(workers="2"), "DataConfig.workers"),
    (lambda: DataConfig(memory_budget="4"), "DataConfig.memory_budget"),
    (lambda: DataConfig(color_jitter=None), "DataConfig.color_jitter"),
    (lambda: DataConfig(synthetic_train="5"), "DataConfig.synthetic_train"),
    (lambda: DataConfig(rand_augment=[2.5, 9]), "DataConfig.rand_augment"),
    (lambda: DataConfig(batch=1), "unexpected keyword argument 'batch'"),
    (lambda: TrainConfig(batch_size=2.5), "TrainConfig.batch_size"),
    (lambda: TrainConfig(batch_size=2**64), "TrainConfig.batch_size"),
    (lambda: TrainConfig(epochs="2"), "TrainConfig.epochs"),
    (lambda: TrainConfig(epochs=True), "TrainConfig.epochs"),
    (lambda: TrainConfig(lr="0.1"), "TrainConfig.lr"),
    (lambda: TrainConfig(seed=None), "TrainConfig.seed"),
    (lambda: TrainConfig(seed=1.5), "TrainConfig.seed"),
    (lambda: TrainConfig(arch_args="{}"), "TrainConfig.arch_args"),
    (lambda: TrainConfig(momentum=None), "TrainConfig.momentum"),
    (lambda: TrainConfig(optimizer=["sgd"]), "TrainConfig.optimizer"),
    (lambda: UpdateConfig(alpha="0.5"), "UpdateConfig.alpha"),
    (lambda: UpdateConfig(topk=1.5), "UpdateConfig.topk"),
    (lambda: UpdateConfig(p=None), "UpdateConfig.p"),
    (lambda: EvalConfig(batch_size=2.5), "EvalConfig.batch_size"),
    (lambda: EvalConfig(id_column=3), "EvalConfig.id_column"),
    (lambda: EvalConfig(data="fashion-mnist"), "EvalConfig.data"),
    (lambda: GateSpec(max_nfr="2%"), "GateSpec.max_nfr"),
]


@pytest.mark.parametrize("index", range(len(CONFIG_CASES)))
def test_config_values_of_the_wrong_type_name_the_field(index):
    build, param = CONFIG_CASES[index]
    raises_naming(param, build)


def test_config_numbers_are_normalised_to_plain_python_types():
    cfg = TrainConfig(batch_size=np.int64(32), lr=np.float32(0.5), epochs=3, deterministic=np.bool_(True))
    assert type(cfg.batch_size) is int and type(cfg.lr) is float and cfg.deterministic is True
    assert json.loads(cfg.to_json())["batch_size"] == 32  # numpy scalars would not serialise
    assert TrainConfig(weight_decay=0).weight_decay == 0.0  # an int where a float is meant is fine
    assert EvalConfig(classes=["a", "b"]).classes == EvalConfig(classes="a,b").classes == ("a", "b")


def test_cli_messages_of_range_checks_are_unchanged():
    raises_naming("--batch-size: expected a positive integer, got 0", lambda: TrainConfig(batch_size=0))
    raises_naming("--std: expected finite values > 0", lambda: DataConfig(mean=[0.5], std=[0.0]))


# --------------------------------------------------------------------------- a list or a string, one rule

def test_data_config_takes_mean_and_std_as_a_list_or_a_string():
    as_list = DataConfig(mean=[0.485, 0.456, 0.406], std=(0.229, 0.224, 0.225))
    as_text = DataConfig(mean="0.485,0.456,0.406", std="0.229,0.224,0.225")
    assert as_list == as_text  # the same recipe, so resume and kept members see no difference
    assert as_list.mean == "0.485,0.456,0.406"
    as_array = DataConfig(mean=np.array([0.5, 0.25]), std=torch.tensor([1.0, 0.5]))
    assert (as_array.mean, as_array.std) == ("0.5,0.25", "1.0,0.5")
    assert DataConfig(rand_augment=[2, 9]) == DataConfig(rand_augment="2,9")
    assert DataConfig(train_subset=0.5).train_subset == "0.5"


def test_data_config_mean_as_a_list_normalises_images_as_the_string_does(tiny_data_config):
    from modelupdate.data import load_dataset

    by_list = load_dataset(tiny_data_config(mean=[0.25], std=[0.5]))
    by_text = load_dataset(tiny_data_config(mean="0.25", std="0.5"))
    assert by_list.info.mean == by_text.info.mean == (0.25,)
    assert by_list.info.std == by_text.info.std == (0.5,)


def test_import_spec_takes_lists_or_strings():
    by_list = api.ImportSpec(arch="tiny", weights="w.safetensors", classes=["a", "b", "c", "d"],
                             input_shape=(1, 12, 12), mean=[0.5], std=[0.25])
    by_text = api.ImportSpec(arch="tiny", weights="w.safetensors", classes="a,b,c,d", input_shape="1,12,12",
                             mean="0.5", std="0.25")
    assert by_list == by_text
    assert by_text.classes == ["a", "b", "c", "d"] and by_text.input_shape == (1, 12, 12)
    assert by_text.weights == Path("w.safetensors")
    # a string is split at commas, never into its characters
    assert api.ImportSpec(arch="tiny", weights="w.safetensors", classes="abcd").classes == ["abcd"]


def test_import_spec_one_class_name_string_is_refused_at_import(tmp_path, trained_model):
    spec = api.ImportSpec(arch="tiny", weights=trained_model, classes="abcd", input_shape=(1, 8, 8), mean=[0.5],
                          std=[0.5])
    raises_naming("--classes: expected at least 2 class names, got 1",
                  lambda: api.import_model(spec, tmp_path / "m.safetensors"))


IMPORT_CASES = [
    (dict(input_shape=(1, 12.7, 12)), "ImportSpec.input_shape"),
    (dict(input_shape=(True, 8, 8)), "ImportSpec.input_shape"),
    (dict(input_shape="1,8.5,8"), "ImportSpec.input_shape"),
    (dict(mean=["x"]), "ImportSpec.mean"),
    (dict(mean=[True]), "ImportSpec.mean"),
    (dict(std=0.5), "ImportSpec.std"),
    (dict(classes=[1, 2, 3, 4]), "ImportSpec.classes"),
    (dict(weights=None), "ImportSpec.weights"),
    (dict(like=5), "ImportSpec.like"),
    (dict(arch=None), "ImportSpec.arch"),
    (dict(arch_args="[1]"), "--arch-args"),
    (dict(unsafe_load_pickle="yes"), "ImportSpec.unsafe_load_pickle"),
    (dict(colour="red"), "unexpected keyword argument 'colour'"),
]


@pytest.mark.parametrize("index", range(len(IMPORT_CASES)))
def test_import_spec_bad_values_name_the_field(index):
    changes, param = IMPORT_CASES[index]
    values = dict(arch="tiny", weights="w.safetensors", classes=["a", "b"], input_shape=(1, 8, 8), mean=[0.5],
                  std=[0.5]) | changes
    raises_naming(param, lambda: api.ImportSpec(**values))


# --------------------------------------------------------------------------- the API's entry points

def test_predict_images_checks_batch_size_and_inputs(loaded, trained_model):
    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    for bad in (-1, 0, 2.5, True, "8"):
        raises_naming("batch_size", lambda bad=bad: api.predict_images(loaded, images, batch_size=bad))
    raises_naming("images", lambda: api.predict_images(loaded, "abc"))
    raises_naming("images", lambda: api.predict_images(loaded, np.full((1, 1, 8, 8), None, dtype=object)))
    raises_naming("model", lambda: api.predict_images(str(trained_model), images))
    assert api.predict_images(loaded, images, batch_size=2).shape == (3, loaded.meta.num_classes)


def test_per_class_num_classes_must_cover_the_labels():
    old, new, targets = LABELS
    raises_naming("num_classes", lambda: api.per_class(old, new, targets, num_classes=2))  # 4 classes in labels
    for bad in (0, -1, 4.5, True, 2**40):
        raises_naming("num_classes", lambda bad=bad: api.per_class(old, new, targets, num_classes=bad))
    assert len(api.per_class(old, new, targets, num_classes=6)) == 6
    raises_naming("targets", lambda: api.per_class(old, new, np.array([0, 1, 2, 2**40])))  # no 8 TiB table


def test_flip_metrics_refuses_class_indices_that_are_not_class_indices():
    old, new, targets = LABELS
    huge = np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64)  # would wrap to -1 as int64
    raises_naming("old", lambda: api.flip_metrics(huge, new.astype(np.uint64), targets.astype(np.uint64)))
    raises_naming("new", lambda: api.flip_metrics(old, np.array(["a", "b", "c", "d"]), targets))
    raises_naming("targets", lambda: api.flip_metrics(old, new, np.array([None] * 4)))
    summary = api.flip_metrics(torch.tensor(old), torch.tensor(new), torch.tensor(targets))
    assert summary.counts.negative_flips == 1


def test_gates_and_files_check_their_arguments(tmp_path):
    old, new, targets = LABELS
    summary = api.flip_metrics(old, new, targets)
    raises_naming("summary", lambda: api.check_gates("x", max_nfr="2%"))
    raises_naming("per_class_rows", lambda: api.check_gates(summary, [1, 2], max_class_nfr="5%"))
    raises_naming("results", lambda: api.failed_gates([1]))
    raises_naming("results", lambda: api.failed_gates(None))
    raises_naming("path", lambda: api.load(None))
    raises_naming("path", lambda: api.info(5))
    raises_naming("path", lambda: api.read_predictions(None))
    preds = api.Predictions.from_arrays(np.arange(4), targets, preds=new)
    raises_naming("predictions", lambda: api.write_predictions(tmp_path / "p.npz", "x"))
    raises_naming("path", lambda: api.write_predictions(None, preds))


def test_training_and_predict_entry_points_check_their_arguments(tmp_path, trained_model, tiny_data_config,
                                                                   tiny_train_config):
    data, cfg, out = tiny_data_config(), tiny_train_config(), tmp_path / "m.safetensors"
    raises_naming("data", lambda: api.predict(trained_model, 5))
    raises_naming("device", lambda: api.predict(trained_model, data, device=3))
    raises_naming("checkpoint", lambda: api.predict(None, data))
    raises_naming("config", lambda: api.train(data, None, out))
    raises_naming("out", lambda: api.train(data, cfg, None))
    raises_naming("resume", lambda: api.train(data, cfg, out, resume="no"))
    raises_naming("data", lambda: api.train(3, cfg, out))
    for bad in (0, 2.5, "2", True):
        raises_naming("members", lambda bad=bad: api.ensemble_train(data, cfg, out, members=bad))
    raises_naming("update", lambda: api.ldi_train(data, cfg, None, out, old=trained_model))
    raises_naming("update", lambda: api.ldi_train(data, cfg, {}, out, old=trained_model))
    raises_naming("old", lambda: api.ldi_train(data, cfg, api.UpdateConfig(), out, old=7))
    raises_naming("spec", lambda: api.import_model("spec", out))
    assert not out.exists()


def test_train_takes_a_dataset_name_as_predict_does(tmp_path, tiny_train_config):
    result = api.train("synthetic", tiny_train_config(epochs=1), tmp_path / "m.safetensors")
    assert result.meta.dataset == "synthetic"


# --------------------------------------------------------------------------- per_class with class names

def test_per_class_takes_class_names():
    old, new, targets = LABELS
    names = ["ant", "bee", "cat", "dog"]
    rows = api.per_class(old, new, targets, classes=names)
    assert [r.name for r in rows] == names and [r.index for r in rows] == [0, 1, 2, 3]
    assert api.per_class(old, new, targets, classes="ant,bee,cat,dog") == rows
    by_name = api.per_class(np.array(names)[old], np.array(names)[new], np.array(names)[targets], classes=names)
    assert by_name == rows  # labels given as names are mapped to their indices
    raises_naming("targets", lambda: api.per_class(old, new, np.array(["ant", "bee", "cat", "eel"]), classes=names))
    raises_naming("num_classes", lambda: api.per_class(old, new, targets, num_classes=5, classes=names))
    raises_naming("classes", lambda: api.per_class(old, new, targets, classes=["ant", "ant", "cat", "dog"]))
    raises_naming("num_classes", lambda: api.per_class(old, new, targets, classes=["ant", "bee"]))


def test_per_class_on_predictions_uses_their_classes():
    old_p = api.Predictions.from_arrays(np.arange(4), LABELS[2], preds=LABELS[0], num_classes=5,
                                        classes=["a", "b", "c", "d", "e"])
    new_p = api.Predictions.from_arrays(np.arange(4), LABELS[2], preds=LABELS[1], num_classes=5)
    rows = api.per_class(old_p, new_p)
    assert len(rows) == 5 and [r.name for r in rows] == ["a", "b", "c", "d", "e"]
    raises_naming("classes", lambda: api.per_class(old_p, new_p, classes=["v", "w", "x", "y", "z"]))
    raises_naming("num_classes", lambda: api.per_class(old_p, new_p, num_classes=6))


# --------------------------------------------------------------------------- read_predictions(columns=...)

def test_read_predictions_columns_as_list_or_string_and_errors_name_the_parameter(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("Sample,Truth,Guess\na,0,0\nb,1,0\n")
    by_list = api.read_predictions(path, columns=["sample", "truth", "guess"])
    by_text = api.read_predictions(path, columns="sample,truth,guess")
    assert by_list.ids.tolist() == by_text.ids.tolist() == ["a", "b"] and by_text.preds.tolist() == [0, 0]
    message = raises_naming("columns=", lambda: api.read_predictions(path), PredictionFileError)
    assert "--id-column" not in message
    for bad in (("sample", "truth"), ("a", "a", "b"), (1, 2, 3), ("", "b", "c")):
        raises_naming("columns", lambda bad=bad: api.read_predictions(path, columns=bad))


# --------------------------------------------------------------------------- info: only what applies

def _write_image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for k, name in enumerate(("ant", "bee")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(80 * k + rng.normal(60, 30, (10, 10, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def _info_config(run_cli, checkpoint: Path) -> dict:
    code, out, err = run_cli("info", checkpoint, "--json")
    assert code == 0, err
    config = json.loads(out)["config"]
    code, table, err = run_cli("info", checkpoint)
    assert code == 0, err
    assert "synthetic_" not in table or config["data"]["name"] == "synthetic"
    assert '"lr": null' not in table
    return config


def test_info_of_an_image_folder_checkpoint_shows_what_applies(tmp_path, run_cli, tiny_train_config):
    root = _write_image_folder(tmp_path / "folder")
    data = DataConfig(name=f"imagefolder:{root}", image_size=8, val_fraction=0.25, cache_dir=str(tmp_path / "c"))
    out = api.train(data, tiny_train_config(batch_size=4), tmp_path / "m.safetensors").out
    config = _info_config(run_cli, out)
    assert not [k for k in config["data"] if k.startswith("synthetic_")]
    assert config["data"]["image_size"] == 8
    assert config["train"]["lr"] == pytest.approx(0.1 * 4 / 256)  # SGD's default: 0.1 x batch / 256


def test_info_of_a_built_in_dataset_checkpoint_shows_what_applies(tmp_path, run_cli, fashion_dir,
                                                                    tiny_train_config):
    if not (fashion_dir / "train-labels-idx1-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not installed at {fashion_dir} (apt-get install dataset-fashion-mnist)")
    data = DataConfig(name="fashion-mnist", data_dir=str(fashion_dir), train_subset="64")
    out = api.train(data, tiny_train_config(optimizer="adamw"), tmp_path / "m.safetensors").out
    config = _info_config(run_cli, out)
    assert not [k for k in config["data"] if k.startswith("synthetic_")]
    assert "image_size" not in config["data"] and "stream" not in config["data"]
    assert config["train"]["lr"] == pytest.approx(2e-3)  # AdamW's default
    assert api.info(out).config["train"]["lr"] is None  # the checkpoint keeps what was asked
