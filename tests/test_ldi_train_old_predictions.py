"""ldi-train --old PREDICTIONS: the old model known by its outputs alone serves the flip metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelupdate.data import load_dataset
from modelupdate.data.sources import AugmentSpec, Dataset, DatasetInfo, Split
from modelupdate.errors import ConfigError, MismatchError
from modelupdate.methods import UpdateConfig
from modelupdate.predictions import Predictions, read_predictions, write_predictions
from modelupdate.workflows.inputs import predictions_from_checkpoint
from modelupdate.workflows.ldi_train import ldi_train, old_labels_on_splits


def hand_dataset(names: bool = False) -> Dataset:
    """train ids 0..5 (val: ids 1 and 4), test ids 0..2; targets by hand."""
    train_all = Split(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 1, 0, 1, 0]), torch.arange(6),
                      tuple(f"train/{i}.png" for i in range(6)) if names else None)
    test = Split(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([1, 0, 1]), torch.arange(3),
                 tuple(f"test/{i}.png" for i in range(3)) if names else None)
    info = DatasetInfo("hand", ["a", "b"], (1, 2, 2), (0.5,), (0.25,), "sha256:0", AugmentSpec())
    return Dataset(info, train_all.subset(torch.tensor([0, 2, 3, 5])), train_all.subset(torch.tensor([1, 4])), test)


def labels_file(ids, targets, preds) -> Predictions:
    return Predictions.from_arrays(np.array(ids), np.array(targets), preds=np.array(preds), num_classes=2,
                                   source="old.npz")


def test_a_file_of_test_predictions_covers_test_in_the_splits_order():
    old = labels_file([2, 0, 1], [1, 1, 0], [0, 1, 1])  # test in another row order
    covered = old_labels_on_splits(old, hand_dataset())
    assert list(covered) == ["test"]  # val ids 1, 4: 4 is missing
    assert covered["test"].tolist() == [1, 1, 0]  # the preds of ids 0, 1, 2


def test_a_file_of_train_predictions_covers_val_by_id():
    old = labels_file([0, 1, 2, 3, 4, 5], [0, 1, 1, 0, 1, 0], [0, 0, 1, 0, 1, 1])
    covered = old_labels_on_splits(old, hand_dataset())
    assert list(covered) == ["val"]  # test ids 0..2 are there, but their targets (1, 0, 1) differ
    assert covered["val"].tolist() == [0, 1]  # the preds of ids 1 and 4


def test_named_samples_are_matched_by_name():
    old = Predictions.from_arrays(np.array(["test/1.png", "train/4.png", "test/0.png", "test/2.png", "train/1.png"]),
                                  np.array([0, 1, 1, 1, 1]), preds=np.array([0, 0, 1, 1, 1]), num_classes=2)
    covered = old_labels_on_splits(old, hand_dataset(names=True))
    assert covered["val"].tolist() == [1, 0] and covered["test"].tolist() == [1, 0, 1]


def test_a_file_covering_no_split_says_what_is_missing():
    old = labels_file([0, 1, 7], [1, 0, 1], [0, 0, 0])
    with pytest.raises(MismatchError) as info:
        old_labels_on_splits(old, hand_dataset())
    message = str(info.value)
    assert message.startswith("--old old.npz: covers no split of --data hand (")
    assert "val: 1 of 2 ids missing, e.g. 4" in message and "test: 1 of 3 ids missing, e.g. 2" in message
    flipped = labels_file([0, 1, 2], [1, 1, 1], [0, 0, 0])
    with pytest.raises(MismatchError, match=r"test: targets differ for 1 ids, e.g. id 1: file 1, data 0"):
        old_labels_on_splits(flipped, hand_dataset())


# --------------------------------------------------------------------------- through ldi_train


def negative_flips(old: Predictions, new: Predictions) -> int:
    assert old.ids.tolist() == new.ids.tolist()
    return int(np.sum((old.preds == old.targets) & (new.preds != new.targets)))


def test_old_test_predictions_give_the_test_flips(tiny_data_config, tiny_train_config, trained_model, tmp_path):
    data_cfg = tiny_data_config()
    old = predictions_from_checkpoint(trained_model, data_cfg, device="cpu")
    path = write_predictions(tmp_path / "old.npz", old)
    result = ldi_train(data_cfg, tiny_train_config(seed=1), UpdateConfig(method="ce"), tmp_path / "new.safetensors",
                       old=path)
    new = predictions_from_checkpoint(result.out, data_cfg, device="cpu")
    metrics = result.meta.metrics
    assert metrics["test_negative_flips"] == negative_flips(old, new)
    assert metrics["test_nfr"] == pytest.approx(negative_flips(old, new) / len(old))
    assert metrics["test_old_error_rate"] == pytest.approx(float(np.mean(old.preds != old.targets)))
    assert "val_nfr" not in result.history[-1] and "val_nfr" not in metrics  # the file has no val samples
    assert result.meta.update["parent_predictions_splits"] == ["test"]
    assert result.meta.update["parent_sha256"] is None


def test_old_val_predictions_give_the_flips_of_every_epoch(tiny_data_config, tiny_train_config, trained_model,
                                                           tmp_path):
    data_cfg = tiny_data_config()
    old = predictions_from_checkpoint(trained_model, data_cfg, split="val", device="cpu")
    rows = np.arange(len(old))[::-1]  # another row order, and labels only
    labels = Predictions.from_arrays(old.ids[rows], old.targets[rows], preds=old.preds[rows], num_classes=4)
    path = write_predictions(tmp_path / "old.safetensors", labels)
    result = ldi_train(data_cfg, tiny_train_config(seed=1, epochs=2), UpdateConfig(method="ce"),
                       tmp_path / "new.safetensors", old=path)
    new = predictions_from_checkpoint(result.out, data_cfg, split="val", device="cpu")
    assert [len(r) > 0 and "val_nfr" in r for r in result.history] == [True, True]
    assert result.history[-1]["val_negative_flips"] == negative_flips(old, new)
    assert result.meta.metrics["val_negative_flips"] == negative_flips(old, new)
    assert "test_nfr" not in result.meta.metrics


@pytest.mark.parametrize(("method", "named"), [(None, "--method ldi-old (the default without --reference)"),
                                               ("kd", "--method kd"), ("fd-lm", "--method fd-lm")])
def test_methods_held_against_the_old_logits_refuse_a_prediction_file(tiny_data_config, tiny_train_config, tmp_path,
                                                                      method, named):
    path = write_predictions(tmp_path / "old.npz", labels_file([0, 1], [0, 1], [0, 0]))
    with pytest.raises(ConfigError) as info:
        ldi_train(tiny_data_config(), tiny_train_config(), UpdateConfig(method=method), tmp_path / "n.safetensors",
                  old=path)
    assert str(info.value).startswith(f"{named}: needs the old checkpoint (.safetensors), not the prediction file "
                                      f"--old {path}")


def test_a_prediction_file_as_reference_is_refused(tiny_data_config, tiny_train_config, tmp_path):
    path = write_predictions(tmp_path / "ref.npz", labels_file([0, 1], [0, 1], [0, 0]))
    with pytest.raises(ConfigError, match="--reference .*ref.npz: is a prediction file; expected the reference"):
        ldi_train(tiny_data_config(), tiny_train_config(), UpdateConfig(), tmp_path / "n.safetensors", reference=path)


def test_predictions_made_on_other_data_are_refused(tiny_data_config, tiny_train_config, tmp_path):
    test = load_dataset(tiny_data_config()).test
    other = Predictions.from_arrays(test.ids.numpy(), test.targets.numpy(), preds=test.targets.numpy(),
                                    num_classes=4, meta={"dataset_fingerprint": "sha256:0123456789abcdef"})
    path = write_predictions(tmp_path / "old.safetensors", other)
    with pytest.raises(MismatchError, match="was predicted on other data than --data synthetic"):
        ldi_train(tiny_data_config(), tiny_train_config(), UpdateConfig(method="ce"), tmp_path / "n.safetensors",
                  old=path)
    assert read_predictions(path).meta["dataset_fingerprint"] == "sha256:0123456789abcdef"
