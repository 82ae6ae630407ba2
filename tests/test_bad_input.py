"""Bad input through the command line: exit code 2, one line on stderr that
names the file or option and what was expected, no traceback (unless --debug), and nothing
written: an ``--out`` that existed keeps its bytes and mtime, and no other file appears.

Most cases run in-process (typer's CliRunner, fast); two run as real subprocesses, with and
without ``--debug``. Prediction files (duplicate / missing / unaligned ids, NaN / Inf logits,
labels out of range) are covered file by file in tests/test_cli_analysis.py
(test_every_bad_prediction_file_exits_2_and_writes_nothing, over tests/data/bad_predictions).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from modelupdate.checkpoint import load_checkpoint, save_ensemble
from modelupdate.cli import app
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.models import build_model

# The CLI's default data: synthetic, 4 classes, 1x12x12, mean 0.5, std 0.25. Tiny runs on 128 samples.
FAST = ["--arch", "tiny", "--epochs", "1", "--batch-size", "64", "--train-subset", "128", "--device", "cpu",
        "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, stderr: str, *fragments: str) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, write_unchecked) -> dict[str, Path]:
    """A good tiny checkpoint on the CLI's default synthetic data, and bad variants of it."""
    from modelupdate.workflows.train import train

    d = tmp_path_factory.mktemp("ckpts")
    good = d / "good.safetensors"
    train(DataConfig(train_subset="128"), TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu"), good)
    loaded = load_checkpoint(good)
    meta, data = loaded.meta, good.read_bytes()
    paths = {"good": good}

    def variant(name: str, model=None, **changes) -> None:
        paths[name] = d / f"{name}.safetensors"
        write_unchecked(paths[name], model or loaded.model, dataclasses.replace(meta, **changes))

    torch.manual_seed(0)
    variant("three_classes", build_model("tiny", 3, meta.input_shape), classes=["class0", "class1", "class2"])
    variant("renamed_class", classes=["class0", "class1", "cat", "class3"])
    variant("other_shape", build_model("tiny", 4, (1, 8, 8)), input_shape=(1, 8, 8))
    variant("other_normalisation", normalization={"mean": [0.4], "std": [0.25]})
    variant("weights_disagree", classes=["class0", "class1", "class2"])  # 4-class weights, 3 classes in metadata
    paths["three_class_ensemble"] = d / "three_class_ensemble.safetensors"
    three = load_checkpoint(paths["three_classes"])
    save_ensemble(paths["three_class_ensemble"], [three.model, load_checkpoint(paths["three_classes"]).model],
                  dataclasses.replace(three.meta, member_seeds=[0, 1]))
    paths["truncated"] = d / "truncated.safetensors"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["corrupted"] = d / "corrupted.safetensors"
    paths["corrupted"].write_bytes(data[:8] + b"\x00\xff" * 20 + data[48:])  # header JSON overwritten
    paths["foreign"] = d / "foreign.safetensors"  # e.g. written by another tool: weights, no metadata
    save_file({k: v.contiguous() for k, v in loaded.model.state_dict().items()}, str(paths["foreign"]))
    for suffix in (".pt", ".pth"):
        paths[f"pickle{suffix}"] = d / f"model{suffix}"
        torch.save(loaded.model.state_dict(), paths[f"pickle{suffix}"])
    paths["pickle_named_safetensors"] = d / "renamed_pickle.safetensors"
    shutil.copy(paths["pickle.pt"], paths["pickle_named_safetensors"])
    return paths


@pytest.fixture
def out_dir(tmp_path, ckpts) -> Path:
    """A folder holding an earlier model at the --out path (it must survive a failed run unchanged)."""
    d = tmp_path / "out"
    d.mkdir()
    shutil.copy(ckpts["good"], d / "new.safetensors")
    os.utime(d / "new.safetensors", ns=(1_000_000_000, 1_000_000_000))
    return d


BAD_OLD = [
    ("truncated", ["truncated.safetensors", "truncated or not a safetensors file"]),
    ("corrupted", ["corrupted.safetensors", "not a safetensors file"]),
    ("foreign", ["foreign.safetensors", "not a modelupdate checkpoint (metadata lacks format, arch"]),
    ("pickle.pt", ["model.pt", "pickle", "never unpickles", "safetensors.torch.save_file"]),
    ("pickle.pth", ["model.pth", "pickle", "never unpickles"]),
    ("pickle_named_safetensors", ["renamed_pickle.safetensors", "pickle"]),
    ("three_classes", ["--old", "three_classes.safetensors", "has 3 classes but --data synthetic has 4"]),
    ("renamed_class", ["--old", "class names differ", "class 2 is 'cat' vs 'class2'"]),
    ("weights_disagree", ["weights_disagree.safetensors", "weights do not fit architecture 'tiny' with 3 classes",
                          "size mismatch for head"]),
]


@pytest.mark.parametrize("name, fragments", BAD_OLD, ids=[b[0] for b in BAD_OLD])
def test_bad_old_checkpoint_for_ldi_train(ckpts, out_dir, name, fragments):
    before = snapshot(out_dir)
    code, _, err = invoke("ldi-train", "--method", "ldi-old", "--old", ckpts[name], "--out",
                          out_dir / "new.safetensors", *FAST)
    one_line_error(code, err, *fragments)
    assert snapshot(out_dir) == before, "the earlier --out is unchanged and nothing else was written"


def test_reference_with_other_classes_than_the_data(ckpts, out_dir):
    before = snapshot(out_dir)
    code, _, err = invoke("ldi-train", "--method", "elodi", "--old", ckpts["good"], "--reference",
                          ckpts["three_class_ensemble"], "--out", out_dir / "new.safetensors", *FAST)
    one_line_error(code, err, "--reference", "three_class_ensemble.safetensors", "has 3 classes",
                   "--data synthetic has 4")
    assert snapshot(out_dir) == before


@pytest.mark.parametrize("name, fragments", [
    ("truncated", ["truncated.safetensors", "truncated or not a safetensors file"]),
    ("foreign", ["not a modelupdate checkpoint"]),
    ("pickle.pth", ["pickle"]),
    ("three_classes", ["has 3 classes but --data synthetic has 4"]),
], ids=["truncated", "foreign", "pickle.pth", "three_classes"])
def test_bad_checkpoint_for_predict(ckpts, tmp_path, name, fragments):
    out = tmp_path / "p.npz"
    code, _, err = invoke("predict", ckpts[name], "--data", "synthetic", "--out", out, "--device", "cpu")
    one_line_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback_in_a_subprocess(run_cli, ckpts, tmp_path):
    args = ["ldi-train", "--method", "ldi-old", "--old", ckpts["three_classes"], "--out",
            tmp_path / "new.safetensors", *FAST]
    code, out, err = run_cli(*args)
    one_line_error(code, err, "has 3 classes")
    code, out, err = run_cli("--debug", *args)
    assert code == 1 and "Traceback" in err and "MismatchError" in err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- data


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    code, _, err = invoke("train", "--data", "imagenet", "--out", tmp_path / "m.safetensors", *FAST)
    one_line_error(code, err, "--data", "unknown dataset 'imagenet'", "fashion-mnist", "synthetic",
                   "imagefolder:PATH")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["ensemble-train", "-m", "2"], ["ldi-train", "--method", "ce"]],
                         ids=["ensemble-train", "ldi-train"])
def test_unknown_architecture_lists_the_known_ones_and_writes_nothing(tmp_path, command):
    """ensemble-train once left an empty members folder behind, which then demanded --resume."""
    code, _, err = invoke(*command, "--out", tmp_path / "m.safetensors", *FAST, "--arch", "resnet9000")
    one_line_error(code, err, "--arch", "'resnet9000'", "cnn-s", "tiny", "package.module:factory")
    assert list(tmp_path.iterdir()) == []


def test_bad_arch_args_name_the_option(tmp_path):
    code, _, err = invoke("train", "--out", tmp_path / "m.safetensors", *FAST, "--arch-args", '{"depth": 3}')
    one_line_error(code, err, "--arch-args", "tiny takes no argument 'depth'", "it takes width")
    assert list(tmp_path.iterdir()) == []


def test_imagefolder_with_empty_folders(tmp_path):
    root = tmp_path / "images"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = invoke("train", "--data", f"imagefolder:{root}", "--out", out / "m.safetensors", *FAST)
    one_line_error(code, err, f"imagefolder:{root}", "class folder", f"expected {root / 'train'}/<class>/")
    (root / "train" / "cat").mkdir()
    (root / "test" / "cat").mkdir()
    code, _, err = invoke("train", "--data", f"imagefolder:{root}", "--out", out / "m.safetensors", *FAST)
    one_line_error(code, err, f"imagefolder:{root}", "no valid file for the classes cat", ".png")
    assert list(out.iterdir()) == []


def test_val_fraction_that_leaves_no_training_samples(tmp_path):
    code, _, err = invoke("train", "--out", tmp_path / "m.safetensors", *FAST, "--val-fraction", "0.9999")
    one_line_error(code, err, "--val-fraction 0.9999", "leaves none of the 2048 training samples",
                   "expected a smaller fraction")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_validation_split_still_trains_and_an_empty_split_cannot_be_predicted(tmp_path):
    code, _, err = invoke("train", "--out", tmp_path / "m.safetensors", *FAST, "--val-fraction", "0")
    assert code == 0, err
    meta = load_checkpoint(tmp_path / "m.safetensors").meta
    assert meta.metrics["val_error_rate"] is None and meta.metrics["test_n"] == 256
    code, _, err = invoke("predict", tmp_path / "m.safetensors", "--data", "synthetic", "--split", "val",
                          "--val-fraction", "0", "--out", tmp_path / "p.npz", "--device", "cpu")
    one_line_error(code, err, "val split is empty")
    assert not (tmp_path / "p.npz").exists()


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("where, fragments", [
    ("missing/m.safetensors", ["missing", "does not exist"]),
    ("a_file/m.safetensors", ["a_file is a file, not a folder"]),
    ("/proc/m.safetensors", ["/proc is not writable"]),  # root ignores permission bits; /proc refuses files
    ("a_folder.safetensors", ["is a folder; expected a regular file path"]),
    ("m.pt", ["expected a path ending in .safetensors"]),
], ids=["missing-folder", "under-a-file", "proc", "a-folder", "not-safetensors"])
@pytest.mark.parametrize("command", [["train"], ["ensemble-train", "-m", "2"], ["ldi-train", "--method", "ce"]],
                         ids=["train", "ensemble-train", "ldi-train"])
def test_output_path_that_cannot_be_written(tmp_path, where, fragments, command):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_folder.safetensors").mkdir()
    before = snapshot(tmp_path)
    out = where if where.startswith("/") else tmp_path / where
    code, _, err = invoke(*command, "--out", out, *FAST)
    one_line_error(code, err, "--out", *fragments)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- resumable state


@pytest.mark.parametrize("damage, fragments", [
    ("truncated", ["m.state.safetensors", "truncated or not a safetensors file"]),
    ("other_arch", ["m.state.safetensors", "saved state does not fit this model", "(and ",
                    "was the command changed since the run started?"]),
    ("a_model", ["m.state.safetensors", "not a modelupdate training state"]),
], ids=["truncated", "other-arch", "a-model-checkpoint"])
def test_resume_from_a_damaged_or_foreign_state(tmp_path, ckpts, damage, fragments):
    from modelupdate.engine import make_optimizer
    from modelupdate.train_state import save_train_state

    state = tmp_path / "m.state.safetensors"
    torch.manual_seed(0)
    model = build_model("cnn-s", 4, (1, 12, 12))
    save_train_state(state, model, make_optimizer(model, TrainConfig()), {"epoch": 0, "step": 3})
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:100])
    elif damage == "a_model":
        shutil.copy(ckpts["good"], state)
    before = snapshot(tmp_path)
    code, _, err = invoke("train", "--out", tmp_path / "m.safetensors", *FAST, "--resume")
    one_line_error(code, err, *fragments)
    assert snapshot(tmp_path) == before, "the state is kept as it was"
