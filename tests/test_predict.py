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
    CHECKPOINT_FORMATS,
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


def test_checkpoint_formats_are_the_checkpoint_modules():
    assert CHECKPOINT_FORMATS == {checkpoint.MODEL_FORMAT: "model",
                                  checkpoint.ENSEMBLE_FORMAT: "ensemble"}


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
        predictions_from_checkpoint(trained_model, DataConfig(name="synthetic"), device="cpu")
    message = str(info.value)
    assert str(trained_model) in message and "--data synthetic" in message
    assert "[1, 8, 8]" in message and "[1, 12, 12]" in message


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
