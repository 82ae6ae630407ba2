"""An image folder's normalisation: measured once on its training images (cached with the listing), or given."""

from __future__ import annotations

import pytest
from PIL import Image

from modelupdate.config import DataConfig
from modelupdate.data import folders, load_dataset
from modelupdate.errors import ConfigError, DataError

# per class: the colour of every image of it (train and test)
COLOURS = {"a": (255, 0, 0), "b": (0, 0, 255)}


def flat_folder(root, per_class: int = 2):
    for split in ("train", "test"):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), colour).save(root / split / name / f"{i}.png")
    return root


def test_statistics_by_hand_and_cached(tmp_path, monkeypatch):
    root = flat_folder(tmp_path / "d")
    info = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, val_fraction=0.0,
                                   cache_dir=str(tmp_path / "cache"))).info
    # R is 1 on half the pixels, 0 on the rest: mean 0.5, std 0.5; G is 0 everywhere (std floored at 1e-3)
    assert info.mean == (0.5, 0.0, 0.5) and info.std == (0.5, 0.001, 0.5)
    decoded = []
    monkeypatch.setattr(folders, "read_square", lambda *a: decoded.append(a) or None)
    assert folders.folder_stats(root, ["a", "b"], 8, tmp_path / "cache") == (info.mean, info.std)
    assert decoded == []  # from the cache, no image read
    (root / "train" / "a" / "9.png").write_bytes(b"")  # the listing changes: measured again
    with pytest.raises(AttributeError):  # the stub decoder was called (and returns nothing)
        folders.folder_stats(root, ["a", "b"], 8, tmp_path / "cache")
    assert decoded


def test_the_sample_is_seeded_and_bounded():
    assert folders.stats_sample(5) == [0, 1, 2, 3, 4]
    sample = folders.stats_sample(10_000, sample=100)
    assert len(sample) == 100 and sample == sorted(sample) and sample == folders.stats_sample(10_000, sample=100)


def test_given_normalisation_wins_and_is_recorded(tmp_path, run_cli):
    root = flat_folder(tmp_path / "d")
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "--data", f"imagefolder:{root}", "--image-size", "8", "--arch", "tiny",
                           "--epochs", "1", "--device", "cpu", "--quiet", "--val-fraction", "0",
                           "--mean", "0.4,0.4,0.4", "--std", "0.2,0.2,0.2", "--out", out)
    assert code == 0, err
    from modelupdate.formats import read_meta

    assert read_meta(out).normalization == {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}
    # evaluated with the checkpoint's own normalisation, not the folder's measured one
    code, _, err = run_cli("predict", out, "--data", f"imagefolder:{root}", "--out", tmp_path / "p.npz")
    assert code == 0, err


def test_bad_normalisation_options(tmp_path):
    with pytest.raises(ConfigError, match="give both or neither"):
        DataConfig(mean="0.5")
    with pytest.raises(ConfigError, match="--std: expected finite values > 0"):
        DataConfig(mean="0.5", std="0")
    with pytest.raises(DataError, match="--mean: synthetic has 1 channel"):
        load_dataset(DataConfig(mean="0.5,0.5,0.5", std="0.2,0.2,0.2", synthetic_train=16, synthetic_test=8))
