"""`modelupdate import` and architectures named as users name them: a model trained in plain PyTorch
becomes a checkpoint that every command accepts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from modelupdate.checkpoint import load_checkpoint
from modelupdate.errors import CheckpointError, ConfigError, UntrustedCodeError
from modelupdate.formats import read_meta
from modelupdate.models import build_model, check_arch_allowed, replace_head, resolve_weights, stored_arch_args
from modelupdate.workflows.model_import import ImportSpec, import_model, strip_prefixes

IMAGENET_MEAN, IMAGENET_STD = "0.485,0.456,0.406", "0.229,0.224,0.225"
CLASSES = ["ant", "bee", "cat"]


def image_folder(root, per_class: int = 4, size: int = 32):
    """train/ and test/ with ``per_class`` random RGB images per class, already ``size`` px square."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in CLASSES:
            (root / split / label).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return root


def resnet_weights(path, seed: int):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=len(CLASSES))
    save_file(model.state_dict(), str(path))
    return model.eval()


def plain_pytorch_predictions(model: nn.Module, folder) -> np.ndarray:
    """What the model predicts on test/, computed without modelupdate: files in ImageFolder's order,
    pixels / 255, ImageNet normalisation."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    files = sorted((folder / "test").glob("*/*.png"), key=lambda p: (p.parent.name, p.name))
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).float() / 255
                     for f in files])
    with torch.inference_mode():
        return model((x - mean) / std).argmax(1).numpy()


def test_resnet18_from_plain_pytorch_imports_and_serves_flip_report(tmp_path, run_cli):
    folder = image_folder(tmp_path / "data")
    old_model = resnet_weights(tmp_path / "old_weights.safetensors", seed=1)
    new_model = resnet_weights(tmp_path / "new_weights.safetensors", seed=2)

    code, out, err = run_cli("import", "--arch", "torchvision.models:resnet18",
                             "--weights", tmp_path / "old_weights.safetensors", "--classes", ",".join(CLASSES),
                             "--input-shape", "3,32,32", "--mean", IMAGENET_MEAN, "--std", IMAGENET_STD,
                             "--out", tmp_path / "old.safetensors")
    assert code == 0, err
    assert f"wrote {tmp_path / 'old.safetensors'}" in out
    code, _, err = run_cli("import", "--arch", "torchvision.models:resnet18",
                           "--weights", tmp_path / "new_weights.safetensors", "--like", tmp_path / "old.safetensors",
                           "--out", tmp_path / "new.safetensors")
    assert code == 0, err

    code, out, err = run_cli("flip-report", "--old", tmp_path / "old.safetensors",
                             "--new", tmp_path / "new.safetensors",
                             "--data", f"imagefolder:{folder}", "--image-size", "32", "--json", "-")
    assert code == 0, err
    report = json.loads(out)
    targets = np.repeat(np.arange(len(CLASSES)), 4)
    old_pred, new_pred = plain_pytorch_predictions(old_model, folder), plain_pytorch_predictions(new_model, folder)
    negative_flips = int(((old_pred == targets) & (new_pred != targets)).sum())
    text = json.dumps(report)
    assert report["counts"]["n"] == len(targets)
    assert report["counts"]["negative_flips"] == negative_flips, text
    assert report["metrics"]["er_new"]["value"] == pytest.approx(float((new_pred != targets).mean()))


def test_imported_checkpoint_records_what_it_was_told(tmp_path):
    resnet_weights(tmp_path / "w.safetensors", seed=0)
    spec = ImportSpec(arch="torchvision.models:resnet18", weights=tmp_path / "w.safetensors", classes=CLASSES,
                      input_shape=(3, 32, 32), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], dataset="my-data")
    result = import_model(spec, tmp_path / "m.safetensors")
    meta = read_meta(tmp_path / "m.safetensors")
    assert (meta.classes, meta.input_shape, meta.dataset) == (CLASSES, (3, 32, 32), "my-data")
    assert meta.normalization == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert meta.dataset_fingerprint == ""  # unknown training data: ldi-train asks for --allow-other-data
    assert meta.config["import"]["weights_sha256"] == result.weights_sha256
    loaded = load_checkpoint(tmp_path / "m.safetensors")  # rebuilds without --allow-arch-module
    reference = torchvision.models.resnet18(num_classes=3)
    reference.load_state_dict(dict(loaded.model.state_dict()))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.model(x), reference.eval()(x))


def test_pickle_needs_the_explicit_option_and_wrappers_are_removed(tmp_path, run_cli):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pth")
    args = ["import", "--arch", "torchvision.models:resnet18", "--weights", tmp_path / "w.pth", "--classes",
            "a,b,c", "--input-shape", "3,32,32", "--mean", IMAGENET_MEAN, "--std", IMAGENET_STD]
    code, _, err = run_cli(*args, "--out", tmp_path / "refused.safetensors")
    assert code == 2 and "never unpickles" in err and "--unsafe-load-pickle" in err
    assert not (tmp_path / "refused.safetensors").exists()
    code, _, err = run_cli(*args, "--unsafe-load-pickle", "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    assert "torch.load(weights_only=True)" in err
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert torch.equal(loaded.model.fc.weight, model.fc.weight)


@pytest.mark.parametrize("extra, message", [
    (["--arch", "torchvision.models:resnet34"], "missing: layer1.2.conv1.weight"),
    (["--arch", "resnet18", "--input-shape", "3,64,64"], "pass --arch-args '{\"stem\": \"standard\"}'"),
    (["--classes", "a,b"], "wrong shape: fc.weight [3, 512] (model [2, 512])"),
    (["--mean", "0.5,0.5"], "--mean: expected 3 values"),
    (["--std", "0.2,0,0.2"], "--std: expected values > 0"),
    (["--classes", "a,a,b"], "names class 'a' twice"),
    (["--input-shape", "3,32"], "--input-shape: expected C,H,W"),
    (["--arch-args", '{"weights": "DEFAULT"}'], "never downloads"),
])
def test_bad_imports_are_one_line_and_write_nothing(tmp_path, run_cli, extra, message, monkeypatch):
    resnet_weights(tmp_path / "w.safetensors", seed=0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    base = {"--arch": "torchvision.models:resnet18", "--classes": ",".join(CLASSES), "--input-shape": "3,32,32",
            "--mean": IMAGENET_MEAN, "--std": IMAGENET_STD}
    base.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    args = [item for pair in base.items() for item in pair]
    code, out, err = run_cli("import", *args, "--weights", tmp_path / "w.safetensors",
                             "--out", tmp_path / "m.safetensors")
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.safetensors").exists()


def test_a_plain_state_dict_is_pointed_to_import(tmp_path, run_cli):
    resnet_weights(tmp_path / "w.safetensors", seed=0)
    code, _, err = run_cli("info", tmp_path / "w.safetensors")
    assert code == 2 and "modelupdate import" in err


def test_strip_prefixes_removes_ddp_and_compile_prefixes(tmp_path):
    t = torch.zeros(1)
    assert strip_prefixes({"module._orig_mod.fc.weight": t}, tmp_path) == {"fc.weight": t}
    assert strip_prefixes({"module.a": t, "b": t}, tmp_path) == {"module.a": t, "b": t}  # not every key: kept


# --------------------------------------------------------------------------- architectures


def test_torchvision_builder_takes_its_own_arguments():
    model = build_model("torchvision.models:resnet18", 7, (3, 64, 64), {"zero_init_residual": True})
    assert model.fc.out_features == 7
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0  # zero_init_residual reached torchvision
    assert isinstance(model.maxpool, nn.MaxPool2d)  # torchvision's own stem: no small-input adaptation


def test_registered_resnet_stem_is_an_option():
    assert isinstance(build_model("resnet18", 4, (3, 32, 32)).maxpool, nn.Identity)
    standard = build_model("resnet18", 4, (3, 32, 32), {"stem": "standard"})
    assert isinstance(standard.maxpool, nn.MaxPool2d) and standard.conv1.kernel_size == (7, 7)
    with pytest.raises(ConfigError, match="stem must be one of"):
        build_model("resnet18", 4, (3, 32, 32), {"stem": "tiny"})


def test_torchvision_builders_are_trusted_other_code_is_not():
    check_arch_allowed("torchvision.models:resnet18", "checkpoint x")
    with pytest.raises(UntrustedCodeError):
        check_arch_allowed("torchvision.models:load_state_dict_from_url", "checkpoint x")
    with pytest.raises(UntrustedCodeError):
        check_arch_allowed("os:system", "checkpoint x")


def test_weights_are_looked_up_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"resnet18-f37072fd\.pth"):
        resolve_weights("resnet18", "DEFAULT")
    with pytest.raises(ConfigError, match="unknown for resnet18; it has DEFAULT, IMAGENET1K_V1"):
        resolve_weights("resnet18", "IMAGENET1K_V9")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert resolve_weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1").name == "IMAGENET1K_V1"


def test_replace_head_gives_the_last_linear_layer_new_outputs():
    model = torchvision.models.mobilenet_v3_small(num_classes=1000)
    replace_head(model, 5)
    assert model.classifier[-1].out_features == 5 and model.classifier[0].out_features == 1024
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_init_only_arguments_are_not_stored_but_the_stem_they_chose_is():
    assert stored_arch_args("torchvision.models:resnet18", {"weights": "DEFAULT", "progress": False}) == \
        {"progress": False}
    assert stored_arch_args("resnet18", {"weights": "DEFAULT"}) == {"stem": "standard"}
    assert stored_arch_args("resnet18", {"weights": "DEFAULT", "stem": "small"}) == {"stem": "small"}
    assert stored_arch_args("resnet18", {}) == {}


def test_a_model_trained_from_pretrained_weights_loads_again(tmp_path, monkeypatch, tiny_data_config,
                                                             tiny_train_config):
    """The cache holds a (here: random) resnet18 file under torchvision's name; the checkpoint trained from
    it must rebuild without it."""
    from modelupdate.workflows.train import train

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "torch/hub/checkpoints/resnet18-f37072fd.pth")
    cfg = tiny_train_config(arch="resnet18", arch_args={"weights": "DEFAULT"}, epochs=1)
    train(tiny_data_config(train_subset="64"), cfg, tmp_path / "m.safetensors")
    assert read_meta(tmp_path / "m.safetensors").arch_args == {"stem": "standard"}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    loaded = load_checkpoint(tmp_path / "m.safetensors")  # no weight file needed now
    assert isinstance(loaded.model.maxpool, nn.MaxPool2d)


def test_a_model_that_cannot_take_the_data_fails_before_training(tmp_path, run_cli):
    code, _, err = run_cli("train", "--data", "synthetic", "--arch", "torchvision.models:resnet18", "--epochs", "1",
                           "--device", "cpu", "--quiet", "--out", tmp_path / "m.safetensors")
    assert code == 2 and "cannot run on inputs of shape [1, 12, 12]" in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())
    code, _, err = run_cli("train", "--data", "synthetic", "--out", tmp_path / "m.safetensors",
                           "--arch", "torchvision.models.detection:fasterrcnn_resnet50_fpn")
    assert code == 2 and "not one of torchvision's classification builders" in err


def test_training_mode_outputs_that_are_not_logits_are_refused():
    from modelupdate.models import check_forward

    class Aux(nn.Module):  # like torchvision's GoogLeNet: a named tuple of outputs in training mode
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            logits = self.fc(x.flatten(1))
            return (logits, logits) if self.training else logits

    model = Aux().eval()
    with pytest.raises(ConfigError, match=r"gives tuple for 2 inputs in training mode"):
        check_forward(model, (1, 2, 2), 3, "aux")
    assert not model.training  # its mode restored
    check_forward(model, (1, 2, 2), 3, "aux", modes=("eval",))


def test_import_refuses_unsafe_flag_on_safetensors(tmp_path):
    resnet_weights(tmp_path / "w.safetensors", seed=0)
    spec = ImportSpec(arch="torchvision.models:resnet18", weights=tmp_path / "w.safetensors", classes=CLASSES,
                      input_shape=(3, 32, 32), mean=[0.5] * 3, std=[0.2] * 3, unsafe_load_pickle=True)
    with pytest.raises(ConfigError, match="need no such option"):
        import_model(spec, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="file not found"):
        import_model(ImportSpec(**{**spec.__dict__, "weights": tmp_path / "nope.pth"}), tmp_path / "m.safetensors")


def test_the_written_path_stays_on_one_line_in_a_narrow_terminal(tmp_path):
    import os
    import subprocess
    import sys

    resnet_weights(tmp_path / "w.safetensors", seed=0)
    out = tmp_path / ("a-long-folder-name-" * 3) / "imported-model.safetensors"
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "modelupdate", "import", "--arch", "torchvision.models:resnet18",
                           "--weights", str(tmp_path / "w.safetensors"), "--classes", ",".join(CLASSES),
                           "--input-shape", "3,32,32", "--mean", IMAGENET_MEAN, "--std", IMAGENET_STD,
                           "--out", str(out)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout.splitlines()


def test_an_npz_where_a_checkpoint_is_expected_is_named_as_such(tmp_path, run_cli):
    np.savez(tmp_path / "preds.npz", ids=np.arange(3), targets=np.zeros(3, int), preds=np.zeros(3, int))
    code, _, err = run_cli("info", tmp_path / "preds.npz")
    assert code == 2 and "is a numpy .npz archive (a prediction file?)" in err and "pickle" not in err
