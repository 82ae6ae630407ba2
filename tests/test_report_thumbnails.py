"""The HTML flip report shows the negative flips as images: a built-in dataset's from its split, an image folder's
read from disk; none without --data."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from torchvision.io import decode_image, decode_png, write_png
from torchvision.transforms.v2 import functional as F

from modelupdate.analysis import MAX_THUMBNAILS, THUMBNAIL_SIZE, flip_report
from modelupdate.config import DataConfig
from modelupdate.data import load_dataset
from modelupdate.predictions import Predictions, write_predictions
from modelupdate.report import flip_report_html
from modelupdate.workflows.flip_report import flip_images

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" width="96" height="96" alt="([^"]*)">')


def thumbnails(page: str) -> list[tuple[str, torch.Tensor]]:
    """(alt text: the sample id, decoded uint8 [C, H, W]) of every image on the page, in order; every src of
    the page is such a data: URI, so it stays self-contained."""
    assert re.findall(r'src="([^"]{0,22})', page) == ["data:image/png;base64,"] * len(IMG.findall(page))
    return [(sample_id, decode_png(torch.frombuffer(bytearray(base64.b64decode(data)), dtype=torch.uint8)))
            for data, sample_id in IMG.findall(page)]


# --------------------------------------------------------------------------- built-in data, through the CLI


@pytest.fixture(scope="module")
def two_models(tiny_train_config, tmp_path_factory):
    """Two tiny models (seeds 0, 1) on the default synthetic data (what `--data synthetic` is)."""
    from modelupdate.workflows.train import train

    folder = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        path = folder / f"m{seed}.safetensors"
        train(DataConfig(name="synthetic", train_subset="256"), tiny_train_config(seed=seed), path)
        paths.append(path)
    return paths


def test_builtin_dataset_flips_are_shown_from_the_split(run_cli, two_models, tmp_path):
    old, new = two_models
    rc, _, stderr = run_cli("flip-report", "--data", "synthetic", "--device", "cpu", "--old", old, "--new", new,
                            "--html", tmp_path / "r.html", "--json", tmp_path / "r.json",
                            "--flips-csv", tmp_path / "f.csv")
    assert rc == 0, stderr
    flips = int(json.loads((tmp_path / "r.json").read_text())["counts"]["negative_flips"])
    assert flips > 0
    negative_ids = [line.split(",")[0] for line in (tmp_path / "f.csv").read_text().splitlines()[1:]
                    if line.endswith(",negative")]
    page = (tmp_path / "r.html").read_text()
    shown = thumbnails(page)
    assert [i for i, _ in shown] == negative_ids[:MAX_THUMBNAILS]  # the first ones, in file order
    test = load_dataset(DataConfig(name="synthetic")).test
    position = {int(i): p for p, i in enumerate(test.ids.tolist())}
    for sample_id, image in shown:
        assert torch.equal(image, test.images[position[int(sample_id)]])  # the split's uint8 image, as it is
    assert "images from synthetic, test split" in page
    assert re.search(r"margin -?\d+\.\d\d → -?\d+\.\d\d", page)  # each model's top-1 margin on the sample


def test_no_images_without_data(run_cli, two_models, tmp_path):
    from modelupdate.workflows.inputs import predictions_from_checkpoint

    files = []
    for path in two_models:
        out = tmp_path / f"{path.stem}.npz"
        write_predictions(out, predictions_from_checkpoint(path, DataConfig(name="synthetic"), device="cpu"))
        files.append(out)
    rc, _, stderr = run_cli("flip-report", "--old", files[0], "--new", files[1], "--html", tmp_path / "r.html")
    assert rc == 0, stderr
    page = (tmp_path / "r.html").read_text()
    assert "<img" not in page
    assert "<p>No images of the flipped samples: pass --data (the dataset the predictions are on) to see them.</p>" \
        in page


# --------------------------------------------------------------------------- an image folder, from disk


def image_folder(root, rng) -> list[str]:
    """root/test/{cat,dog}/<i>.png: random RGB images, not square; returns their names under root."""
    names = []
    for cls in ("cat", "dog"):
        (root / "train" / cls).mkdir(parents=True)
        write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(root / "train" / cls / "0.png"))
        (root / "test" / cls).mkdir(parents=True)
        for i in range(3):
            h, w = (40, 70) if i % 2 else (130, 50)  # smaller and larger than the thumbnail, both ways round
            image = torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8))
            write_png(image, str(root / "test" / cls / f"{i}.png"))
            names.append(f"test/{cls}/{i}.png")
    return names


def test_image_folder_flips_are_read_from_disk(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    names = image_folder(root, rng)
    write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(tmp_path / "outside.png"))
    ids = np.array([*names, "../outside.png"])  # an id from a prediction file must not read outside the folder
    targets = np.array([0, 0, 0, 1, 1, 1, 0])
    old_logits = np.eye(2, dtype=np.float32)[targets] * 3
    new_logits = old_logits.copy()
    wrong = [0, 3, 4, 6]  # negative flips: test/cat/0.png, test/dog/0.png, test/dog/1.png, ../outside.png
    new_logits[wrong] = np.eye(2, dtype=np.float32)[1 - targets[wrong]] * 2
    old = Predictions.from_arrays(ids, targets, logits=old_logits, classes=["cat", "dog"])
    new = Predictions.from_arrays(ids, targets, logits=new_logits, classes=["cat", "dog"])
    report = flip_report(old, new)
    images = flip_images(report, DataConfig(name=f"imagefolder:{root}"), "test")
    assert images.source == f"imagefolder:{root}, test split"
    page = flip_report_html(dataclasses.replace(report, images=images))

    shown = thumbnails(page)
    assert [i for i, _ in shown] == ["test/cat/0.png", "test/dog/0.png", "test/dog/1.png"]
    for sample_id, image in shown:
        # as documented: the file's centred square, resized to THUMBNAIL_SIZE px (bilinear, antialiased)
        source = decode_image(str(root / sample_id))
        side = min(source.shape[-2:])
        expected = F.resize(F.center_crop(source, [side, side]), [THUMBNAIL_SIZE, THUMBNAIL_SIZE], antialias=True)
        assert image.shape == (3, THUMBNAIL_SIZE, THUMBNAIL_SIZE) and torch.equal(image, expected)
    assert page.count('class="noimg"') == 1  # ../outside.png: a card saying so, no image
    assert "cat → dog" in page and "margin 3.00 → 2.00" in page  # classes by name, each model's margin


def test_at_most_max_thumbnails(tmp_path):
    n = 3 * MAX_THUMBNAILS
    targets = np.zeros(n, dtype=np.int64)
    old = Predictions.from_arrays(np.arange(n), targets, preds=np.zeros(n, dtype=np.int64), num_classes=2)
    new = Predictions.from_arrays(np.arange(n), targets, preds=np.ones(n, dtype=np.int64), num_classes=2)
    report = flip_report(old, new)
    cfg = DataConfig(name="synthetic", synthetic_test=n, synthetic_train=16, synthetic_size=8)
    page = flip_report_html(dataclasses.replace(report, images=flip_images(report, cfg, "test")))
    assert len(thumbnails(page)) == MAX_THUMBNAILS
    assert f"The first {MAX_THUMBNAILS} of {n} negative flips in file order" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless chromium here")
def test_thumbnails_render_in_headless_chromium(tmp_path):
    from PIL import Image

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            magenta = torch.tensor([255, 0, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 20, 20).contiguous()
            write_png(magenta, str(root / split / cls / "0.png"))
    ids, targets = np.array(["test/cat/0.png", "test/dog/0.png"]), np.array([0, 1])
    old = Predictions.from_arrays(ids, targets, preds=np.array([0, 1]), classes=["cat", "dog"])
    new = Predictions.from_arrays(ids, targets, preds=np.array([1, 1]), classes=["cat", "dog"])
    report = flip_report(old, new)
    page = tmp_path / "r.html"
    page.write_text(flip_report_html(dataclasses.replace(
        report, images=flip_images(report, DataConfig(name=f"imagefolder:{root}"), "test"))), encoding="utf-8")
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", f"--screenshot={shot}", "--window-size=1180,2400", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert "Failed to load resource" not in done.stderr and "Uncaught" not in done.stderr
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    magenta_pixels = int(np.all(pixels == [255, 0, 255], axis=1).sum())
    assert magenta_pixels >= 0.9 * THUMBNAIL_SIZE ** 2  # the one flipped image, drawn at 96 x 96 px
