"""modelupdate.data.sources: determinism, splits, subsets, the registry, the IDX reader and loaders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from modelupdate.config import DataConfig
from modelupdate.data.sources import (
    FASHION_CLASSES,
    AugmentSpec,
    Split,
    known_datasets,
    load_dataset,
    parse_subset,
    read_idx,
    split_train_val,
    take_subset,
)
from modelupdate.errors import ConfigError, DataError

# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic(tiny_data_config):
    a, b = load_dataset(tiny_data_config()), load_dataset(tiny_data_config())
    for name in ("train", "val", "test"):
        sa, sb = a.split(name), b.split(name)
        assert torch.equal(sa.images, sb.images)
        assert torch.equal(sa.targets, sb.targets)
        assert torch.equal(sa.ids, sb.ids)
    assert a.info.fingerprint == b.info.fingerprint
    assert a.info.fingerprint.startswith("sha256:") and len(a.info.fingerprint) == len("sha256:") + 16


def test_synthetic_fingerprint_follows_the_data(tiny_data_config):
    base = load_dataset(tiny_data_config()).info.fingerprint
    assert load_dataset(tiny_data_config(synthetic_classes=3)).info.fingerprint != base
    assert load_dataset(tiny_data_config(synthetic_test=65)).info.fingerprint != base
    # The split seed changes the split, not the data: the fingerprint stays.
    assert load_dataset(tiny_data_config(split_seed=5)).info.fingerprint == base


def test_synthetic_shapes_classes_and_balance(tiny_data_config):
    data = load_dataset(tiny_data_config(synthetic_channels=3, synthetic_size=10, synthetic_classes=5))
    info = data.info
    assert info.input_shape == (3, 10, 10)
    assert info.classes == ["class0", "class1", "class2", "class3", "class4"]
    assert info.num_classes == 5
    assert info.normalization == {"mean": [0.5] * 3, "std": [0.25] * 3}
    assert data.test.images.dtype == torch.uint8 and data.test.images.shape == (64, 3, 10, 10)
    # every class equally often (n % k == 0 for train: 256 = 5 * 51 + 1 -> counts 52 or 51)
    counts = torch.bincount(torch.cat([data.train.targets, data.val.targets]), minlength=5)
    assert counts.tolist() == [52, 51, 51, 51, 51]


def test_synthetic_rejects_degenerate_settings(tiny_data_config):
    with pytest.raises(DataError, match="synthetic"):
        load_dataset(tiny_data_config(synthetic_classes=1))


def test_val_fraction_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="--val-fraction"):
        DataConfig(val_fraction=1.0)


# --------------------------------------------------------------------------- splits


def test_val_split_size_rounds_and_partitions(tiny_data_config):
    data = load_dataset(tiny_data_config(val_fraction=0.1))
    # 256 * 0.1 = 25.6 -> 26 validation samples, 230 training samples
    assert len(data.val) == 26 and len(data.train) == 230
    train_ids, val_ids = set(data.train.ids.tolist()), set(data.val.ids.tolist())
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(256))
    # sorted ids inside each split; different seed, different split
    assert data.val.ids.tolist() == sorted(data.val.ids.tolist())
    other = load_dataset(tiny_data_config(val_fraction=0.1, split_seed=1))
    assert set(other.val.ids.tolist()) != val_ids


def test_split_train_val_hand_sizes():
    split = Split(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10), torch.arange(10))
    for fraction, n_val in ((0.0, 0), (0.2, 2), (0.34, 3), (0.36, 4), (0.9, 9)):
        train, val = split_train_val(split, fraction, seed=0)
        assert (len(train), len(val)) == (10 - n_val, n_val), fraction
    train, val = split_train_val(split, 0.3, seed=0)
    # images, targets and ids stay aligned
    assert torch.equal(train.targets, train.ids) and torch.equal(val.targets, val.ids)


def test_empty_split_is_a_data_error(tiny_data_config):
    data = load_dataset(tiny_data_config(val_fraction=0.0))
    assert len(data.val) == 0
    with pytest.raises(DataError, match="val split is empty"):
        data.split("val")
    with pytest.raises(DataError, match="--split"):
        data.split("holdout")


@pytest.mark.parametrize(
    ("spec", "n", "count"),
    [("0.5", 230, 115), ("0.33", 100, 33), ("1.0", 230, 230), ("100", 230, 100), ("1", 230, 1), ("230", 230, 230)],
)
def test_parse_subset_fraction_and_count(spec, n, count):
    assert parse_subset(spec, n) == count


@pytest.mark.parametrize("spec", ["abc", "0", "-3", "1.5", "231", "0.0001", ""])
def test_bad_subset_spec_names_the_option(spec):
    with pytest.raises(DataError, match="--train-subset"):
        parse_subset(spec, 230)


def test_train_subset_is_seeded_and_drawn_from_train(tiny_data_config):
    full = load_dataset(tiny_data_config())
    half = load_dataset(tiny_data_config(train_subset="0.5"))
    count = load_dataset(tiny_data_config(train_subset="40"))
    assert len(half.train) == 115 and len(count.train) == 40
    assert set(half.train.ids.tolist()) <= set(full.train.ids.tolist())
    # validation and test are untouched by the subset
    assert torch.equal(half.val.ids, full.val.ids) and torch.equal(half.test.images, full.test.images)
    again = load_dataset(tiny_data_config(train_subset="0.5"))
    assert torch.equal(again.train.ids, half.train.ids)
    other = take_subset(full.train, "0.5", seed=3)
    assert not torch.equal(other.ids, half.train.ids)


def test_bad_subset_through_load_dataset(tiny_data_config):
    with pytest.raises(DataError, match="--train-subset: '500' selects 500 of 230"):
        load_dataset(tiny_data_config(train_subset="500"))


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="imagenet-xl"))
    message = str(err.value)
    assert "imagenet-xl" in message
    for name in ("fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic", "imagefolder:PATH"):
        assert name in message
    assert set(known_datasets()) >= {"fashion-mnist", "synthetic", "imagefolder:PATH"}


def test_imagefolder_without_train_folder(tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="missing folder"):
        load_dataset(DataConfig(name=f"imagefolder:{tmp_path}"))


# --------------------------------------------------------------------------- IDX


def idx_bytes(array: list, dims: tuple[int, ...]) -> bytes:
    """An unsigned-byte IDX file by hand: 0 0 0x08 ndim, big-endian dims, then the bytes."""
    return bytes([0, 0, 0x08, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims) + bytes(array)


def test_read_idx_hand_made(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(list(range(12)), (2, 2, 3)))
    out = read_idx(path)
    assert out.dtype == torch.uint8
    assert out.tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
    gz = tmp_path / "labels-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes([7, 3, 255], (3,))))
    assert read_idx(gz).tolist() == [7, 3, 255]


def test_read_idx_truncated_data(tmp_path):
    path = tmp_path / "cut"
    path.write_bytes(idx_bytes(list(range(12)), (2, 2, 3))[:-1])
    with pytest.raises(DataError, match=r"truncated IDX file \(expected 28 bytes, got 27\)"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "cut-header"
    path.write_bytes(idx_bytes(list(range(12)), (2, 2, 3))[:9])  # promises 3 dims, holds 1 and a bit
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_read_idx_foreign_and_broken_gzip(tmp_path):
    path = tmp_path / "float-idx"
    path.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\x00" * 4)  # float32 IDX: not supported
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        read_idx(path)
    gz = tmp_path / "broken.gz"
    gz.write_bytes(gzip.compress(idx_bytes([1, 2, 3], (3,)))[:-6])
    with pytest.raises(DataError, match="broken.gz"):
        read_idx(gz)


def write_fake_mnist(root: Path, n_train: int, n_test: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = [(i * 7) % 256 for i in range(n * 28 * 28)]
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images, (n, 28, 28)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes([i % 10 for i in range(n)],
                                                                                       (n,))))


def test_fashion_mnist_loader_on_hand_made_files(tmp_path):
    write_fake_mnist(tmp_path / "fm", n_train=40, n_test=10)
    data = load_dataset(DataConfig(name="fashion-mnist", data_dir=str(tmp_path / "fm"), val_fraction=0.25))
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 10)
    assert data.info.classes == FASHION_CLASSES and data.info.input_shape == (1, 28, 28)
    assert data.test.targets.tolist() == [i % 10 for i in range(10)]
    assert data.info.augment == AugmentSpec(pad=2, hflip=True)
    no_aug = load_dataset(DataConfig(name="fashion-mnist", data_dir=str(tmp_path / "fm"), augment=False))
    assert no_aug.info.augment == AugmentSpec()


def test_idx_images_and_labels_disagree(tmp_path):
    write_fake_mnist(tmp_path, n_train=4, n_test=2)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes([1, 2, 3], (3,))))
    with pytest.raises(DataError, match="disagree"):
        load_dataset(DataConfig(name="fashion-mnist", data_dir=str(tmp_path)))


def test_fashion_mnist_real_split_sizes(fashion_dir):
    if not (fashion_dir / "train-labels-idx1-ubyte.gz").exists() and \
            not (fashion_dir / "train-labels-idx1-ubyte").exists():
        pytest.skip(f"Fashion-MNIST not installed at {fashion_dir} (apt-get install dataset-fashion-mnist)")
    data = load_dataset(DataConfig(name="fashion-mnist", data_dir=str(fashion_dir)))
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.train.images.shape[1:] == (1, 28, 28)
    assert torch.bincount(data.test.targets).tolist() == [1000] * 10

