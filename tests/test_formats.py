"""The file formats read without torch: what kind of file a path holds, and a header's metadata."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

from modelupdate.formats import (
    ENSEMBLE_FORMAT,
    MODEL_FORMAT,
    PREDICTIONS_FORMAT,
    REFERENCE_CACHE_FORMAT,
    file_kind,
    header_metadata,
)


def safetensors_with(path, metadata: dict[str, str]):
    save_file({"x": np.zeros(2, dtype=np.float32)}, str(path), metadata=metadata)
    return path


def test_file_kind_reads_the_format_from_the_header(tmp_path):
    assert file_kind(safetensors_with(tmp_path / "m.safetensors", {"format": MODEL_FORMAT})) == "model"
    assert file_kind(safetensors_with(tmp_path / "e.safetensors", {"format": ENSEMBLE_FORMAT})) == "ensemble"
    assert file_kind(safetensors_with(tmp_path / "p.safetensors", {"format": PREDICTIONS_FORMAT})) == "predictions"
    assert file_kind(safetensors_with(tmp_path / "c.safetensors", {"format": REFERENCE_CACHE_FORMAT})) is None
    assert file_kind(safetensors_with(tmp_path / "n.safetensors", {})) is None
    for name in ("a.npz", "a.CSV"):  # by suffix: their readers explain what is wrong with them
        assert file_kind(tmp_path / name) == "predictions"
    assert file_kind(tmp_path / "missing.safetensors") is None


def test_header_metadata_is_none_for_anything_unreadable(tmp_path):
    good = safetensors_with(tmp_path / "g.safetensors", {"format": MODEL_FORMAT, "classes": '["a"]'})
    assert header_metadata(good) == {"format": MODEL_FORMAT, "classes": '["a"]'}
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[:-3])  # the tensor's bytes no longer fit: not trusted
    header = json.dumps({"__metadata__": {"format": MODEL_FORMAT}}).encode()
    huge = tmp_path / "h.safetensors"
    huge.write_bytes(struct.pack("<Q", 10**12) + header)  # a header length beyond the file
    not_json = tmp_path / "j.safetensors"
    not_json.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    for path in (truncated, huge, not_json, tmp_path, tmp_path / "other.bin"):
        assert header_metadata(path) is None, path


def test_the_formats_module_needs_no_torch():
    code = ("import sys, modelupdate.formats; "
            "sys.exit('torch imported' if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
