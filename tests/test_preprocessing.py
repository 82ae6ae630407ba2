"""Each model of an update keeps its own preprocessing (data/transforms.py): in ldi-train the student
trains on its own view; the reference (or the old model it is held against) sees that same augmented view,
resized and normalised its own way; the old model's flips are measured on the clean images through its
own evaluation transform. Checked against tensors computed here by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from modelupdate.checkpoint import load_checkpoint, save_ensemble, save_model
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import load_dataset
from modelupdate.data.transforms import SeenThrough
from modelupdate.methods import UpdateConfig
from modelupdate.models import build_model
from modelupdate.workflows import ldi_train as workflow
from modelupdate.workflows.common import model_meta

STUDENT_DATA = DataConfig(name="synthetic", train_subset="128", mean="0.5", std="0.25")  # 12 px
OTHER_NORM = {"mean": [0.3], "std": [0.2]}


def normalised(pixels: torch.Tensor, norm: dict) -> torch.Tensor:
    return (pixels - torch.tensor(norm["mean"]).view(1, -1, 1, 1)) / torch.tensor(norm["std"]).view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """An old model and a 2-member reference at 8 px with their own normalisation (untrained weights)."""
    folder = tmp_path_factory.mktemp("preprocessing")
    info = load_dataset(STUDENT_DATA).info
    cfg = TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu")
    meta = dataclasses.replace(model_meta(info, STUDENT_DATA, cfg, {}), input_shape=(1, 8, 8),
                               normalization=OTHER_NORM, eval_transform={"crop_pct": 1.0, "interpolation": "bilinear"})
    torch.manual_seed(0)
    save_model(folder / "old.safetensors", build_model("tiny", 4, (1, 8, 8)), meta)
    ref = dataclasses.replace(meta, format="modelupdate-ensemble/1", member_seeds=[1, 2], member_metrics=[{}, {}])
    save_ensemble(folder / "ref.safetensors", [build_model("tiny", 4, (1, 8, 8)) for _ in range(2)], ref)
    return {"old": folder / "old.safetensors", "ref": folder / "ref.safetensors"}


def test_the_reference_sees_the_students_augmented_view_resized_and_normalised_its_way(tmp_path, models, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = SeenThrough.forward

    def recording(self, x):
        seen.append((x.detach().clone(), self.transform.adapt(x, self.view).detach().clone()))
        return forward(self, x)

    monkeypatch.setattr(SeenThrough, "forward", recording)
    workflow.ldi_train(STUDENT_DATA, TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu"),
                       UpdateConfig(method="elodi"), tmp_path / "new.safetensors", reference=models["ref"])
    assert seen, "the reference ran on the training batches"
    for view, adapted in seen:
        assert view.shape[-2:] == (12, 12)  # the student's view, at the student's size
        pixels = view * 0.25 + 0.5  # undo the student's normalisation, by hand
        expected = normalised(TF.resize(pixels, [8, 8], antialias=True), OTHER_NORM)
        assert torch.allclose(adapted, expected, atol=1e-5)


def test_the_old_model_is_measured_on_clean_images_through_its_own_transform(tmp_path, models, monkeypatch):
    real = workflow.load_checkpoint
    inputs: list[torch.Tensor] = []

    def load_and_record(path, *args, **kwargs):
        loaded = real(path, *args, **kwargs)
        if Path(path) == models["old"]:
            loaded.model.register_forward_pre_hook(
                lambda module, args: None if module.training else inputs.append(args[0].detach().clone()))
        return loaded

    monkeypatch.setattr(workflow, "load_checkpoint", load_and_record)
    trained = workflow.ldi_train(STUDENT_DATA, TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu"),
                                 UpdateConfig(method="ce"), tmp_path / "new.safetensors", old=models["old"])
    val = load_dataset(STUDENT_DATA).val
    pixels = TF.resize(val.images, [8, 8], antialias=True).float() / 255  # the clean images, its size
    assert torch.allclose(inputs[0], normalised(pixels, OTHER_NORM), atol=1e-5)
    assert trained.meta.metrics["test_nfr"] is not None
    student = load_checkpoint(tmp_path / "new.safetensors").meta
    assert student.input_shape == (1, 12, 12) and student.normalization == {"mean": [0.5], "std": [0.25]}, \
        "the student keeps its own preprocessing, not the old model's"


def make_folder(root: Path, size: int) -> Path:
    import torchvision

    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                torchvision.io.write_png(torch.full((3, size, size), 40 * i, dtype=torch.uint8),
                                         str(root / split / name / f"{i}.png"))
    return root


def test_images_resized_more_than_twice_their_size_are_said_in_one_warning_line(tmp_path, run_cli):
    folder = make_folder(tmp_path / "images", 16)
    common = ["train", "--data", f"imagefolder:{folder}", "--arch", "tiny", "--epochs", "1", "--device", "cpu",
              "--quiet"]
    rc, _, err = run_cli(*common, "--image-size", "40", "--out", tmp_path / "far.safetensors")
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "about 16 px" in warnings[0] and "40 px (2.5x)" in warnings[0]
    rc, _, err = run_cli(*common, "--image-size", "24", "--out", tmp_path / "near.safetensors")
    assert rc == 0 and "warning" not in err, err


def test_the_evaluation_batch_follows_the_input_size():
    from modelupdate.config import eval_batch_size_for

    assert eval_batch_size_for((1, 28, 28)) == 1024 and eval_batch_size_for((3, 64, 64)) == 1024
    assert eval_batch_size_for((3, 224, 224)) == 64  # 64 x 3 x 224 x 224 <= 1024 x 3 x 64 x 64 < 128 x ...
    assert eval_batch_size_for((3, 1024, 1024)) == 16


def test_a_checkpoint_records_its_evaluation_transform(tmp_path, run_cli):
    from modelupdate.formats import read_meta

    folder = make_folder(tmp_path / "images", 16)
    rc, _, err = run_cli("train", "--data", f"imagefolder:{folder}", "--arch", "tiny", "--epochs", "1", "--device",
                         "cpu", "--quiet", "--image-size", "16", "--resize", "20", "--interpolation", "bicubic",
                         "--out", tmp_path / "m.safetensors")
    assert rc == 0, err
    assert read_meta(tmp_path / "m.safetensors").eval_transform == {"crop_pct": 0.8, "resize": 20,
                                                                    "interpolation": "bicubic"}
    rc, _, err = run_cli("train", "--data", "synthetic", "--resize", "4", "--out", tmp_path / "bad.safetensors")
    assert rc == 2 and "--resize 4" in err and len(err.strip().splitlines()) == 1, err


def test_a_model_held_beside_the_student_stays_in_eval_mode():
    inner = torch.nn.BatchNorm2d(1)
    view = workflow.transform_of(_meta_like((1, 4, 4)))
    seen = SeenThrough(inner, view, view)
    seen.train()
    assert not seen.training and not inner.training


def _meta_like(shape):
    return dataclasses.make_dataclass("Meta", ["input_shape", "normalization", "eval_transform"])(
        shape, {"mean": [0.0], "std": [1.0]}, {})


def test_a_reference_of_another_size_on_the_same_folder_needs_no_other_data_flag(tmp_path, run_cli):
    folder = make_folder(tmp_path / "images", 16)
    common = ["--data", f"imagefolder:{folder}", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--quiet"]
    rc, _, err = run_cli("ensemble-train", *common, "--image-size", "16", "-m", "2",
                         "--out", tmp_path / "ref.safetensors")
    assert rc == 0, err
    rc, _, err = run_cli("ldi-train", *common, "--image-size", "24", "--reference", tmp_path / "ref.safetensors",
                         "--out", tmp_path / "new.safetensors")
    assert rc == 0, err
