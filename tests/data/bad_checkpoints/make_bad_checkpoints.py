"""Write the corpus of malformed checkpoint files (and EXPECTED.json) next to this script.

Run ``python tests/data/bad_checkpoints/make_bad_checkpoints.py [FOLDER]`` to regenerate (the
files are committed; each is under 10 KB). ``EXPECTED.json`` maps every file to a fragment of the
one-line error that `modelupdate info FILE` must print (exit code 2).

Only numpy and the standard library are used, so the corpus does not depend on the code it tests.
The files are serialised here (not by safetensors, which orders metadata keys at random), so the
bytes are the same on every run (tests/test_fuzz.py checks it).
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

TENSORS = {"features.0.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
           "head.bias": np.zeros(3, dtype=np.float32)}
GOOD = {
    "format": "modelupdate-model/1", "arch": "tiny", "arch_args": "{}", "num_classes": "3",
    "classes": '["a", "b", "c"]', "input_shape": "[3, 8, 8]",
    "normalization": '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}', "dataset": "synthetic",
    "dataset_fingerprint": "sha256:0123456789abcdef", "config": "{}", "metrics": "{}",
    "modelupdate_version": "0.1.0", "torch_version": "2.0.0",
}


def save(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors format: 8-byte little-endian header length, a JSON header (sorted keys, padded
    with spaces to 8 bytes) naming each tensor's dtype, shape and byte range, then the raw data."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header: dict = {"__metadata__": metadata} if metadata else {}
    body, offset = b"", 0
    for name, array in sorted(tensors.items()):
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        body, offset = body + raw, offset + len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return framed(text, body)


def framed(header: bytes, body: bytes = b"") -> bytes:
    """A safetensors frame: 8-byte little-endian header length, the header, the data."""
    return struct.pack("<Q", len(header)) + header + body


def with_metadata(**changes: str | None) -> bytes:
    """A well-formed safetensors file whose metadata is GOOD with ``changes`` (None: key removed)."""
    metadata = {k: v for k, v in (GOOD | changes).items() if v is not None}
    return save(TENSORS, metadata=metadata)


def cases() -> dict[str, tuple[bytes, str]]:
    good = with_metadata()
    (n,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8:8 + n])
    odd_offsets = dict(header, **{"head.bias": dict(header["head.bias"], data_offsets=[96, 4096])})
    odd_dtype = dict(header, **{"head.bias": dict(header["head.bias"], dtype="F24")})
    return {
        # the file itself
        "empty.safetensors": (b"", "truncated (0 bytes)"),
        "five_bytes.safetensors": (b"\x10\x00\x00\x00\x00", "truncated (5 bytes)"),
        "header_longer_than_file.safetensors": (framed(b'{"a": 1}')[:12], "truncated or not a safetensors file"),
        "header_length_huge.safetensors": (struct.pack("<Q", 2**63) + b"{}", "header length 9223372036854775808"),
        "header_not_json.safetensors": (framed(b"this is not JSON"), "not a safetensors file (header is not JSON)"),
        "header_not_utf8.safetensors": (framed(b'{"\xff\xfe": 1}'), "not a safetensors file (header is not JSON)"),
        "header_nested_too_deep.safetensors": (framed(b"[" * 2000 + b"]" * 2000),
                                               "not a safetensors file (header is not JSON)"),
        "header_is_a_list.safetensors": (framed(b"[1, 2, 3]"), "header is not a JSON object"),
        "metadata_not_strings.safetensors": (framed(b'{"__metadata__": {"format": 1}}'),
                                             "metadata must map strings to strings"),
        "data_cut_short.safetensors": (good[:-10], "corrupted safetensors data"),
        "offsets_past_the_end.safetensors": (framed(json.dumps(odd_offsets).encode(), good[8 + n:]),
                                             "corrupted safetensors data"),
        "unknown_dtype.safetensors": (framed(json.dumps(odd_dtype).encode(), good[8 + n:]),
                                      "corrupted safetensors data"),
        # pickles: refused by content and by name, never unpickled
        "legacy_pickle.safetensors": (pickle.dumps({"weight": [0.0, 1.0]}, protocol=2), "looks like a PyTorch pickle"),
        "zip_pickle.pt": (b"PK\x03\x04" + bytes(60), "looks like a PyTorch pickle"),
        # readable safetensors, wrong metadata
        "no_metadata.safetensors": (save(TENSORS), "not a modelupdate checkpoint (metadata lacks format, arch"),
        "missing_classes.safetensors": (with_metadata(classes=None), "metadata lacks classes"),
        "other_format.safetensors": (with_metadata(format="modelupdate-model/9"),
                                     "metadata field 'format' is 'modelupdate-model/9'"),
        "classes_not_json.safetensors": (with_metadata(classes="[a, b, c]"),
                                         "metadata field 'classes' is not valid JSON"),
        "config_nested_too_deep.safetensors": (with_metadata(config="[" * 2000 + "]" * 2000),
                                               "metadata field 'config' is not valid JSON"),
        "num_classes_5000_digits.safetensors": (with_metadata(num_classes="9" * 5000),
                                                "metadata field 'num_classes' is not valid JSON"),
        "num_classes_disagrees.safetensors": (with_metadata(num_classes="5"),
                                              "metadata 'num_classes' = 5 but 'classes' lists 3"),
        "classes_empty.safetensors": (with_metadata(classes="[]", num_classes="0"),
                                      "'classes' must be a non-empty list of strings"),
        "classes_not_strings.safetensors": (with_metadata(classes="[1, 2, 3]"),
                                            "'classes' must be a non-empty list of strings"),
        "input_shape_two_dims.safetensors": (with_metadata(input_shape="[8, 8]"),
                                             "'input_shape' must be [C, H, W] positive integers"),
        "input_shape_negative.safetensors": (with_metadata(input_shape="[3, -8, 8]"),
                                             "'input_shape' must be [C, H, W] positive integers"),
        "normalization_one_channel.safetensors": (with_metadata(normalization='{"mean": [0.5], "std": [0.25]}'),
                                                  "'normalization' must hold 'mean' and 'std'"),
        "normalization_numbers_not_lists.safetensors": (with_metadata(normalization='{"mean": 0.5, "std": 0.25}'),
                                                        "'normalization' must hold 'mean' and 'std'"),
        "normalization_strings.safetensors": (
            with_metadata(normalization='{"mean": ["a", "b", "c"], "std": [0.25, 0.25, 0.25]}'),
            "'normalization' must hold 'mean' and 'std'"),
        "normalization_zero_std.safetensors": (
            with_metadata(normalization='{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0, 0.25]}'),
            "'normalization' must hold 'mean' and 'std'"),
        "arch_args_a_list.safetensors": (with_metadata(arch_args="[]"),
                                         "metadata field 'arch_args' must be a JSON dict"),
        "metrics_a_string.safetensors": (with_metadata(metrics='"good"'),
                                         "metadata field 'metrics' must be a JSON dict"),
        "update_a_list.safetensors": (with_metadata(update="[1, 2]"), "metadata field 'update' must be a JSON dict"),
        "update_parent_a_number.safetensors": (with_metadata(update='{"method": "elodi", "parent_sha256": 5}'),
                                               "'parent_sha256' is 5; expected a sha256 as a hex string"),
        "class_name_nul.safetensors": (with_metadata(classes='["a", "b\\u0000x", "c"]'),
                                       "class 1 ('b\\x00x') holds a NUL byte"),
        "ensemble_without_seeds.safetensors": (with_metadata(format="modelupdate-ensemble/1"),
                                               "ensemble metadata 'member_count' / 'member_seeds'"),
        "ensemble_count_disagrees.safetensors": (
            with_metadata(format="modelupdate-ensemble/1", member_count="3", member_seeds="[0, 1]"),
            "ensemble metadata 'member_count' / 'member_seeds'"),
    }


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, message) in sorted(cases().items()):
        assert len(data) < 10_000, name
        (folder / name).write_bytes(data)
        expected[name] = message
    (folder / "EXPECTED.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
