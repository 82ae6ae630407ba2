"""Image-folder layouts: train/ + test/, train/ + val/ (torchvision's ImageNet layout), train/ + val/ + test/.

A val/ folder is the validation split (``--split val`` reads it; train/ is not split); without one the
held-out share of train/ is, as before. Without test/, ``--split test`` is one line naming the missing
folder, and every command still runs on train/ and val/. The listing cache goes to the user cache folder
(or ``--cache-dir``), never into the data folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelupdate.config import DataConfig
from modelupdate.data import load_dataset
from modelupdate.errors import DataError

FAST = ("--image-size", "8", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--quiet", "--batch-size", "8")
COLOURS = {"cat": (200, 40, 40), "dog": (40, 40, 200)}


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    """PATH/<split>/<class>/<i>.png, ``counts[split]`` images per class."""
    for split, n in counts.items():
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (9 + i % 3, 9), colour).save(root / split / name / f"{i}.png")
    return root


def tree(root: Path) -> list[tuple[str, int]]:
    """Every path under ``root`` with its size (folders: 0)."""
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size if p.is_file() else 0) for p in root.rglob("*"))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The user cache folder of this test (subprocesses inherit it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "modelupdate"


def one_line_error(code: int, err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for part in parts:
        assert part in lines[0], (part, lines[0])


def predicted_ids(run_cli, model: Path, root: Path, out: Path, *split: str) -> list[str]:
    code, _, err = run_cli("predict", model, "--data", f"imagefolder:{root}", "--device", "cpu", *split, "--out", out)
    assert code == 0, err
    return [str(i) for i in np.load(out)["ids"].tolist()]


def test_a_val_folder_is_what_split_val_reads(tmp_path, run_cli):
    root = image_folder(tmp_path / "d", {"train": 6, "val": 2, "test": 3})
    data = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8))
    assert sorted(data.val.sample_ids()) == sorted(f"val/{c}/{i}.png" for c in COLOURS for i in range(2))
    assert len(data.train) == 12 and len(data.test) == 6  # train/ whole: nothing of it held out
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "--data", f"imagefolder:{root}", *FAST, "--out", model)
    assert code == 0, err
    ids = predicted_ids(run_cli, model, root, tmp_path / "val.npz", "--split", "val")
    assert sorted(ids) == sorted(f"val/{c}/{i}.png" for c in COLOURS for i in range(2))


def test_without_a_val_folder_split_val_is_the_held_out_share_of_train(tmp_path):
    root = image_folder(tmp_path / "d", {"train": 10, "test": 2})
    data = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, val_fraction=0.2))
    assert len(data.val) == 4 and len(data.train) == 16
    assert all(name.startswith("train/") for name in data.val.sample_ids())


def test_val_fraction_with_a_val_folder_is_refused_not_ignored(tmp_path, run_cli):
    root = image_folder(tmp_path / "d", {"train": 3, "val": 2})
    with pytest.raises(DataError, match=r"--val-fraction 0\.3: imagefolder:.* has a val/ folder"):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, val_fraction=0.3))
    code, _, err = run_cli("train", "--data", f"imagefolder:{root}", *FAST, "--val-fraction", "0",
                           "--out", tmp_path / "m.safetensors")
    one_line_error(code, err, "--val-fraction 0.0", "has a val/ folder")


def test_train_and_val_without_test_trains_and_predicts(tmp_path, run_cli):
    root = image_folder(tmp_path / "d", {"train": 4, "val": 2})
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    code, out, err = run_cli("train", "--data", f"imagefolder:{root}", *FAST, "--out", old)
    assert code == 0, err
    assert "val error rate" in out
    code, _, err = run_cli("ldi-train", "--data", f"imagefolder:{root}", *FAST, "--method", "ce", "--old", old,
                           "--seed", "1", "--out", new)
    assert code == 0, err
    ids = predicted_ids(run_cli, new, root, tmp_path / "val.npz", "--split", "val")
    assert sorted(ids) == sorted(f"val/{c}/{i}.png" for c in COLOURS for i in range(2))
    code, _, err = run_cli("flip-report", "--old", old, "--new", new, "--data", f"imagefolder:{root}",
                           "--split", "val", "--device", "cpu", "--json", tmp_path / "r.json")
    assert code == 0, err
    # the default split is test: one line naming the missing folder and the way out, nothing written
    code, _, err = run_cli("predict", new, "--data", f"imagefolder:{root}", "--device", "cpu",
                           "--out", tmp_path / "test.npz")
    one_line_error(code, err, "--split test", "has no test/ folder", "--split val", str(root / "test"))
    assert not (tmp_path / "test.npz").exists()


def test_ensemble_train_on_train_and_val_only(tmp_path, run_cli):
    root = image_folder(tmp_path / "d", {"train": 4, "val": 2})
    code, _, err = run_cli("ensemble-train", "--data", f"imagefolder:{root}", *FAST, "--members", "2",
                           "--out", tmp_path / "ref.safetensors")
    assert code == 0, err


def test_nothing_is_written_into_the_data_folder(tmp_path, run_cli, own_cache):
    root = image_folder(tmp_path / "d", {"train": 4, "val": 2, "test": 2})
    before = tree(root)
    code, _, err = run_cli("train", "--data", f"imagefolder:{root}", *FAST, "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    assert tree(root) == before
    assert len(list((own_cache / "imagefolder").glob("*.json"))) == 1  # the listing went to the user cache
    code, _, err = run_cli("predict", tmp_path / "m.safetensors", "--data", f"imagefolder:{root}", "--device", "cpu",
                           "--cache-dir", tmp_path / "mine", "--out", tmp_path / "p.npz")
    assert code == 0, err
    assert tree(root) == before
    assert len(list((tmp_path / "mine" / "imagefolder").glob("*.json"))) == 1


def test_split_folders_with_other_classes_or_linked_to_each_other_are_refused(tmp_path):
    root = image_folder(tmp_path / "d", {"train": 2, "val": 2})
    (root / "val" / "eel").mkdir()
    with pytest.raises(DataError, match=r"train classes \['cat', 'dog'\] differ from val classes"):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8))
    other = image_folder(tmp_path / "e", {"train": 2})
    (other / "val").symlink_to(other / "train")
    with pytest.raises(DataError, match=r"val and .*train are the same folder"):
        load_dataset(DataConfig(name=f"imagefolder:{other}", image_size=8))


def test_only_a_train_folder_names_what_is_missing(tmp_path):
    root = image_folder(tmp_path / "d", {"train": 2})
    with pytest.raises(DataError, match=r"missing folder .*test \(expected train/ with test/, val/ or both\)"):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8))
