"""Prediction files: round trips, alignment, and one clear error per malformed file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelupdate.errors import MismatchError, OutputError, PredictionFileError
from modelupdate.formats import PREDICTIONS_FORMAT
from modelupdate.predictions import (
    Predictions,
    align,
    comparable_ids,
    is_predictions_file,
    positions,
    read_predictions,
    write_predictions,
)

BAD = Path(__file__).parent / "data" / "bad_predictions"
EXPECTED = json.loads((BAD / "EXPECTED.json").read_text())


def make(n: int = 6, c: int = 4, seed: int = 0, classes: list[str] | None = None) -> Predictions:
    rng = np.random.default_rng(seed)
    return Predictions.from_arrays(
        ids=np.arange(100, 100 + n),
        targets=rng.integers(0, c, n),
        logits=rng.standard_normal((n, c)).astype(np.float32),
        classes=classes,
        source="made",
    )


def assert_same(a: Predictions, b: Predictions) -> None:
    assert np.array_equal(a.ids, b.ids) and a.ids.dtype == np.int64
    assert np.array_equal(a.targets, b.targets) and b.targets.dtype == np.int64
    assert np.array_equal(a.preds, b.preds) and b.preds.dtype == np.int64
    if a.logits is None:
        assert b.logits is None
    else:
        assert b.logits is not None and b.logits.dtype == np.float32
        assert np.array_equal(a.logits, b.logits)
    assert a.num_classes == b.num_classes
    assert a.classes == b.classes


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_round_trip_with_logits_and_classes(tmp_path, suffix):
    p = make(classes=["cat", "dog", "émeu", "a,b"])
    path = write_predictions(tmp_path / f"p{suffix}", p)
    back = read_predictions(path)
    assert_same(p, back)
    assert back.source == str(path)
    # no temp file is left behind by the atomic write
    assert [f.name for f in tmp_path.iterdir()] == [f"p{suffix}"]


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_round_trip_labels_only(tmp_path, suffix):
    p = Predictions.from_arrays(ids=np.array([5, 3, 9]), targets=np.array([0, 1, 1]),
                                preds=np.array([1, 1, 0]), num_classes=2)
    back = read_predictions(write_predictions(tmp_path / f"p{suffix}", p))
    assert_same(p, back)


def test_safetensors_keeps_provenance_metadata(tmp_path):
    p = make()
    p.meta["checkpoint_sha256"] = "ab" * 32
    path = write_predictions(tmp_path / "p.safetensors", p)
    assert read_predictions(path).meta == {"checkpoint_sha256": "ab" * 32}
    assert is_predictions_file(path)


def test_csv_columns_in_any_order_and_extra_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("pred,note,target,id\n1,x,1,7\n0,y,1,8\n")
    p = read_predictions(path)
    assert p.ids.tolist() == [7, 8] and p.targets.tolist() == [1, 1]
    assert p.preds.tolist() == [1, 0]
    assert p.logits is None and p.num_classes is None


def test_preds_default_to_argmax_and_ties_are_accepted(tmp_path):
    logits = np.array([[1.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    p = Predictions.from_arrays(np.array([1, 2]), np.array([1, 1]), logits=logits)
    assert p.preds.tolist() == [0, 1]
    # a stored label that is *a* maximal logit (tie) is consistent
    q = Predictions.from_arrays(np.array([1, 2]), np.array([1, 1]), logits=logits,
                                preds=np.array([1, 1]))
    assert q.preds.tolist() == [1, 1]


def test_float64_logits_are_stored_as_float32():
    p = Predictions.from_arrays(np.array([1]), np.array([0]),
                                logits=np.array([[1.0, 0.0]], dtype=np.float64))
    assert p.logits.dtype == np.float32


def test_is_predictions_file(tmp_path):
    assert is_predictions_file("x.npz") and is_predictions_file("x.CSV")
    assert not is_predictions_file("x.pt")
    assert not is_predictions_file(BAD / "checkpoint_not_predictions.safetensors")
    assert not is_predictions_file(BAD / "garbage.safetensors")


def test_write_unknown_extension_and_unwritable_dir(tmp_path):
    with pytest.raises(PredictionFileError, match="cannot write extension '.csv'"):
        write_predictions(tmp_path / "p.csv", make())
    with pytest.raises(OutputError, match="cannot write \\(folder .*missing-dir does not exist\\)"):
        write_predictions(tmp_path / "missing-dir" / "p.npz", make())


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = write_predictions(tmp_path / "p.npz", make(seed=1))
    before = path.read_bytes()

    def broken(*args, **kwargs):  # the disk fills up while the new file is flushed
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("modelupdate.atomic.os.fsync", broken)
    with pytest.raises(OutputError, match="No space left"):
        write_predictions(path, make(seed=2))
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["p.npz"]


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("name", sorted(EXPECTED["files"]))
def test_bad_file_gives_one_line_error_naming_file_and_problem(name):
    path = BAD / name
    with pytest.raises(PredictionFileError) as info:
        read_predictions(path)
    message = str(info.value)
    assert EXPECTED["files"][name] in message
    assert message.startswith(str(path))
    assert "\n" not in message


@pytest.mark.parametrize("case", sorted(EXPECTED["pairs"]))
def test_mismatched_pair_gives_one_line_error(case):
    spec = EXPECTED["pairs"][case]
    old = read_predictions(BAD / spec["old"])
    new = read_predictions(BAD / spec["new"])
    with pytest.raises(MismatchError) as info:
        align(old, new)
    assert spec["message"] in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(PredictionFileError, match="no such file"):
        read_predictions(tmp_path / "nope.npz")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(PredictionFileError, match="not a regular file"):
        read_predictions(tmp_path / "dir.npz")


def test_pickled_npz_is_never_unpickled(tmp_path, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):  # pragma: no cover - called only on a bug
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(PredictionFileError, match="pickled"):
        read_predictions(BAD / "pickled_array.npz")


def test_corpus_script_is_in_sync_with_expected():
    # every case file exists; every file in the folder is a case (or the script / pairs)
    listed = set(EXPECTED["files"]) | {f for p in EXPECTED["pairs"].values()
                                       for f in (p["old"], p["new"])}
    present = {f.name for f in BAD.iterdir()} - {"EXPECTED.json", "make_bad_predictions.py",
                                                  "__pycache__"}
    assert listed == present


# --------------------------------------------------------------------------- alignment


def test_align_reorders_new_to_old_order():
    old = make(n=5, seed=3)
    order = np.array([4, 2, 0, 1, 3])
    new = Predictions.from_arrays(old.ids[order], old.targets[order], logits=old.logits[order])
    a, b = align(old, new)
    assert np.array_equal(a.ids, old.ids) and np.array_equal(b.ids, old.ids)
    assert np.array_equal(b.logits, old.logits)
    assert a.num_classes == b.num_classes == 4


def test_align_without_reordering_shares_memory():
    old = make(n=5)
    new = make(n=5)
    _, b = align(old, new)
    assert b.logits is new.logits  # nothing copied when ids already match in order


def test_align_infers_class_count_from_labels_only_files():
    old = Predictions.from_arrays(np.array([1, 2]), np.array([0, 3]), preds=np.array([0, 1]))
    new = Predictions.from_arrays(np.array([2, 1]), np.array([3, 0]), preds=np.array([4, 0]))
    a, b = align(old, new)
    assert a.num_classes == b.num_classes == 5  # max label 4 + 1


def test_align_label_file_against_logits_file_checks_range():
    old = make(n=3, c=4)
    new = Predictions.from_arrays(old.ids, old.targets, preds=np.array([0, 1, 7]))
    with pytest.raises(MismatchError, match="predicts class 7 but the other file has 4 classes"):
        align(old, new)


def test_align_class_names():
    old = make(classes=["a", "b", "c", "d"])
    new = make(classes=["a", "b", "x", "d"])
    with pytest.raises(MismatchError, match="class names differ .* at index 2"):
        align(old, new)
    _, b = align(old, make())
    assert b.classes == ["a", "b", "c", "d"]  # names from whichever file has them


def test_align_reports_counts_and_examples_of_missing_ids():
    old = make(n=6)
    new = Predictions.from_arrays(old.ids[:4], old.targets[:4], logits=old.logits[:4])
    with pytest.raises(MismatchError, match=r"2 only in old \(e\.g\. 104, 105\), 0 only in new"):
        align(old, new)


# --------------------------------------------------------------------------- properties


@st.composite
def prediction_sets(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 6))
    ids = draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**62), 2**62), unique=True))
    targets = draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    logits = draw(hnp.arrays(np.float32, (n, c), elements=st.floats(
        -(2.0**100), 2.0**100, allow_nan=False, allow_infinity=False, width=32)))
    with_logits = draw(st.booleans())
    if with_logits:
        return Predictions.from_arrays(ids, targets, logits=logits, source="drawn")
    preds = draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    return Predictions.from_arrays(ids, targets, preds=preds, num_classes=c, source="drawn")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=prediction_sets())
def test_readers_round_trip_random_arrays(p):
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".npz", ".safetensors"):
            assert_same(p, read_predictions(write_predictions(Path(tmp) / f"p{suffix}", p)))
        csv = Path(tmp) / "p.csv"
        rows = "\n".join(f"{i},{t},{q}" for i, t, q in zip(p.ids, p.targets, p.preds, strict=True))
        csv.write_text("id,target,pred\n" + rows + "\n")
        back = read_predictions(csv)
        assert np.array_equal(back.ids, p.ids) and np.array_equal(back.preds, p.preds)
        assert np.array_equal(back.targets, p.targets)
        # aligning a file with a shuffled copy of itself restores the original order
        order = np.random.default_rng(len(p)).permutation(len(p))
        shuffled = Predictions.from_arrays(p.ids[order], p.targets[order], logits=None,
                                           preds=p.preds[order], num_classes=p.num_classes)
        _, aligned = align(p, shuffled)
        assert np.array_equal(aligned.preds, p.preds)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300),
       prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY", b"id,target,pred\n",
                               b"\x10\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":"]),
       suffix=st.sampled_from([".npz", ".csv", ".safetensors"]))
def test_arbitrary_bytes_give_prediction_file_error_or_valid_predictions(data, prefix, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(prefix + data)
        try:
            p = read_predictions(path)
        except PredictionFileError as exc:
            assert "\n" not in str(exc)
        else:
            assert len(p) > 0


def test_format_constant_is_versioned():
    assert PREDICTIONS_FORMAT == "modelupdate-predictions/1"
    assert os.sep not in PREDICTIONS_FORMAT.split("/")[0]


# --------------------------------------------------------------------------- string ids


def string_ids(names: list[str], targets: list[int], preds: list[int], classes=None) -> Predictions:
    return Predictions.from_arrays(np.array(names), np.array(targets), preds=np.array(preds),
                                   num_classes=None if classes else 3, classes=classes, source="named")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_string_ids_round_trip(tmp_path, suffix):
    p = string_ids(["img_00001.png", "dir/é ü.png", "a,b.png"], [0, 2, 1], [0, 1, 1])
    back = read_predictions(write_predictions(tmp_path / f"p{suffix}", p))
    assert back.ids.dtype.kind == "U"
    assert back.ids.tolist() == ["img_00001.png", "dir/é ü.png", "a,b.png"]
    assert back.targets.tolist() == [0, 2, 1] and back.preds.tolist() == [0, 1, 1]


def test_string_ids_are_stored_without_pickles(tmp_path):
    from safetensors import safe_open

    p = string_ids(["b.png", "a.png"], [0, 1], [0, 0])
    with np.load(write_predictions(tmp_path / "p.npz", p), allow_pickle=False) as npz:
        assert npz["ids"].dtype.kind == "U" and npz["ids"].tolist() == ["b.png", "a.png"]
    with safe_open(str(write_predictions(tmp_path / "p.safetensors", p)), framework="np") as fh:
        assert "ids" not in fh.keys()
        assert fh.get_tensor("ids_utf8").tobytes() == b"b.png\x00a.png"


def test_string_ids_must_be_unique_and_non_empty():
    with pytest.raises(PredictionFileError, match=r"1 duplicated ids \(e\.g\. 'a\.png'\)"):
        string_ids(["a.png", "b.png", "a.png"], [0, 0, 0], [0, 0, 0])
    with pytest.raises(PredictionFileError, match="empty id at position 1"):
        string_ids(["a.png", ""], [0, 0], [0, 0])


def test_bad_ids_utf8_in_safetensors(tmp_path):
    from safetensors.numpy import save

    path = tmp_path / "p.safetensors"
    tensors = {"ids_utf8": np.frombuffer(b"a\xff", dtype=np.uint8), "targets": np.array([0]),
               "preds": np.array([0])}
    path.write_bytes(save(tensors, metadata={"format": PREDICTIONS_FORMAT}))
    with pytest.raises(PredictionFileError, match="field 'ids_utf8' is not UTF-8"):
        read_predictions(path)
    tensors["ids_utf8"] = np.frombuffer(b"a\x00b", dtype=np.uint8)  # two ids for one target
    path.write_bytes(save(tensors, metadata={"format": PREDICTIONS_FORMAT}))
    with pytest.raises(PredictionFileError, match="field 'targets' has 1 entries; 'ids' has 2"):
        read_predictions(path)


def test_align_matches_string_ids_in_any_order():
    old = string_ids(["c", "a", "b"], [0, 1, 2], [0, 1, 0])
    new = string_ids(["a", "b", "c"], [1, 2, 0], [1, 2, 2])
    a, b = align(old, new)
    assert b.ids.tolist() == ["c", "a", "b"] and b.preds.tolist() == [2, 1, 2]
    other = string_ids(["a", "b", "x"], [1, 2, 0], [1, 2, 2])
    with pytest.raises(MismatchError, match=r"1 only in old \(e\.g\. 'c'\), 1 only in new \(e\.g\. 'x'\)"):
        align(old, other)


def test_align_integer_ids_match_string_ids_by_their_digits():
    old = Predictions.from_arrays(np.array([10, 2]), np.array([0, 1]), preds=np.array([0, 0]), num_classes=3)
    new = string_ids(["2", "10"], [1, 0], [1, 1])
    a, b = align(old, new)
    assert a.ids.tolist() == ["10", "2"] and b.preds.tolist() == [1, 1]
    with pytest.raises(MismatchError, match=r"only in new \(e\.g\. '002'\)"):
        align(old, string_ids(["002", "10"], [1, 0], [1, 1]))


# --------------------------------------------------------------------------- CSV: columns, names


def write_csv(tmp_path: Path, text: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_string_ids_and_named_columns(tmp_path):
    path = write_csv(tmp_path, "Image,label,prediction,score\nimg_2.png,1,0,0.3\nimg_1.png,0,0,0.9\n")
    p = read_predictions(path, columns=("image", "LABEL", "prediction"))
    assert p.ids.tolist() == ["img_2.png", "img_1.png"]
    assert p.targets.tolist() == [1, 0] and p.preds.tolist() == [0, 0]


def test_csv_quoted_fields_blank_lines_and_spaces(tmp_path):
    path = write_csv(tmp_path, 'id,target,pred\n"a,1.png", 1 ,0\n\n"b ""2"".png",0,1\n\n')
    p = read_predictions(path)
    assert p.ids.tolist() == ["a,1.png", 'b "2".png'] and p.targets.tolist() == [1, 0]


def test_csv_missing_column_names_file_column_and_the_columns_it_has(tmp_path):
    path = write_csv(tmp_path, "image,label,prediction\na,0,0\n")
    with pytest.raises(PredictionFileError) as info:
        read_predictions(path, columns=("image", "target", "prediction"))
    assert str(info.value) == (f"{path}: lacks column(s) target (its columns: 'image', 'label', 'prediction'); "
                               "name the columns with --id-column, --label-column, --pred-column")


def test_csv_short_row_and_repeated_column(tmp_path):
    with pytest.raises(PredictionFileError, match="row 3: has 2 field"):
        read_predictions(write_csv(tmp_path, "id,target,pred\n1,0,0\n2,1\n"))
    with pytest.raises(PredictionFileError, match="has column 'id' 2 times"):
        read_predictions(write_csv(tmp_path, "id,target,pred,ID\n1,0,0,1\n", "q.csv"))


def test_csv_class_names_map_to_their_index(tmp_path):
    path = write_csv(tmp_path, "id,target,pred\n7,Sneaker,Sneaker\n8,Bag,Sneaker\n9,Ankle boot,Bag\n")
    p = read_predictions(path, classes=["Bag", "Sneaker", "Ankle boot"])
    assert p.targets.tolist() == [1, 0, 2] and p.preds.tolist() == [1, 1, 0]
    assert p.classes == ["Bag", "Sneaker", "Ankle boot"] and p.num_classes == 3


def test_csv_unknown_class_name_names_file_row_and_value(tmp_path):
    path = write_csv(tmp_path, "id,target,pred\n7,Sneaker,Sneaker\n8,Bag,Snekaer\n")
    with pytest.raises(PredictionFileError) as info:
        read_predictions(path, classes=["Bag", "Sneaker"])
    assert str(info.value) == (f"{path}: row 3: column 'pred' holds 'Snekaer', which is not a class name "
                               "(classes: Bag, Sneaker)")


def test_csv_class_names_without_a_class_list(tmp_path):
    path = write_csv(tmp_path, "id,target,pred\n7,0,0\n8,1,Bag\n")
    with pytest.raises(PredictionFileError, match=r"row 3: column 'pred' holds 'Bag', not a class index"):
        read_predictions(path)


def test_csv_integer_labels_with_a_class_list_are_indices_checked_against_it(tmp_path):
    path = write_csv(tmp_path, "id,target,pred\n1,1,0\n2,0,2\n")
    assert read_predictions(path, classes=["a", "b", "c"]).preds.tolist() == [0, 2]
    with pytest.raises(PredictionFileError, match=r"field 'preds' has class 2, outside \[0, 2\)"):
        read_predictions(path, classes=["a", "b"])


def test_a_file_naming_other_classes_than_given_is_a_mismatch(tmp_path):
    path = write_predictions(tmp_path / "p.npz", make(classes=["a", "b", "c", "d"]))
    with pytest.raises(MismatchError, match=r"differ from the classes it is read with at index 2 \('c' vs 'x'"):
        read_predictions(path, classes=["a", "b", "x", "d"])
    plain = read_predictions(write_predictions(tmp_path / "q.npz", make()), classes=["a", "b", "c", "d"])
    assert plain.classes == ["a", "b", "c", "d"]


def test_read_class_list(tmp_path):
    from modelupdate.errors import ConfigError
    from modelupdate.prediction_csv import read_class_list

    listing = tmp_path / "classes.txt"
    listing.write_text("T-shirt/top\n\nSneaker, low\nBag\n", encoding="utf-8")
    assert read_class_list(str(listing)) == ("T-shirt/top", "Sneaker, low", "Bag")
    assert read_class_list("cat, dog,bird") == ("cat", "dog", "bird")
    for value, message in (("cat,cat", "names class 'cat' twice"), ("cat,,dog", "empty class name"),
                           ("cats.txt", "no such file"), (",cat", "empty class name")):
        with pytest.raises(ConfigError, match=message):
            read_class_list(value)
    listing.write_text("only\n")
    with pytest.raises(ConfigError, match="lists 1 class name"):
        read_class_list(str(listing))


def test_positions_finds_each_wanted_id_or_says_it_is_missing():
    have = np.array([30, 10, 20])
    rows, found = positions(have, np.array([20, 30, 99, 10]))
    assert found.tolist() == [True, True, False, True]
    assert rows[found].tolist() == [2, 0, 1]
    rows, found = positions(np.array([], dtype=np.int64), np.array([1, 2]))
    assert found.tolist() == [False, False]


def test_integer_ids_match_their_digits_in_a_file_of_string_ids():
    a, b = comparable_ids(np.array([7, 12]), np.array(["12", "7"]))
    assert a.tolist() == ["7", "12"] and b.tolist() == ["12", "7"]
    ints = np.array([1, 2])
    assert comparable_ids(ints, np.array([2, 1]))[0] is ints  # one kind: nothing converted
