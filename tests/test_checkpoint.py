"""Safetensors checkpoints: round trip, every validation error, atomic writes, compatibility checks."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file

from modelupdate import __version__
from modelupdate.checkpoint import (
    atomic_write_bytes,
    check_compatible,
    load_checkpoint,
    read_safetensors,
    save_ensemble,
    save_model,
)
from modelupdate.errors import CheckpointError, MismatchError, OutputError
from modelupdate.formats import ENSEMBLE_FORMAT, MODEL_FORMAT, REQUIRED_KEYS, ModelMeta, read_meta
from modelupdate.models import build_model

SHAPE = (1, 8, 8)
CLASSES = ["cat", "dog", "emu", "yak"]


def make_meta(**overrides) -> ModelMeta:
    values = dict(
        arch="tiny", arch_args={"width": 4}, classes=list(CLASSES), input_shape=SHAPE,
        normalization={"mean": [0.5], "std": [0.25]}, dataset="synthetic", dataset_fingerprint="sha256:0123abcd",
        config={"train": {"epochs": 1, "lr": 0.05}}, metrics={"test_error_rate": 0.25, "test_n": 64},
    )
    return ModelMeta(**(values | overrides))


def make_model(seed: int = 0, arch: str = "tiny", width: int = 4) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch, len(CLASSES), SHAPE, {"width": width})
    # BatchNorm running statistics must round-trip too: move them off their defaults
    model.train()
    with torch.no_grad():
        model(torch.randn(16, *SHAPE))
    return model.eval()


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "model.safetensors"
    save_model(path, make_model(), make_meta())
    return path


def good_header() -> dict[str, str]:
    return make_meta().to_header()


def write_raw(path: Path, header: dict[str, str], state: dict[str, torch.Tensor] | None = None) -> Path:
    """A safetensors file with the tiny model's weights (or ``state``) and exactly ``header`` as metadata."""
    state = state if state is not None else {k: v.contiguous() for k, v in make_model().state_dict().items()}
    save_file(state, str(path), metadata=header)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(str(path)), "errors name the file"
    return message


# --------------------------------------------------------------------------- round trip


def test_round_trip_gives_identical_outputs_and_metadata(checkpoint):
    model = make_model()
    loaded = load_checkpoint(checkpoint)
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert not loaded.model.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    meta = loaded.meta
    assert meta.arch == "tiny" and meta.arch_args == {"width": 4}
    assert meta.classes == CLASSES and meta.num_classes == 4
    assert meta.input_shape == (1, 8, 8) and all(isinstance(s, int) for s in meta.input_shape)
    assert meta.normalization == {"mean": [0.5], "std": [0.25]}
    assert meta.dataset == "synthetic" and meta.dataset_fingerprint == "sha256:0123abcd"
    assert meta.config == {"train": {"epochs": 1, "lr": 0.05}}
    assert meta.metrics == {"test_error_rate": 0.25, "test_n": 64}
    assert meta.format == MODEL_FORMAT and not meta.is_ensemble
    assert meta.modelupdate_version == __version__ and meta.torch_version == torch.__version__
    assert loaded.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert loaded.members == [loaded.model]


def test_header_holds_every_required_key_as_a_string(checkpoint):
    _, header = read_safetensors(checkpoint)
    assert set(REQUIRED_KEYS) <= set(header)
    assert all(isinstance(v, str) for v in header.values())
    assert json.loads(header["num_classes"]) == 4
    assert json.loads(header["input_shape"]) == [1, 8, 8]
    assert read_meta(checkpoint).classes == CLASSES


def test_update_metadata_round_trips(tmp_path):
    update = {"method": "elodi", "alpha": 0.8, "parent_sha256": "ab" * 32, "reference_sha256": "cd" * 32}
    path = tmp_path / "new.safetensors"
    save_model(path, make_model(), make_meta(update=update))
    _, header = read_safetensors(path)
    assert header["parent_sha256"] == "ab" * 32 and header["reference_sha256"] == "cd" * 32
    assert read_meta(path).update == update


def test_safetensors_whose_header_length_starts_like_a_pickle_still_loads(tmp_path):
    """A header of 0x0280 / 0x0380 / 0x0480 / 0x0580 bytes begins with b"\\x80\\x02".."\\x80\\x05"."""
    path = tmp_path / "m.safetensors"
    tensors = {k: v.contiguous() for k, v in make_model().state_dict().items()}
    for pad in range(0, 1500):
        data = st_save(tensors, metadata=good_header() | {"padding": "x" * pad})
        (header_len,) = struct.unpack("<Q", data[:8])
        if data[0] == 0x80 and data[1] in (2, 3, 4, 5):
            break
    else:
        pytest.fail("no padding gave a pickle-like header length")
    assert header_len in (0x0280, 0x0380, 0x0480, 0x0580)
    path.write_bytes(data)
    assert load_checkpoint(path).meta.classes == CLASSES


# --------------------------------------------------------------------------- validation errors


def test_plain_safetensors_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in make_model().state_dict().items()}, str(path))
    message = error_of(path)
    assert "not a modelupdate checkpoint" in message
    assert "format, arch, arch_args, num_classes" in message


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_each_missing_metadata_key_is_named(tmp_path, key):
    header = good_header()
    del header[key]
    message = error_of(write_raw(tmp_path / "m.safetensors", header))
    assert f"metadata lacks {key}" in message


def test_wrong_format_string(tmp_path):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {"format": "timm-model/3"}))
    assert "'format' is 'timm-model/3'" in message and MODEL_FORMAT in message


@pytest.mark.parametrize("key", ["arch_args", "num_classes", "classes", "input_shape", "normalization", "config",
                                 "metrics"])
def test_bad_json_in_a_field(tmp_path, key):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {key: "{not json"}))
    assert f"metadata field '{key}' is not valid JSON" in message


def test_num_classes_disagrees_with_classes(tmp_path):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {"num_classes": "5"}))
    assert "'num_classes' = 5 but 'classes' lists 4" in message


@pytest.mark.parametrize("classes", ["[]", "[1, 2, 3, 4]", '"cat"'])
def test_classes_must_be_a_list_of_strings(tmp_path, classes):
    header = good_header() | {"classes": classes}
    message = error_of(write_raw(tmp_path / "m.safetensors", header))
    assert "'classes'" in message


@pytest.mark.parametrize("shape", ["[1, 8]", "[1, -8, 8]", "[1, 8.5, 8]", '"1x8x8"', "[1, 8, 8, 1]"])
def test_bad_input_shape(tmp_path, shape):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {"input_shape": shape}))
    assert "'input_shape' must be [C, H, W] positive integers" in message


@pytest.mark.parametrize("norm", ['{"mean": [0.5, 0.5, 0.5], "std": [0.25]}', '{"mean": [0.5]}', "[0.5, 0.25]"])
def test_normalization_must_have_one_value_per_channel(tmp_path, norm):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {"normalization": norm}))
    assert "'normalization' must hold 'mean' and 'std' with one value per channel (1)" in message


@pytest.mark.parametrize("key", ["arch_args", "config", "metrics"])
def test_structured_fields_must_be_objects(tmp_path, key):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {key: "[1, 2]"}))
    assert f"metadata field '{key}' must be a JSON dict" in message


def test_weights_that_do_not_fit_the_arch(tmp_path):
    wider = {k: v.contiguous() for k, v in make_model(width=6).state_dict().items()}
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header(), wider))
    assert "weights do not fit architecture 'tiny'" in message
    fewer = {k: v.contiguous() for k, v in make_model().state_dict().items() if not k.startswith("head.")}
    assert "weights do not fit" in error_of(write_raw(tmp_path / "m2.safetensors", good_header(), fewer))


def test_unknown_arch_in_metadata(tmp_path):
    message = error_of(write_raw(tmp_path / "m.safetensors", good_header() | {"arch": "resnet9000"}))
    assert "cannot rebuild architecture 'resnet9000'" in message


@pytest.mark.parametrize(("keep", "expected"), [
    (-10, "corrupted safetensors data"),  # tensor bytes cut short
    (200, "truncated or not a safetensors file"),  # header cut short
    (5, "truncated (5 bytes)"),
    (0, "truncated (0 bytes)"),
])
def test_truncated_file(checkpoint, keep, expected):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[:keep])
    assert expected in error_of(checkpoint)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(random.Random(7).randbytes(4096))
    assert "not a safetensors file" in error_of(path)


def test_header_that_is_not_json_or_not_strings(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"abcd")
    assert "header is not JSON" in error_of(path)
    header = json.dumps({"__metadata__": {"format": 1}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert "metadata must map strings to strings" in error_of(path)
    path.write_bytes(struct.pack("<Q", 2) + b"[]")
    assert "header is not a JSON object" in error_of(path)


def test_missing_file_and_folder(tmp_path):
    assert "file not found" in error_of(tmp_path / "absent.safetensors")
    assert "not a regular file (a directory)" in error_of(tmp_path)


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_real_torch_pickle_is_refused_with_how_to_convert(tmp_path, name):
    path = tmp_path / name
    torch.save(make_model().state_dict(), path)
    message = error_of(path)
    assert "pickle" in message and "never unpickles" in message
    assert "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')" in message


def test_legacy_protocol_pickle_by_content(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    assert "pickle" in error_of(path)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_model(path, make_model(seed=0), make_meta())
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OutputError, match="No space left on device"):
        save_model(path, make_model(seed=1), make_meta())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_write_into_a_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "m.safetensors", b"x")


# --------------------------------------------------------------------------- compatibility


def test_check_compatible_accepts_equal_metadata():
    check_compatible(make_meta(), "old", make_meta(arch="cnn-m", metrics={}), "new")


def test_check_compatible_leaves_size_and_normalisation_to_each_models_transform():
    check_compatible(make_meta(), "old", make_meta(input_shape=(1, 9, 9), normalization={"mean": [0.4], "std": [0.3]}),
                     "new")


@pytest.mark.parametrize(("other", "expected"), [
    (dict(classes=["cat", "dog", "emu"]), "old has 4 classes but new has 3"),
    (dict(classes=["cat", "dog", "elk", "yak"]), "class names differ between old and new: class 2 is 'emu' vs 'elk'"),
    (dict(input_shape=(3, 8, 8), normalization={"mean": [0.5] * 3, "std": [0.25] * 3}),
     "old expects images of 1 channel(s), new has 3"),
])
def test_check_compatible_names_the_mismatch(other, expected):
    with pytest.raises(MismatchError) as err:
        check_compatible(make_meta(), "old", make_meta(**other), "new")
    assert expected in str(err.value)


def test_check_compatible_against_dataset_info(tiny_data_config):
    from modelupdate.data import load_dataset

    info = load_dataset(tiny_data_config()).info  # classes class0..class3, shape [1, 8, 8]
    with pytest.raises(MismatchError, match="class 0 is 'cat' vs 'class0'"):
        check_compatible(make_meta(), "model", info, "data")
    check_compatible(make_meta(classes=list(info.classes)), "model", info, "data")


# --------------------------------------------------------------------------- ensembles


def test_ensemble_round_trip(tmp_path):
    pytest.importorskip("modelupdate.reference", reason="modelupdate.reference (EnsembleReference) not written yet")
    members = [make_model(seed=s) for s in (3, 4)]
    meta = make_meta(member_seeds=[3, 4], member_metrics=[{"test_error_rate": 0.3}, {"test_error_rate": 0.2}])
    path = tmp_path / "ens.safetensors"
    save_ensemble(path, members, meta)
    loaded = load_checkpoint(path)
    assert loaded.meta.is_ensemble and loaded.meta.format == ENSEMBLE_FORMAT
    assert loaded.meta.member_seeds == [3, 4]
    assert loaded.meta.member_metrics == [{"test_error_rate": 0.3}, {"test_error_rate": 0.2}]
    assert len(loaded.members) == 2
    x = torch.randn(6, *SHAPE)
    with torch.no_grad():
        expected = (members[0](x) + members[1](x)) / 2
        assert torch.allclose(loaded.model(x), expected, atol=1e-6)
        for got, want in zip(loaded.members, members, strict=True):
            assert torch.equal(got(x), want(x))
    _, header = read_safetensors(path)
    assert header["member_count"] == "2" and header["member_seeds"] == "[3, 4]"
    tensors, _ = read_safetensors(path)
    assert {k.split(".", 1)[0] for k in tensors} == {"member0", "member1"}


def test_ensemble_metadata_inconsistent(tmp_path):
    pytest.importorskip("modelupdate.reference", reason="modelupdate.reference (EnsembleReference) not written yet")
    path = tmp_path / "ens.safetensors"
    save_ensemble(path, [make_model(seed=1), make_model(seed=2)], make_meta(member_seeds=[1, 2]))
    tensors, header = read_safetensors(path)
    save_file(tensors, str(path), metadata=header | {"member_count": "3"})
    assert "'member_count' / 'member_seeds' missing or inconsistent" in error_of(path)
    only_first = {k: v for k, v in tensors.items() if k.startswith("member0.")}
    save_file(only_first, str(path), metadata=header)
    assert "ensemble lists 2 members but has no tensors for member 1" in error_of(path)


def test_save_ensemble_needs_one_seed_per_member(tmp_path):
    with pytest.raises(ValueError, match="one seed per member"):
        save_ensemble(tmp_path / "e.safetensors", [make_model()], make_meta(member_seeds=[1, 2]))


def test_a_checkpoint_whose_metadata_would_not_rebuild_it_is_never_written(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match=r"tiny with arch_args \{'width': 8\} would not rebuild this model"):
        save_model(path, make_model(width=4), make_meta(arch_args={"width": 8}))
    assert not path.exists()
    model = make_model(width=4)
    rng = torch.random.get_rng_state()
    save_model(path, model, make_meta())
    assert path.exists() and torch.equal(torch.random.get_rng_state(), rng)  # the check draws nothing of the caller's
