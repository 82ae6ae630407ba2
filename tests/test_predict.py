"""workflows.predict: checkpoints and ensembles as Predictions, and telling inputs apart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from modelupdate import checkpoint
from modelupdate.config import DataConfig, EvalConfig
from modelupdate.errors import ConfigError, MismatchError, PredictionFileError
from modelupdate.models import count_parameters
from modelupdate.predictions import Predictions, write_predictions
from modelupdate.workflows import inputs as inputs_module
from modelupdate.workflows.inputs import (
    checkpoint_kind,
    cost_columns,
    load_inputs,
    measure_ms_per_image,
    predictions_from_checkpoint,
)

BAD = Path(__file__).parent / "data" / "bad_predictions"


@pytest.fixture
def ensemble(trained_model, tmp_path) -> Path:
    """Two members: the trained model, and the same with its last bias shifted by +1."""
    first = checkpoint.load_checkpoint(trained_model)
    second = checkpoint.load_checkpoint(trained_model)
    last_bias = [p for name, p in second.model.named_parameters() if name.endswith("bias")][-1]
    with torch.no_grad():
        last_bias += 1.0
    meta = dataclasses.replace(first.meta, member_seeds=[0, 1])
    path = tmp_path / "ensemble.safetensors"
    checkpoint.save_ensemble(path, [first.model, second.model], meta)
    return path


def test_checkpoint_kind(trained_model, ensemble, tmp_path):
    preds = Predictions.from_arrays(np.arange(3), np.array([0, 1, 0]), preds=np.array([0, 1, 1]))
    pred_file = write_predictions(tmp_path / "p.safetensors", preds)
    assert checkpoint_kind(trained_model) == "model"
    assert checkpoint_kind(ensemble) == "ensemble"
    assert checkpoint_kind(pred_file) is None
    for name in ("checkpoint_not_predictions.safetensors", "garbage.safetensors", "nan_logits.npz"):
        assert checkpoint_kind(BAD / name) is None
    assert checkpoint_kind(tmp_path / "missing.safetensors") is None


def test_predictions_from_checkpoint(tiny_data_config, trained_model):
    p = predictions_from_checkpoint(trained_model, tiny_data_config(), device="cpu", batch_size=16)
    loaded = checkpoint.load_checkpoint(trained_model)
    assert p.logits.shape == (64, 4) and p.num_classes == 4
    assert p.classes == loaded.meta.classes
    assert p.ids.tolist() == list(range(64))
    assert np.array_equal(p.preds, p.logits.argmax(1))
    # the error rate the training run measured on the same test split
    error_rate = float(np.mean(p.preds != p.targets))
    assert error_rate == pytest.approx(loaded.meta.metrics["test_error_rate"])
    assert p.source == str(trained_model)
    assert p.meta["checkpoint_sha256"] == loaded.sha256
    assert p.meta["split"] == "test" and p.meta["dataset"] == "synthetic"
    assert cost_columns(p) == {"params": count_parameters(loaded.model), "ms_per_image": None}


def test_other_split(tiny_data_config, trained_model):
    p = predictions_from_checkpoint(trained_model, tiny_data_config(), split="val", device="cpu")
    assert len(p) == round(0.1 * 256)


def test_mismatch_names_checkpoint_and_data(trained_model):
    with pytest.raises(MismatchError) as info:
        predictions_from_checkpoint(trained_model, DataConfig(name="synthetic", synthetic_channels=3), device="cpu")
    message = str(info.value)
    assert str(trained_model) in message and "--data synthetic" in message
    assert "1 channel(s)" in message and "has 3" in message


def test_a_model_of_another_size_sees_the_images_through_its_own_transform(trained_model):
    """An 8 px model on 12 px data: the images resized to 8 px and normalised its way, by hand."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.data import load_dataset

    got = predictions_from_checkpoint(trained_model, DataConfig(name="synthetic"), device="cpu")
    loaded = load_checkpoint(trained_model)
    test = load_dataset(DataConfig(name="synthetic")).test
    norm = loaded.meta.normalization
    resized = TF.resize(test.images, [8, 8], antialias=True).float() / 255
    x = (resized - torch.tensor(norm["mean"]).view(1, -1, 1, 1)) / torch.tensor(norm["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = loaded.model.eval()(x).numpy()
    np.testing.assert_allclose(got.logits, expected, rtol=1e-5, atol=1e-5)


def test_ensemble_is_the_mean_of_its_members(tiny_data_config, trained_model, ensemble):
    single = predictions_from_checkpoint(trained_model, tiny_data_config(), device="cpu")
    both = predictions_from_checkpoint(ensemble, tiny_data_config(), device="cpu")
    np.testing.assert_allclose(both.logits, single.logits + 0.5, rtol=1e-5, atol=1e-5)
    assert both.meta["checkpoint_kind"] == "ensemble"
    assert cost_columns(both)["params"] == 2 * cost_columns(single)["params"]


def test_checkpoints_need_data(trained_model, ensemble):
    with pytest.raises(ConfigError, match="is a model checkpoint; pass --data to evaluate it"):
        load_inputs([trained_model], EvalConfig())
    with pytest.raises(ConfigError, match="is an ensemble checkpoint; pass --data"):
        load_inputs([BAD.parent / "x.npz", ensemble], EvalConfig())


def test_prediction_files_are_read_before_any_model_runs(tiny_data_config, trained_model, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a model ran before the prediction files were checked")

    monkeypatch.setattr(inputs_module, "predictions_from_checkpoint", must_not_run)
    with pytest.raises(PredictionFileError, match="contains NaN or Inf"):
        load_inputs([trained_model, BAD / "nan_logits.npz"], EvalConfig(data=tiny_data_config()))


def test_timed_inputs_record_ms_per_image(tiny_data_config, trained_model):
    [p] = load_inputs([trained_model], EvalConfig(data=tiny_data_config(), device="cpu"),
                      timed=[True])
    assert cost_columns(p)["ms_per_image"] > 0


def test_measure_ms_per_image():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    ms = measure_ms_per_image(model, (3, 2, 2), torch.device("cpu"), batch=4, warmup=1, batches=2)
    assert ms > 0 and model.training  # timed in eval mode, then put back as it was


# --------------------------------------------------------------------------- CSV labels named by class


def test_csv_class_names_take_the_checkpoints_class_list(tiny_data_config, trained_model, tmp_path):
    # the tiny model's classes are class0..class3; the CSV names them, in its own order of rows
    [reference] = load_inputs([trained_model], EvalConfig(data=tiny_data_config(), device="cpu"))
    rows = [f"{int(i)},class{int(t)},class{int(p)}" for i, t, p in
            zip(reference.ids[::-1], reference.targets[::-1], reference.preds[::-1], strict=True)]
    path = tmp_path / "old.csv"
    path.write_text("id,target,pred\n" + "\n".join(rows) + "\n")
    old, new = load_inputs([path, trained_model], EvalConfig(data=tiny_data_config(), device="cpu"))
    assert old.classes == ["class0", "class1", "class2", "class3"]
    assert old.preds.tolist() == reference.preds[::-1].tolist()
    assert new.preds.tolist() == reference.preds.tolist()


def test_csv_class_names_from_the_other_prediction_file_or_classes_option(tmp_path):
    named = Predictions.from_arrays(np.array(["a.png", "b.png"]), np.array([1, 0]), preds=np.array([1, 1]),
                                    classes=["cat", "dog"])
    npz = write_predictions(tmp_path / "new.npz", named)
    csv_path = tmp_path / "old.csv"
    csv_path.write_text("file,truth,guess\nb.png,cat,dog\na.png,dog,dog\n")
    options = EvalConfig(id_column="file", label_column="truth", pred_column="guess")
    old, new = load_inputs([csv_path, npz], options)
    assert old.targets.tolist() == [0, 1] and old.preds.tolist() == [1, 1] and old.classes == ["cat", "dog"]
    # --classes wins, and a file naming other classes is refused before anything runs
    with pytest.raises(MismatchError, match="new.npz: its class names differ"):
        load_inputs([csv_path, npz], dataclasses.replace(options, classes=("dog", "cat")))


def test_eval_config_refuses_one_column_named_twice():
    with pytest.raises(ConfigError, match="--id-column and --pred-column both name column 'ID'"):
        EvalConfig(id_column="id", pred_column="ID")
    with pytest.raises(ConfigError, match="--label-column: expected a column name"):
        EvalConfig(label_column=" ")


# --------------------------------------------------------------------------- imagefolder: ids are file paths


def write_image_folder(root: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for k, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), colour).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    from modelupdate.config import TrainConfig
    from modelupdate.workflows.train import train

    work = tmp_path_factory.mktemp("imagefolder")
    write_image_folder(work / "data")
    data_cfg = DataConfig(name=f"imagefolder:{work / 'data'}", image_size=8, val_fraction=0.0)
    model = work / "m.safetensors"
    train(data_cfg, TrainConfig(arch="tiny", epochs=1, batch_size=4, device="cpu"), model)
    return data_cfg, model


def test_imagefolder_ids_are_paths_under_the_root(image_model, tmp_path):
    from modelupdate.data import load_dataset
    from modelupdate.predictions import read_predictions
    from modelupdate.workflows.predict import predict

    data_cfg, model = image_model
    test = load_dataset(data_cfg).test
    assert test.sample_ids() == [f"test/c{k}/{i:03d}.png" for k in range(2) for i in range(3)]
    assert load_dataset(data_cfg).train.sample_ids()[0] == "train/c0/000.png"
    for suffix in (".npz", ".safetensors"):
        out = predict(model, data_cfg, tmp_path / f"p{suffix}", device="cpu").out
        back = read_predictions(out)
        assert back.ids.tolist() == test.sample_ids()


def test_built_in_datasets_keep_integer_ids(tiny_data_config, trained_model):
    p = predictions_from_checkpoint(trained_model, tiny_data_config(), device="cpu")
    assert p.ids.dtype == np.int64 and p.ids.tolist() == list(range(len(p)))
