"""Datasets: determinism, splits, subsets, the IDX reader, batch augmentation and sharding."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from conftest import FASHION_DIR, tiny_data_config
from modelupdate.config import DataConfig
from modelupdate.data import (
    FASHION_CLASSES,
    AugmentSpec,
    Split,
    augment_batch,
    eval_batches,
    known_datasets,
    load_dataset,
    parse_subset,
    read_idx,
    shard_indices,
    split_train_val,
    take_subset,
    train_order,
)
from modelupdate.errors import ConfigError, DataError

# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic():
    a, b = load_dataset(tiny_data_config()), load_dataset(tiny_data_config())
    for name in ("train", "val", "test"):
        sa, sb = a.split(name), b.split(name)
        assert torch.equal(sa.images, sb.images)
        assert torch.equal(sa.targets, sb.targets)
        assert torch.equal(sa.ids, sb.ids)
    assert a.info.fingerprint == b.info.fingerprint
    assert a.info.fingerprint.startswith("sha256:") and len(a.info.fingerprint) == len("sha256:") + 16


def test_synthetic_fingerprint_follows_the_data():
    base = load_dataset(tiny_data_config()).info.fingerprint
    assert load_dataset(tiny_data_config(synthetic_classes=3)).info.fingerprint != base
    assert load_dataset(tiny_data_config(synthetic_test=65)).info.fingerprint != base
    # The split seed changes the split, not the data: the fingerprint stays.
    assert load_dataset(tiny_data_config(split_seed=5)).info.fingerprint == base


def test_synthetic_shapes_classes_and_balance():
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


def test_synthetic_rejects_degenerate_settings():
    with pytest.raises(DataError, match="synthetic"):
        load_dataset(tiny_data_config(synthetic_classes=1))


def test_val_fraction_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="--val-fraction"):
        DataConfig(val_fraction=1.0)


# --------------------------------------------------------------------------- splits


def test_val_split_size_rounds_and_partitions():
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


def test_empty_split_is_a_data_error():
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


def test_train_subset_is_seeded_and_drawn_from_train():
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


def test_bad_subset_through_load_dataset():
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


def test_fashion_mnist_real_split_sizes():
    if not (FASHION_DIR / "train-labels-idx1-ubyte.gz").exists() and \
            not (FASHION_DIR / "train-labels-idx1-ubyte").exists():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    data = load_dataset(DataConfig(name="fashion-mnist", data_dir=str(FASHION_DIR)))
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.train.images.shape[1:] == (1, 28, 28)
    assert torch.bincount(data.test.targets).tolist() == [1000] * 10


# --------------------------------------------------------------------------- augmentation


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image [C,H,W] moved by (dy, dx) pixels with zeros entering: what a pad-and-crop produces."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[:, i, j] = image[:, si, sj]
    return out


def test_pad_crop_shifts_content_by_at_most_pad():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 4, 4)
    batch = image.expand(64, 1, 4, 4).clone()
    out = augment_batch(batch, AugmentSpec(pad=1), torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    candidates = {(dy, dx): shifted(image, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    seen = set()
    for sample in out:
        match = [shift for shift, expected in candidates.items() if torch.equal(sample, expected)]
        assert len(match) == 1, sample
        seen.add(match[0])
    assert len(seen) == 9  # 64 draws from 9 equally likely shifts: all appear
    # one shift by hand: crop offset (0, 0) of the padded image moves the content down-right
    assert candidates[(1, 1)].tolist() == [[[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]]]


def test_augment_is_deterministic_given_the_generator():
    images = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    spec = AugmentSpec(pad=2, hflip=True)
    a = augment_batch(images, spec, torch.Generator().manual_seed(42))
    b = augment_batch(images, spec, torch.Generator().manual_seed(42))
    c = augment_batch(images, spec, torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (8, 3, 6, 6)


def test_hflip_only_flips_or_keeps():
    image = torch.arange(6, dtype=torch.uint8).view(1, 2, 3)
    out = augment_batch(image.expand(32, 1, 2, 3).clone(), AugmentSpec(hflip=True), torch.Generator().manual_seed(0))
    flipped = torch.tensor([[[2, 1, 0], [5, 4, 3]]], dtype=torch.uint8)
    n_flipped = sum(torch.equal(s, flipped) for s in out)
    n_kept = sum(torch.equal(s, image) for s in out)
    assert n_flipped + n_kept == 32 and n_flipped > 0 and n_kept > 0


def test_no_augment_spec_is_identity():
    images = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    assert torch.equal(augment_batch(images, AugmentSpec(), torch.Generator().manual_seed(0)), images)


# --------------------------------------------------------------------------- order and sharding


def test_train_order_ranks_are_disjoint_and_cover():
    orders = [train_order(100, seed=3, epoch=1, rank=r, world=2, batch_size=10) for r in (0, 1)]
    assert len(orders[0]) == len(orders[1]) == 50
    assert not set(orders[0]) & set(orders[1])
    assert sorted(orders[0] + orders[1]) == list(range(100))
    # seeded per epoch: same epoch same order, next epoch a new one
    assert train_order(100, seed=3, epoch=1, rank=0, world=2, batch_size=10) == orders[0]
    assert train_order(100, seed=3, epoch=2, rank=0, world=2, batch_size=10) != orders[0]


def test_train_order_keeps_full_batches_only():
    order = train_order(100, seed=0, epoch=0, rank=0, world=1, batch_size=32)
    assert len(order) == 96 and len(set(order)) == 96
    # fewer samples than one batch: keep them all rather than train on nothing
    assert sorted(train_order(5, seed=0, epoch=0, rank=0, world=1, batch_size=32)) == list(range(5))


@pytest.mark.parametrize(("n", "world"), [(10, 3), (2, 4), (9, 3), (1, 1)])
def test_shard_indices_disjoint_cover_unpadded(n, world):
    shards = [shard_indices(n, r, world).tolist() for r in range(world)]
    flat = [i for s in shards for i in s]
    assert flat == list(range(n))  # contiguous, in order, nothing repeated, nothing padded


def test_shard_indices_hand_values():
    assert [shard_indices(10, r, 3).tolist() for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_eval_batches_over_ranks_cover_the_split_once():
    data = load_dataset(tiny_data_config())
    ids = []
    for rank in range(3):
        for batch in eval_batches(data.test, data.info, batch_size=7, device=torch.device("cpu"), rank=rank,
                                  world=3):
            assert batch.images.dtype == torch.float32
            ids += batch.ids.tolist()
    assert ids == list(range(64))


# --------------------------------------------------------------------------- step seeds and mixing


def test_step_seeds_never_collide_across_seeds_epochs_steps_ranks_and_streams():
    from modelupdate.data import step_seed

    # the old linear formula gave seed s at epoch 10, step j the seed of s+1 at epoch 0, step j+27
    assert step_seed(0, 10, 5) != step_seed(1, 0, 32)
    keys = [(s, e, j, r, stream) for s in range(3) for e in range(3) for j in range(40) for r in range(2)
            for stream in ("augment", "dropout", "mix")]
    seeds = {step_seed(*k) for k in keys}
    assert len(seeds) == len(keys)
    assert all(0 <= x < 2**63 for x in seeds)
    assert step_seed(3, 1, 7, 1, "mix") == step_seed(3, 1, 7, 1, "mix")  # a pure function: resume replays it


def test_each_rank_draws_its_own_augmentation():
    from modelupdate.data import step_generator

    images = torch.arange(16 * 36, dtype=torch.uint8).reshape(16, 1, 6, 6)
    spec = AugmentSpec(pad=2, hflip=True)
    rank0 = augment_batch(images, spec, step_generator(0, 0, 3, rank=0))
    rank1 = augment_batch(images, spec, step_generator(0, 0, 3, rank=1))
    again = augment_batch(images, spec, step_generator(0, 0, 3, rank=0))
    assert torch.equal(rank0, again) and not torch.equal(rank0, rank1)


def _mix_input(b: int = 6, c: int = 3):
    from modelupdate.data import Batch

    images = torch.arange(b * 2 * 4 * 4, dtype=torch.float32).reshape(b, 2, 4, 4)
    return Batch(images, torch.arange(b) % c, torch.arange(b)), c


def test_mixup_mixes_each_image_with_its_mirror_in_the_batch_and_the_targets_alike():
    import numpy as np

    from modelupdate.data import mix_batch

    batch, c = _mix_input()
    mixed = mix_batch(batch, c, mixup=0.4, cutmix=0.0, seed=11)
    rng = np.random.default_rng(11)
    rng.random()  # the mix_prob draw
    lam = float(rng.beta(0.4, 0.4))
    torch.testing.assert_close(mixed.images, lam * batch.images + (1 - lam) * batch.images.flip(0))
    one_hot = torch.nn.functional.one_hot(batch.targets, c).float()
    torch.testing.assert_close(mixed.soft_targets, lam * one_hot + (1 - lam) * one_hot.flip(0))
    torch.testing.assert_close(mixed.soft_targets.sum(1), torch.ones(6))
    assert torch.equal(mixed.targets, batch.targets if lam >= 0.5 else batch.targets.flip(0))
    assert torch.equal(mixed.ids, batch.ids)
    again = mix_batch(batch, c, mixup=0.4, cutmix=0.0, seed=11)
    assert torch.equal(again.images, mixed.images)
    assert not torch.equal(mix_batch(batch, c, mixup=0.4, cutmix=0.0, seed=12).images, mixed.images)


def test_cutmix_pastes_a_box_of_the_mirror_image_and_weights_targets_by_its_area():
    from modelupdate.data import mix_batch

    batch, c = _mix_input()
    for seed in range(20):
        mixed = mix_batch(batch, c, mixup=0.0, cutmix=1.0, seed=seed)
        from_partner = (mixed.images == batch.images.flip(0)) & (mixed.images != batch.images)
        pasted = from_partner[0, 0]  # [H, W]: the box, the same for every image and channel
        assert torch.equal(from_partner, pasted.expand_as(from_partner))
        kept = 1.0 - float(pasted.float().mean())
        lam = float(mixed.soft_targets[0, batch.targets[0]])  # image 0 and its mirror have other labels
        assert lam == pytest.approx(kept)
        assert torch.equal(mixed.images[~from_partner], batch.images[~from_partner])


def test_mixing_off_or_skipped_leaves_the_batch_untouched():
    from modelupdate.data import mix_batch

    batch, c = _mix_input()
    assert mix_batch(batch, c, mixup=0.0, cutmix=0.0, seed=0) is batch
    assert mix_batch(batch, c, mixup=1.0, cutmix=1.0, mix_prob=0.0, seed=0) is batch
    # switch_prob 1: always cutmix, so the images keep their values (no blend)
    mixed = mix_batch(batch, c, mixup=1.0, cutmix=1.0, switch_prob=1.0, seed=3)
    assert set(mixed.images.unique().tolist()) <= set(batch.images.unique().tolist())
