"""workflows/inputs.py: telling checkpoints from prediction files by their header, the class list CSV labels are
read with, provenance checks, and the cost columns (tests/test_predict.py runs checkpoints on a split)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelupdate.config import EvalConfig
from modelupdate.errors import MismatchError, ModelUpdateWarning
from modelupdate.formats import PREDICTIONS_FORMAT, header_metadata
from modelupdate.predictions import Predictions, write_predictions
from modelupdate.workflows.inputs import (
    check_same_data,
    checked_provenance,
    checkpoint_classes,
    checkpoint_kind,
    cost_columns,
    load_inputs,
)

SYNTHETIC_CLASSES = ["class0", "class1", "class2", "class3"]  # data/sources.py names synthetic classes so
SHA = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, single_thread, tiny_data_config, tiny_train_config) -> Path:
    from modelupdate.workflows.train import train

    out = tmp_path_factory.mktemp("inputs") / "m.safetensors"
    with single_thread():
        train(tiny_data_config(), tiny_train_config(), out)
    return out


def header_only(path: Path, metadata: dict[str, str] | None) -> Path:
    """A real safetensors file holding one small tensor and ``metadata``."""
    save_file({"x": np.zeros(2, dtype=np.float32)}, str(path), metadata=metadata)
    return path


def test_header_of_a_real_checkpoint_and_of_copies_that_are_not_one(checkpoint, tmp_path):
    meta = header_metadata(checkpoint)
    assert meta is not None and all(isinstance(v, str) for v in meta.values())
    assert meta["format"] == "modelupdate-model/1" and json.loads(meta["classes"]) == SYNTHETIC_CLASSES
    assert checkpoint_kind(checkpoint) == "model" and checkpoint_classes(checkpoint) == SYNTHETIC_CLASSES
    upper = shutil.copy(checkpoint, tmp_path / "M.SAFETENSORS")  # the suffix in any case
    assert header_metadata(upper) == meta and checkpoint_kind(upper) == "model"
    other_suffix = shutil.copy(checkpoint, tmp_path / "m.bin")  # only .safetensors files are looked into
    assert header_metadata(other_suffix) is None and checkpoint_kind(other_suffix) is None
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(checkpoint.read_bytes()[:40])
    assert header_metadata(truncated) is None and checkpoint_kind(truncated) is None
    (tmp_path / "folder.safetensors").mkdir()
    assert header_metadata(tmp_path / "folder.safetensors") is None
    assert checkpoint_classes(tmp_path / "missing.safetensors") is None


def test_kind_and_classes_from_hand_made_headers(tmp_path):
    ensemble = header_only(tmp_path / "e.safetensors", {"format": "modelupdate-ensemble/1", "classes": '["a", "b"]'})
    assert checkpoint_kind(ensemble) == "ensemble" and checkpoint_classes(ensemble) == ["a", "b"]
    predictions = header_only(tmp_path / "p.safetensors", {"format": PREDICTIONS_FORMAT, "classes": '["a", "b"]'})
    assert header_metadata(predictions) == {"format": "modelupdate-predictions/1", "classes": '["a", "b"]'}
    assert checkpoint_kind(predictions) is None  # a prediction file, for the prediction reader
    plain = header_only(tmp_path / "plain.safetensors", None)
    assert header_metadata(plain) == {} and checkpoint_kind(plain) is None
    newer = header_only(tmp_path / "v2.safetensors", {"format": "modelupdate-model/2"})
    assert checkpoint_kind(newer) is None
    for i, classes in enumerate(["[]", "[1, 2]", "not json", '"ab"', '["a", null]', "[" * 100_000]):
        path = header_only(tmp_path / f"c{i}.safetensors", {"format": "modelupdate-model/1", "classes": classes})
        assert checkpoint_kind(path) == "model" and checkpoint_classes(path) is None, classes


def test_cost_columns_read_numbers_or_none():
    def with_meta(**meta: str) -> Predictions:
        return Predictions.from_arrays(np.array([1, 2]), np.array([0, 1]), preds=np.array([0, 0]), meta=meta)

    assert cost_columns(with_meta(params="1234", ms_per_image="0.25")) == {"params": 1234, "ms_per_image": 0.25}
    assert cost_columns(with_meta()) == {"params": None, "ms_per_image": None}
    # what is not a number of its kind is left out rather than guessed
    assert cost_columns(with_meta(params="12.5", ms_per_image="fast")) == {"params": None, "ms_per_image": None}
    assert cost_columns(with_meta(params="7", ms_per_image="1e-3")) == {"params": 7, "ms_per_image": 0.001}


def test_checked_provenance_drops_malformed_values_with_one_warning():
    good_meta = {"checkpoint_sha256": SHA, "split": "val", "dataset": "synthetic", "note": "anything"}
    good = Predictions.from_arrays(np.array([1]), np.array([0]), preds=np.array([0]), meta=good_meta,
                                   source="good.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checked_provenance(good) is good
    bad = Predictions.from_arrays(np.array([1]), np.array([0]), preds=np.array([0]), source="bad.npz", meta={
        "checkpoint_sha256": SHA.upper(), "split": "holdout", "dataset": "synthetic", "note": "kept"})
    with pytest.warns(ModelUpdateWarning) as caught:
        checked = checked_provenance(bad)
    assert len(caught) == 1
    assert str(caught[0].message) == ("bad.npz: provenance left out of the report: checkpoint_sha256 is not a sha256 "
                                      "(64 lowercase hex digits); split is not one of train, val, test")
    assert checked.meta == {"dataset": "synthetic", "note": "kept"}
    assert bad.meta["split"] == "holdout"  # the input itself is left as it was


def test_check_same_data(tmp_path):
    def made_on(**meta: str) -> Predictions:
        return Predictions.from_arrays(np.array([1]), np.array([0]), preds=np.array([0]), meta=meta)

    test_split, val_split = made_on(split="test", dataset="synthetic"), made_on(split="val", dataset="synthetic")
    check_same_data([("a.npz", test_split), ("b.npz", made_on()), ("c.npz", made_on(split="test"))], False)
    with pytest.raises(MismatchError) as info:
        check_same_data([("a.npz", test_split), ("b.npz", made_on()), ("c.npz", val_split)], False)
    assert str(info.value) == ("a.npz was made on split 'test', c.npz on 'val'; expected the same split (pass "
                               "--allow-other-data to compare them anyway)")
    with pytest.warns(ModelUpdateWarning, match=r"a\.npz was made on split 'test', c\.npz on 'val' "
                                                r"\(--allow-other-data: compared anyway\)"):
        check_same_data([("a.npz", test_split), ("c.npz", val_split)], True)
    with pytest.raises(MismatchError, match="made on data fingerprint 'f1', b.npz on 'f2'"):
        check_same_data([("a.npz", made_on(dataset_fingerprint="f1")), ("b.npz", made_on(dataset_fingerprint="f2"))],
                        False)
    # an image folder is named by a path of its machine and fingerprinted at each model's size: its kind counts
    check_same_data([("a.npz", made_on(dataset="imagefolder:/data/x", dataset_fingerprint="f1")),
                     ("b.npz", made_on(dataset="imagefolder:/mnt/x", dataset_fingerprint="f2"))], False)
    with pytest.raises(MismatchError, match="made on dataset 'imagefolder', b.npz on 'synthetic'"):
        check_same_data([("a.npz", made_on(dataset="imagefolder:/data/x")), ("b.npz", made_on(dataset="synthetic"))],
                        False)


def test_csv_labels_are_read_with_the_class_names_of_another_input(checkpoint, tmp_path, tiny_data_config, one_thread):
    csv = tmp_path / "named.csv"
    csv.write_text("id,target,pred\n0,class2,class2\n1,class0,class3\n")
    npz = write_predictions(tmp_path / "old.npz", Predictions.from_arrays(
        np.array([0, 1]), np.array([2, 0]), preds=np.array([2, 0]), classes=SYNTHETIC_CLASSES))
    # a CSV listed first is still read after the file that names the classes, and the order is kept
    first, second = load_inputs([csv, npz], EvalConfig())
    assert first.source == str(csv) and second.source == str(npz)
    assert first.targets.tolist() == [2, 0] and first.preds.tolist() == [2, 3] and first.classes == SYNTHETIC_CLASSES
    # beside a checkpoint, the checkpoint's classes; the checkpoint runs on the test split
    options = EvalConfig(data=tiny_data_config(), device="cpu", batch_size=64)
    model, named = load_inputs([checkpoint, csv], options)
    assert named.targets.tolist() == [2, 0] and named.preds.tolist() == [2, 3]
    assert len(model) == 64 and model.classes == SYNTHETIC_CLASSES and model.meta["checkpoint_kind"] == "model"
    assert model.meta["split"] == "test" and model.logits.shape == (64, 4)
