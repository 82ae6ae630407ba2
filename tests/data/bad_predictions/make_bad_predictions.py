"""Write the corpus of malformed prediction files next to this script.

Run ``python tests/data/bad_predictions/make_bad_predictions.py`` to regenerate
(the files are committed; each is a few hundred bytes). ``EXPECTED.json`` maps
every case to the error class and a fragment of its one-line message:

- ``files``: a single file that must fail to read (PredictionFileError);
- ``pairs``: two readable files (old, new) that must fail to align (MismatchError).

Only numpy, safetensors and the standard library are used, so the corpus does
not depend on the code it tests.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
FORMAT = "modelupdate-predictions/1"

IDS = np.array([10, 11, 12, 13], dtype=np.int64)
TARGETS = np.array([0, 1, 2, 1], dtype=np.int64)
LOGITS = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 2], [2, 0, 0]], dtype=np.float32)


def npz(name: str, **arrays: np.ndarray) -> None:
    np.savez(HERE / name, **arrays)


def safetensors(name: str, metadata: dict[str, str] | None, **tensors: np.ndarray) -> None:
    save_file(tensors, str(HERE / name), metadata=metadata)


def npz_with_header(name: str, field: str, header: dict, data: bytes, **arrays: np.ndarray) -> None:
    """An .npz whose ``field`` member has the .npy ``header`` given (whatever ``data`` holds), the other
    arrays saved as numpy does; a fixed timestamp keeps the bytes the same on every run."""
    def member(array_header: dict, raw: bytes) -> bytes:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, array_header)
        return buffer.getvalue() + raw

    with zipfile.ZipFile(HERE / name, "w") as archive:
        for key, array in arrays.items():
            info = np.lib.format.header_data_from_array_1_0(array)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", (2000, 1, 1, 0, 0, 0)), member(info, array.tobytes()))
        archive.writestr(zipfile.ZipInfo(f"{field}.npy", (2000, 1, 1, 0, 0, 0)), member(header, data))


def raw_safetensors(name: str, metadata: dict[str, str], tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file written byte by byte: any dtype name (numpy has no bfloat16 to save)."""
    header: dict = {"__metadata__": metadata}
    body = b""
    for key, (dtype, shape, raw) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header, sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    (HERE / name).write_bytes(struct.pack("<Q", len(text)) + text + body)


def main() -> None:
    files: dict[str, str] = {}  # file name -> message fragment

    npz("missing_ids.npz", targets=TARGETS, logits=LOGITS)
    files["missing_ids.npz"] = "missing field 'ids'"
    npz("missing_targets.npz", ids=IDS, logits=LOGITS)
    files["missing_targets.npz"] = "missing field 'targets'"
    npz("missing_logits_and_preds.npz", ids=IDS, targets=TARGETS)
    files["missing_logits_and_preds.npz"] = "missing field 'logits' or 'preds'"
    npz("duplicate_ids.npz", ids=np.array([10, 11, 11, 13]), targets=TARGETS, logits=LOGITS)
    files["duplicate_ids.npz"] = "duplicated ids (e.g. 11)"
    nan = LOGITS.copy()
    nan[2, 1] = np.nan
    npz("nan_logits.npz", ids=IDS, targets=TARGETS, logits=nan)
    files["nan_logits.npz"] = "contains NaN or Inf (first in row 2)"
    inf = LOGITS.copy()
    inf[1, 0] = np.inf
    safetensors("inf_logits.safetensors", {"format": FORMAT}, ids=IDS, targets=TARGETS,
                logits=inf, preds=np.array([0, 1, 2, 0]))
    files["inf_logits.safetensors"] = "contains NaN or Inf (first in row 1)"
    npz("target_out_of_range.npz", ids=IDS, targets=np.array([0, 1, 3, 1]), logits=LOGITS)
    files["target_out_of_range.npz"] = "field 'targets' has class 3, outside [0, 3)"
    npz("pred_out_of_range.npz", ids=IDS, targets=TARGETS, preds=np.array([0, 1, 5, 1]),
        num_classes=np.int64(3))
    files["pred_out_of_range.npz"] = "field 'preds' has class 5, outside [0, 3)"
    (HERE / "negative_pred.csv").write_text("id,target,pred\n1,0,0\n2,1,-1\n")
    files["negative_pred.csv"] = "field 'preds' has negative class -1"
    npz("float_ids.npz", ids=IDS.astype(np.float64), targets=TARGETS, logits=LOGITS)
    files["float_ids.npz"] = "field 'ids' has dtype float64; expected integers"
    npz("int_logits.npz", ids=IDS, targets=TARGETS, logits=LOGITS.astype(np.int32))
    files["int_logits.npz"] = "field 'logits' has dtype int32; expected floats"
    npz("logits_1d.npz", ids=IDS, targets=TARGETS, logits=LOGITS[:, 0].copy())
    files["logits_1d.npz"] = "field 'logits' has shape (4,); expected [N, C]"
    npz("one_class_logits.npz", ids=IDS, targets=np.zeros(4, dtype=np.int64),
        logits=LOGITS[:, :1].copy())
    files["one_class_logits.npz"] = "field 'logits' has 1 class(es); expected at least 2"
    npz("length_mismatch.npz", ids=IDS, targets=TARGETS[:3], logits=LOGITS)
    files["length_mismatch.npz"] = "field 'targets' has 3 entries; 'ids' has 4"
    npz("logits_rows_mismatch.npz", ids=IDS, targets=TARGETS, logits=LOGITS[:3])
    files["logits_rows_mismatch.npz"] = "field 'logits' has 3 rows; 'ids' has 4"
    npz("preds_disagree_with_logits.npz", ids=IDS, targets=TARGETS, logits=LOGITS,
        preds=np.array([0, 1, 1, 0]))
    files["preds_disagree_with_logits.npz"] = "disagrees with argmax of 'logits' for 1 samples"
    (HERE / "empty_file.npz").write_bytes(b"")
    files["empty_file.npz"] = "file is empty"
    (HERE / "empty_file.csv").write_bytes(b"")
    files["empty_file.csv"] = "file is empty"
    npz("no_samples.npz", ids=IDS[:0], targets=TARGETS[:0], logits=LOGITS[:0])
    files["no_samples.npz"] = "contains no samples"
    (HERE / "header_only.csv").write_text("id,target,pred\n")
    files["header_only.csv"] = "contains no samples (only a header)"
    (HERE / "bad_header.csv").write_text("sample,label,prediction\n1,0,0\n")
    files["bad_header.csv"] = ("lacks column(s) id, target, pred (its columns: 'sample', 'label', "
                                "'prediction')")
    (HERE / "non_integer.csv").write_text("id,target,pred\n1,0,0\n2,cat,1\n")
    files["non_integer.csv"] = "row 3: column 'target' holds 'cat', not a class index"
    # an object array inside an .npz is stored as a pickle: it must be refused, not run
    np.savez(HERE / "pickled_array.npz", ids=IDS, targets=TARGETS,
             logits=np.array([[1.0, 0.0], "x", None, 3], dtype=object))
    files["pickled_array.npz"] = "field 'logits' holds pickled Python objects"
    (HERE / "raw_pickle.npz").write_bytes(pickle.dumps({"ids": [1, 2]}, protocol=4))
    files["raw_pickle.npz"] = "is a Python pickle; modelupdate never unpickles"
    np.save(HERE / "single_array.npy", IDS)
    (HERE / "single_array.npy").rename(HERE / "single_array.npz")
    files["single_array.npz"] = "is a single .npy array"
    (HERE / "not_zip.npz").write_text("this is not a zip archive\n")
    files["not_zip.npz"] = "is not an .npz (zip) archive"
    good = (HERE / "good.npz")
    np.savez(good, ids=IDS, targets=TARGETS, logits=LOGITS)
    (HERE / "truncated.npz").write_bytes(good.read_bytes()[:200])
    files["truncated.npz"] = "cannot read .npz archive"
    (HERE / "predictions.txt").write_text("id,target,pred\n1,0,0\n")
    files["predictions.txt"] = "unknown extension '.txt'"
    safetensors("checkpoint_not_predictions.safetensors",
                {"format": "modelupdate-checkpoint/1"}, weight=LOGITS)
    files["checkpoint_not_predictions.safetensors"] = (
        "metadata 'format' is 'modelupdate-checkpoint/1'; expected 'modelupdate-predictions/1'")
    (HERE / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    files["garbage.safetensors"] = "cannot read safetensors file"
    safetensors("classes_wrong_length.safetensors",
                {"format": FORMAT, "classes": json.dumps(["a", "b"])},
                ids=IDS, targets=TARGETS, logits=LOGITS, preds=np.array([0, 1, 2, 0]))
    files["classes_wrong_length.safetensors"] = "field 'classes' has 2 names for 3 classes"
    safetensors("classes_not_json.safetensors", {"format": FORMAT, "classes": "[a, b"},
                ids=IDS, targets=TARGETS, logits=LOGITS)
    files["classes_not_json.safetensors"] = "metadata 'classes' is not valid JSON"

    # declared sizes, dtypes, costs and names: checked before anything is allocated or shown
    npz_with_header("huge_shape.npz", "logits",
                    {"descr": "<f4", "fortran_order": False, "shape": (1_000_000_000, 1_000_000)},
                    LOGITS.tobytes(), ids=IDS, targets=TARGETS)
    files["huge_shape.npz"] = ("field 'logits' declares shape (1000000000, 1000000) of float32 "
                               "(4,000,000,000,000,000 bytes) but its archive member holds 48 bytes")
    bf16 = (LOGITS.view(np.uint32) >> 16).astype("<u2").tobytes()  # bfloat16: the top half of a float32
    raw_safetensors("bf16_logits.safetensors", {"format": FORMAT},
                    {"ids": ("I64", [4], IDS.astype("<i8").tobytes()),
                     "targets": ("I64", [4], TARGETS.astype("<i8").tobytes()),
                     "logits": ("BF16", [4, 3], bf16)})
    files["bf16_logits.safetensors"] = "field 'logits' has dtype BF16; expected F16, F32 or F64"
    safetensors("params_negative.safetensors", {"format": FORMAT, "params": "-5"},
                ids=IDS, targets=TARGETS, logits=LOGITS)
    files["params_negative.safetensors"] = "metadata 'params' is '-5'; expected a count of parameters"
    npz("class_name_nul.npz", ids=IDS, targets=TARGETS, logits=LOGITS, classes=np.array(["a", "b\0x", "c"]))
    files["class_name_nul.npz"] = "field 'classes': class 1 ('b\\x00x') holds a NUL byte"

    # readable files that do not fit together
    pairs: dict[str, dict[str, str]] = {}
    npz("pair_old.npz", ids=IDS, targets=TARGETS, logits=LOGITS)
    npz("pair_other_ids.npz", ids=np.array([10, 11, 12, 99]), targets=TARGETS, logits=LOGITS)
    pairs["ids_differ"] = {"old": "pair_old.npz", "new": "pair_other_ids.npz",
                           "message": "1 only in old (e.g. 13), 1 only in new (e.g. 99)"}
    npz("pair_other_targets.npz", ids=IDS, targets=np.array([0, 1, 2, 2]), logits=LOGITS)
    pairs["targets_differ"] = {"old": "pair_old.npz", "new": "pair_other_targets.npz",
                               "message": "targets differ for 1 of 4 samples"}
    wide = np.concatenate([LOGITS, np.zeros((4, 1), dtype=np.float32)], axis=1)
    npz("pair_four_classes.npz", ids=IDS, targets=TARGETS, logits=wide)
    pairs["class_count_differs"] = {"old": "pair_old.npz", "new": "pair_four_classes.npz",
                                    "message": "class counts differ"}
    good.unlink()

    expected = {"files": files, "pairs": pairs}
    (HERE / "EXPECTED.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
