"""modelupdate.data.batches: augmentation, order and sharding, step seeds, mixing; the package's re-exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modelupdate.data
from modelupdate.data.batches import (
    Batch,
    augment_batch,
    eval_batches,
    mix_batch,
    shard_indices,
    step_generator,
    step_seed,
    train_order,
)
from modelupdate.data.sources import AugmentSpec, load_dataset

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


def test_eval_batches_over_ranks_cover_the_split_once(tiny_data_config):
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
    # the old linear formula gave seed s at epoch 10, step j the seed of s+1 at epoch 0, step j+27
    assert step_seed(0, 10, 5) != step_seed(1, 0, 32)
    keys = [(s, e, j, r, stream) for s in range(3) for e in range(3) for j in range(40) for r in range(2)
            for stream in ("augment", "dropout", "mix")]
    seeds = {step_seed(*k) for k in keys}
    assert len(seeds) == len(keys)
    assert all(0 <= x < 2**63 for x in seeds)
    assert step_seed(3, 1, 7, 1, "mix") == step_seed(3, 1, 7, 1, "mix")  # a pure function: resume replays it


def test_each_rank_draws_its_own_augmentation():
    images = torch.arange(16 * 36, dtype=torch.uint8).reshape(16, 1, 6, 6)
    spec = AugmentSpec(pad=2, hflip=True)
    rank0 = augment_batch(images, spec, step_generator(0, 0, 3, rank=0))
    rank1 = augment_batch(images, spec, step_generator(0, 0, 3, rank=1))
    again = augment_batch(images, spec, step_generator(0, 0, 3, rank=0))
    assert torch.equal(rank0, again) and not torch.equal(rank0, rank1)


def _mix_input(b: int = 6, c: int = 3):
    images = torch.arange(b * 2 * 4 * 4, dtype=torch.float32).reshape(b, 2, 4, 4)
    return Batch(images, torch.arange(b) % c, torch.arange(b)), c


def test_mixup_mixes_each_image_with_its_mirror_in_the_batch_and_the_targets_alike():
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
    batch, c = _mix_input()
    assert mix_batch(batch, c, mixup=0.0, cutmix=0.0, seed=0) is batch
    assert mix_batch(batch, c, mixup=1.0, cutmix=1.0, mix_prob=0.0, seed=0) is batch
    # switch_prob 1: always cutmix, so the images keep their values (no blend)
    mixed = mix_batch(batch, c, mixup=1.0, cutmix=1.0, switch_prob=1.0, seed=3)
    assert set(mixed.images.unique().tolist()) <= set(batch.images.unique().tolist())


# --------------------------------------------------------------------------- package


def test_package_re_exports_both_modules():
    from modelupdate.data import batches, sources

    # the names src/, scripts/, bench/ and tests/ import from modelupdate.data
    imported = {"AugmentSpec", "Batch", "Dataset", "DatasetInfo", "FASHION_CLASSES", "Split", "augment_batch",
                "eval_batches", "known_datasets", "load_dataset", "mix_batch", "normalize", "parse_subset",
                "read_idx", "shard_indices", "split_train_val", "step_generator", "step_seed", "take_subset",
                "train_batches", "train_order"}
    assert imported <= set(modelupdate.data.__all__)
    for name in modelupdate.data.__all__:
        owner = sources if name in vars(sources) else batches
        assert getattr(modelupdate.data, name) is getattr(owner, name), name
    # one way: sources holds nothing defined in batches
    assert not [k for k, v in vars(sources).items() if getattr(v, "__module__", None) == batches.__name__]
