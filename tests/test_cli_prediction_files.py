"""The CLI reading prediction files of other pipelines: named columns, class names, string ids (real
subprocesses; exit 0 on success, 2 with one error line naming the file for bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modelupdate.predictions import Predictions, write_predictions

COLUMNS = ("--id-column", "image", "--label-column", "label", "--pred-column", "prediction")
# old: img_0 right, img_1 wrong, img_2 right, img_3 right; new: img_0 right, img_1 right, img_2 wrong, img_3 wrong
OLD = "image,label,prediction\nimg_0.png,Sneaker,Sneaker\nimg_1.png,Bag,Sneaker\nimg_2.png,Bag,Bag\n" \
      "img_3.png,Coat,Coat\n"
NEW = "image,label,prediction\nimg_3.png,Coat,Sneaker\nimg_2.png,Bag,Sneaker\nimg_0.png,Sneaker,Sneaker\n" \
      "img_1.png,Bag,Bag\n"


def write(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "old.csv").write_text(OLD)
    (tmp_path / "new.csv").write_text(NEW)
    return tmp_path / "old.csv", tmp_path / "new.csv"


def one_error_line(code: int, err: str, *parts: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_flip_report_on_named_columns_and_class_names(run_cli, tmp_path):
    old, new = write(tmp_path)
    code, out, err = run_cli("flip-report", "--old", old, "--new", new, *COLUMNS, "--classes", "Sneaker,Bag,Coat",
                             "--json", "-", "--flips-csv", tmp_path / "flips.csv")
    assert code == 0, err
    report = json.loads(out)
    assert report["counts"] == {"n": 4, "old_correct": 3, "new_correct": 2, "negative_flips": 2, "positive_flips": 1}
    by_name = {row["name"]: (row["class"], row["n"], row["negative_flips"]) for row in report["per_class"]}
    assert by_name == {"Sneaker": (0, 1, 0), "Bag": (1, 2, 1), "Coat": (2, 1, 1)}
    assert (tmp_path / "flips.csv").read_text().splitlines() == [
        "id,target,old_pred,new_pred,flip", "img_1.png,1,0,1,positive", "img_2.png,1,1,0,negative",
        "img_3.png,2,2,0,negative"]


def test_compare_takes_the_class_list_from_a_file(run_cli, tmp_path):
    old, new = write(tmp_path)
    (tmp_path / "classes.txt").write_text("Sneaker\nBag\nCoat\n")
    code, out, err = run_cli("compare", new, "--old", old, *COLUMNS, "--classes", tmp_path / "classes.txt",
                             "--json", "-")
    assert code == 0, err
    [row] = json.loads(out)["candidates"]
    assert row["name"] == "new"
    assert row["counts"] == {"n": 4, "old_correct": 3, "new_correct": 2, "negative_flips": 2, "positive_flips": 1}


def test_a_missing_column_is_one_line_naming_file_column_and_columns(run_cli, tmp_path):
    old, new = write(tmp_path)
    code, _, err = run_cli("flip-report", "--old", old, "--new", new, "--classes", "Sneaker,Bag,Coat")
    one_error_line(code, err, str(old), "lacks column(s) id, target, pred",
                   "its columns: 'image', 'label', 'prediction'")


def test_an_unknown_class_name_is_one_line_naming_file_row_and_value(run_cli, tmp_path):
    old, new = write(tmp_path)
    code, _, err = run_cli("flip-report", "--old", old, "--new", new, *COLUMNS, "--classes", "Sneaker,Bag")
    one_error_line(code, err, str(old), "row 5", "'Coat'", "not a class name")
    code, _, err = run_cli("flip-report", "--old", old, "--new", new, *COLUMNS)
    one_error_line(code, err, str(old), "row 2", "'Sneaker'", "--classes")


def test_bad_column_and_class_options_are_one_line(run_cli, tmp_path):
    old, new = write(tmp_path)
    code, _, err = run_cli("flip-report", "--old", old, "--new", new, "--id-column", "label", "--label-column",
                           "label", "--pred-column", "prediction")
    one_error_line(code, err, "--id-column and --label-column both name column 'label'")
    code, _, err = run_cli("compare", new, "--old", old, *COLUMNS, "--classes", "Bag,Bag")
    one_error_line(code, err, "--classes", "names class 'Bag' twice")
    code, _, err = run_cli("compare", new, "--old", old, *COLUMNS, "--classes", tmp_path / "none.txt")
    one_error_line(code, err, "--classes", "no such file")


def test_ldi_train_old_prediction_file_is_not_called_a_pickle(run_cli, tmp_path):
    old = write_predictions(tmp_path / "old.npz", Predictions.from_arrays(
        np.arange(4), np.array([0, 1, 0, 1]), preds=np.array([0, 1, 1, 1]), num_classes=4))
    code, _, err = run_cli("ldi-train", "--old", old, "--data", "synthetic", "--arch", "tiny", "--device", "cpu",
                           "--out", tmp_path / "new.safetensors")
    line = one_error_line(code, err, "--method ldi-old (the default without --reference): needs the old checkpoint",
                          str(old))
    assert "pickle" not in line
    code, _, err = run_cli("ldi-train", "--old", old, "--method", "kd", "--data", "synthetic", "--arch", "tiny",
                           "--device", "cpu", "--out", tmp_path / "new.safetensors")
    one_error_line(code, err, "--method kd: needs the old checkpoint")
    assert not (tmp_path / "new.safetensors").exists()


def test_imagefolder_samples_are_named_by_their_path_in_predict_and_flips(run_cli, tmp_path):
    from PIL import Image

    from modelupdate.predictions import read_predictions

    root = tmp_path / "data"
    for split in ("train", "test"):
        for k, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8 + i, 8), colour).save(root / split / f"c{k}" / f"{i:03d}.png")
    data = ("--data", f"imagefolder:{root}", "--image-size", "8", "--device", "cpu")
    code, _, err = run_cli("train", *data, "--arch", "tiny", "--epochs", "1", "--quiet", "--val-fraction", "0",
                           "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    code, _, err = run_cli("predict", tmp_path / "m.safetensors", *data, "--out", tmp_path / "old.npz")
    assert code == 0, err
    old = read_predictions(tmp_path / "old.npz")
    assert old.ids.tolist() == [f"test/c{k}/{i:03d}.png" for k in range(2) for i in range(3)]
    # a new model of another pipeline that gets every image wrong, its labels given by class name
    rows = [f"{name},c{t},c{1 - t}" for name, t in zip(old.ids.tolist(), old.targets.tolist(), strict=True)]
    (tmp_path / "new.csv").write_text("id,target,pred\n" + "\n".join(reversed(rows)) + "\n")
    code, _, err = run_cli("flip-report", "--old", tmp_path / "m.safetensors", "--new", tmp_path / "new.csv", *data,
                           "--flips-csv", tmp_path / "flips.csv")
    assert code == 0, err
    right = [name for name, t, p in zip(old.ids.tolist(), old.targets, old.preds, strict=True) if t == p]
    flipped = (tmp_path / "flips.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in flipped] == right
    assert all(line.endswith(",negative") for line in flipped)


def test_no_report_is_written_over_the_classes_file(run_cli, tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    for name in ("old", "new"):
        (tmp_path / f"{name}.csv").write_text("id,target,pred\na,cat,cat\nb,dog,cat\n")
    for option in ("--flips-csv", "--markdown"):
        code, _, err = run_cli("flip-report", "--old", tmp_path / "old.csv", "--new", tmp_path / "new.csv",
                               "--classes", tmp_path / "classes.txt", option, tmp_path / "classes.txt")
        assert code == 2 and "is one of the inputs" in err, err
        assert (tmp_path / "classes.txt").read_text() == "cat\ndog\n"
    code, _, err = run_cli("compare", "--old", tmp_path / "old.csv", tmp_path / "new.csv",
                           "--classes", tmp_path / "classes.txt", "--markdown", tmp_path / "classes.txt")
    assert code == 2 and "is one of the inputs" in err, err


def test_integer_labels_with_integer_class_names_out_of_place_are_refused(run_cli, tmp_path):
    for name in ("old", "new"):
        (tmp_path / f"{name}.csv").write_text("id,target,pred\na,1,1\nb,2,0\nc,0,0\n")
    code, _, err = run_cli("flip-report", "--old", tmp_path / "old.csv", "--new", tmp_path / "new.csv",
                           "--classes", "2,0,1")
    assert code == 2 and "not their positions (2, 0, 1)" in err, err
    code, _, err = run_cli("flip-report", "--old", tmp_path / "old.csv", "--new", tmp_path / "new.csv",
                           "--classes", "0,1,2")  # names equal to positions: unambiguous
    assert code == 0, err


def test_provenance_records_how_the_files_were_read(run_cli, tmp_path):
    import json

    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    for name in ("old", "new"):
        (tmp_path / f"{name}.csv").write_text("image,label,prediction\na,cat,cat\nb,dog,cat\n")
    args = ["--id-column", "image", "--label-column", "label", "--pred-column", "prediction"]
    code, out, err = run_cli("flip-report", "--old", tmp_path / "old.csv", "--new", tmp_path / "new.csv", *args,
                             "--classes", tmp_path / "classes.txt", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["provenance"]["prediction_files"] == {
        "id_column": "image", "label_column": "label", "pred_column": "prediction", "classes": ["cat", "dog"],
        "classes_file": str(tmp_path / "classes.txt")}
    code, out, err = run_cli("compare", "--old", tmp_path / "old.csv", tmp_path / "new.csv", *args,
                             "--classes", "dog,cat", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["provenance"]["prediction_files"]["classes"] == ["dog", "cat"]
