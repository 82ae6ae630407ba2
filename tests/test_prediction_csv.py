"""prediction_csv.py: the CSV reader's columns, ids and labels, its one-line errors, and the --classes list.

tests/test_predictions.py reads CSVs through ``read_predictions`` (which validates what is read); these call
the module's own functions, which only parse.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelupdate.errors import ConfigError, PredictionFileError
from modelupdate.prediction_csv import csv_ids, csv_labels, read_class_list, read_csv_columns

COLUMNS = ("id", "target", "pred")


def write(tmp_path: Path, text: str, name: str = "p.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def one_line_error(path: Path, columns=COLUMNS, classes=None) -> str:
    with pytest.raises(PredictionFileError) as info:
        read_csv_columns(path, columns, classes)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


def test_named_columns_in_any_case_with_a_byte_order_mark(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM, which must not become part of the first column's name
    path = write(tmp_path, "Extra, ID ,Label,PRED\nx, 7 ,1,0\n\ny,3,0,0\n\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    ids, targets, preds = read_csv_columns(path, ("id", "label", "pred"), None)
    assert ids.dtype == np.int64 and ids.tolist() == [7, 3]  # blank lines skipped, spaces stripped
    assert targets.dtype == np.int64 and targets.tolist() == [1, 0]
    assert preds.dtype == np.int64 and preds.tolist() == [0, 0]
    # ids are integers only when every one is: one name among them makes every id a string
    ids, _, _ = read_csv_columns(write(tmp_path, "id,target,pred\n10,0,0\nimg.png,1,1\n", "q.csv"), COLUMNS, None)
    assert ids.dtype.kind == "U" and ids.tolist() == ["10", "img.png"]
    with pytest.raises(ValueError, match="expected \\(id, label, pred\\) column names"):
        read_csv_columns(path, ("id", "label"), None)


def test_labels_as_indices_or_as_class_names():
    rows = [2, 3, 4]
    classes = ["cat", "dog", "bird"]
    assert csv_labels("f.csv", "target", ["bird", "cat", "dog"], rows, classes).tolist() == [2, 0, 1]
    assert csv_labels("f.csv", "target", ["2", "0", "1"], rows, classes).tolist() == [2, 0, 1]
    assert csv_labels("f.csv", "target", ["2", "0", "1"], rows, None).tolist() == [2, 0, 1]
    # classes named by the integers of their own positions: integers read as indices either way
    assert csv_labels("f.csv", "pred", ["1", "0", "1"], rows, ["0", "1"]).tolist() == [1, 0, 1]
    # names and indices mixed: every value must then be a name
    with pytest.raises(PredictionFileError) as info:
        csv_labels("f.csv", "pred", ["cat", "1", "dog"], rows, classes)
    assert str(info.value) == ("f.csv: row 3: column 'pred' holds '1', which is not a class name "
                               "(classes: cat, dog, bird)")
    # "1" could be index 1 or the class named "1": refused rather than guessed
    with pytest.raises(PredictionFileError) as info:
        csv_labels("f.csv", "target", ["0", "1"], rows[:2], ["1", "0"])
    assert str(info.value) == ("f.csv: column 'target' holds integers, and the class list names classes by integers "
                               "that are not their positions (1, 0); write labels as indices 0..1 with a class list "
                               "of words, or drop the class list")
    many = [f"c{k}" for k in range(10)]  # a message shows the first 8 names
    with pytest.raises(PredictionFileError, match=r"holds 'c10', which is not a class name \(classes: c0, c1, c2, c3, "
                                                  r"c4, c5, c6, c7, \.\.\.\)$"):
        csv_labels("f.csv", "target", ["c9", "c10"], [2, 3], many)


def test_ids_integers_or_strings_and_no_empty_one():
    assert csv_ids("f.csv", ["5", "-2", "9"], [2, 3, 4]).tolist() == [5, -2, 9]
    assert csv_ids("f.csv", ["a", "5"], [2, 3]).tolist() == ["a", "5"]
    # 2^64 does not fit int64: kept as text, as any other name
    assert csv_ids("f.csv", ["18446744073709551616", "1"], [2, 3]).dtype.kind == "U"
    with pytest.raises(PredictionFileError, match=r"^f\.csv: row 5: the id is empty; expected a sample id$"):
        csv_ids("f.csv", ["1", "2", ""], [2, 3, 5])


def test_bad_cells_and_missing_columns_name_file_row_and_column(tmp_path):
    # rows are numbered as in a spreadsheet, blank lines included: header 1, data 2, blank 3, data 4
    path = write(tmp_path, "id,target,pred\n1,0,0\n\n2,x,0\n")
    assert one_line_error(path) == ("row 4: column 'target' holds 'x', not a class index; class names need the "
                                    "class list (--classes, or a checkpoint as the other input)")
    path = write(tmp_path, "id,target,pred\n1,0,1.5\n", "float.csv")
    assert one_line_error(path).startswith("row 2: column 'pred' holds '1.5', not a class index")
    path = write(tmp_path, "image,label,pred\na,0,0\n", "named.csv")
    assert one_line_error(path, ("image", "label", "prediction")) == (
        "lacks column(s) prediction (its columns: 'image', 'label', 'pred'); "
        "name the columns with --id-column, --label-column, --pred-column")
    # a short row counts the fields it has against the header's
    path = write(tmp_path, "id,note,target,pred\n1,x,0,0\n2,y\n", "short.csv")
    assert one_line_error(path) == "row 3: has 2 field(s); the header has 4"


def test_files_that_are_no_csv_of_samples(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"id,target,pred\ncaf\xe9,0,0\n")
    assert one_line_error(path) == "is not a UTF-8 text file"
    header_only = write(tmp_path, "id,target,pred\n\n  \n", "header.csv")
    assert one_line_error(header_only) == "contains no samples (only a header)"
    empty = write(tmp_path, "", "empty.csv")
    assert one_line_error(empty).startswith("lacks column(s) id, target, pred (its columns: none)")
    huge = write(tmp_path, "id,target,pred\n" + "1" * 200_000 + ",0,0\n", "huge.csv")
    assert one_line_error(huge).startswith("is not a readable CSV file (field larger than field limit")


def test_read_class_list_from_a_windows_file_and_refusals(tmp_path):
    listing = tmp_path / "classes.txt"
    listing.write_bytes("\ufeffcat\r\n dog \r\n\r\nbird\r\n".encode())  # BOM, CRLF, spaces, a blank line
    assert read_class_list(str(listing)) == ("cat", "dog", "bird")
    listing.write_text("cat\nb\0g\n")
    with pytest.raises(ConfigError) as info:
        read_class_list(str(listing))
    assert str(info.value) == f"--classes {listing}: class 1 ('b\\x00g') holds a NUL byte; expected names without one"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"^--classes .*pipe: not a regular file \(a FIFO\); expected a file$"):
        read_class_list(str(fifo))  # refused at once: reading it would wait for a writer
    with pytest.raises(ConfigError, match=r"^--classes 'cat': no such file, nor a list of at least 2 names"):
        read_class_list("cat")
