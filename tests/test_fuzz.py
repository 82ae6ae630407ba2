"""Property tests (hypothesis) for what modelupdate reads from disk, and the malformed-checkpoint corpus.

- checkpoint metadata: ``ModelMeta.from_header`` on arbitrary string maps (and on a good header
  with fields replaced by arbitrary JSON) raises CheckpointError or returns metadata that renders
  back (``to_header``, as `modelupdate info` does) — never another exception;
- ``read_safetensors`` on arbitrary bytes and on mutated real checkpoints: CheckpointError only;
- prediction files: mutated real .npz / .csv / .safetensors files (tests/test_predictions.py already
  feeds arbitrary bytes behind format prefixes): PredictionFileError or valid predictions;
- tests/data/bad_checkpoints (made by its make_bad_checkpoints.py): each file through `modelupdate
  info` gives exit 2 and the one-line message listed in its EXPECTED.json.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from modelupdate.checkpoint import read_safetensors
from modelupdate.cli import app
from modelupdate.errors import CheckpointError, PredictionFileError
from modelupdate.formats import JSON_KEYS, REQUIRED_KEYS, ModelMeta
from modelupdate.predictions import Predictions, read_predictions, write_predictions

CORPUS = Path(__file__).parent / "data" / "bad_checkpoints"
EXPECTED = json.loads((CORPUS / "EXPECTED.json").read_text())
PATH = Path("fuzz.safetensors")
KEYS = sorted(set(REQUIRED_KEYS) | JSON_KEYS | {"parent_sha256", "reference_sha256"})


def good_header(ensemble: bool = False) -> dict[str, str]:
    meta = ModelMeta(arch="tiny", arch_args={"width": 4}, classes=["a", "b", "c"], input_shape=(1, 8, 8),
                     normalization={"mean": [0.5], "std": [0.25]}, dataset="synthetic",
                     dataset_fingerprint="sha256:00", config={"train": {"epochs": 1}}, metrics={"test_n": 3},
                     update={"method": "elodi", "parent_sha256": "ab"})
    if ensemble:
        meta.format, meta.member_seeds, meta.member_metrics = "modelupdate-ensemble/1", [0, 1], [{}, {}]
    return meta.to_header()


def parse(header: dict[str, str]) -> None:
    """The property: CheckpointError (one line, naming the file) or metadata that renders back."""
    try:
        meta = ModelMeta.from_header(header, PATH)
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(PATH))
        return
    rendered = meta.to_header()
    assert all(isinstance(v, str) for v in rendered.values())
    assert meta.num_classes == len(meta.classes) >= 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
# what a field may hold: any text, JSON of any shape, or JSON-looking junk
field_values = st.text(max_size=40) | json_values.map(json.dumps) | st.sampled_from(
    ["", "[", "{}", "[]", "NaN", "-Infinity", "1e999", "[" * 50_000, "9" * 5_000, "\ud800", '{"mean": 1}'])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), field_values, max_size=len(KEYS) + 2))
def test_from_header_on_arbitrary_string_maps(header):
    parse(header)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ensemble=st.booleans(), changes=st.dictionaries(st.sampled_from(KEYS), field_values, min_size=1, max_size=3),
       dropped=st.sets(st.sampled_from(KEYS), max_size=2))
def test_from_header_on_a_good_header_with_fields_replaced(ensemble, changes, dropped):
    header = good_header(ensemble) | changes
    for key in dropped:
        header.pop(key, None)
    parse(header)


# --------------------------------------------------------------------------- safetensors bytes


def good_file_bytes() -> bytes:
    tensors = {"features.0.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
               "head.bias": torch.zeros(3, dtype=torch.float16), "steps": torch.tensor([7], dtype=torch.int64)}
    return st_save(tensors, metadata=good_header())


GOOD = good_file_bytes()


def read_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.safetensors"
        path.write_bytes(data)
        try:
            tensors, meta = read_safetensors(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))
            return
        assert all(isinstance(v, str) for v in meta.values())
        assert all(torch.is_tensor(t) for t in tensors.values())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_read_safetensors_on_arbitrary_bytes(data):
    read_bytes(data)


@settings(max_examples=200, deadline=None)
@given(header_len=st.integers(0, 2**64 - 1), body=st.binary(max_size=200))
def test_read_safetensors_on_any_header_length(header_len, body):
    read_bytes(header_len.to_bytes(8, "little") + body)


@st.composite
def mutations(draw) -> bytes:
    """A real checkpoint with bytes flipped, a range cut out, or bytes inserted (header or data)."""
    data = bytearray(GOOD)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(mutations())
def test_read_safetensors_on_mutated_checkpoints(data):
    read_bytes(data)


@settings(max_examples=200, deadline=None)
@given(header=st.dictionaries(st.text(max_size=12), json_values, max_size=5), tail=st.binary(max_size=64))
def test_read_safetensors_on_any_json_header(header, tail):
    """Well-framed files whose JSON header is anything: tensors with odd dtypes, shapes and offsets."""
    raw = json.dumps(header).encode()
    read_bytes(len(raw).to_bytes(8, "little") + raw + tail)


@settings(max_examples=200, deadline=None)
@given(dtype=st.text(max_size=5) | st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "C64"]),
       shape=st.lists(st.integers(-2, 2**40), max_size=4), start=st.integers(-1, 80), end=st.integers(-1, 80))
def test_read_safetensors_on_any_tensor_entry(dtype, shape, start, end):
    header = {"__metadata__": {"format": "x"}, "t": {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}}
    raw = json.dumps(header).encode()
    read_bytes(len(raw).to_bytes(8, "little") + raw + bytes(64))


# --------------------------------------------------------------------------- prediction files


def prediction_file_bytes(suffix: str) -> bytes:
    p = Predictions.from_arrays(ids=np.arange(10, 16), targets=np.array([0, 1, 2, 0, 1, 2]),
                                logits=np.eye(3, dtype=np.float32)[[0, 1, 2, 1, 1, 0]], classes=["a", "b", "c"],
                                source="fuzz")
    with tempfile.TemporaryDirectory() as tmp:
        if suffix == ".csv":
            return b"id,target,pred\n" + b"".join(
                f"{i},{t},{q}\n".encode() for i, t, q in zip(p.ids, p.targets, p.preds, strict=True))
        return write_predictions(Path(tmp) / f"p{suffix}", p).read_bytes()


PREDICTION_FILES = {s: prediction_file_bytes(s) for s in (".npz", ".csv", ".safetensors")}


@st.composite
def mutated_prediction_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(PREDICTION_FILES)))
    data = bytearray(PREDICTION_FILES[suffix])
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 32))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b",", b"\n", b"-1", b"nan"]))
        else:
            del data[at:]
    return suffix, bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_prediction_files())
def test_mutated_prediction_files_give_one_line_errors_or_valid_predictions(case):
    suffix, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            p = read_predictions(path)
        except PredictionFileError as exc:
            assert "\n" not in str(exc)
            return
    assert len(p) > 0 and len(np.unique(p.ids)) == len(p.ids)
    assert p.targets.min() >= 0 and p.preds.min() >= 0
    if p.num_classes is not None:  # a labels-only file may leave it open
        assert p.targets.max() < p.num_classes and p.preds.max() < p.num_classes
    if p.logits is not None:
        assert p.logits.shape == (len(p), p.num_classes) and np.isfinite(p.logits).all()


# --------------------------------------------------------------------------- the corpus


def test_corpus_files_are_small_and_all_listed():
    present = {p.name for p in CORPUS.iterdir()} - {"EXPECTED.json", "make_bad_checkpoints.py", "__pycache__"}
    assert present == set(EXPECTED)
    assert all((CORPUS / name).stat().st_size < 10_000 for name in present)


def test_corpus_script_regenerates_the_same_files(tmp_path):
    subprocess.run([sys.executable, str(CORPUS / "make_bad_checkpoints.py"), str(tmp_path)], check=True)
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert json.loads(made.pop("EXPECTED.json")) == EXPECTED
    assert made == {name: (CORPUS / name).read_bytes() for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_info_on_each_corpus_file(name):
    path = CORPUS / name
    result = CliRunner().invoke(app, ["info", str(path)], env={"COLUMNS": "300"})
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    assert EXPECTED[name] in lines[0], (EXPECTED[name], lines[0])
    assert result.stdout == ""


def test_nan_and_huge_numbers_in_metadata_do_not_crash():
    """JSON allows NaN / Infinity; a metric may be NaN after a diverged evaluation."""
    header = good_header() | {"metrics": json.dumps({"test_error_rate": math.nan, "big": 1e308 * 10})}
    meta = ModelMeta.from_header(header, PATH)
    assert math.isnan(meta.metrics["test_error_rate"])
