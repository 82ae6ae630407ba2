"""Datasets held in memory as uint8 tensors (or streamed from disk), split, and augmented in batch.

``sources`` loads a dataset (registry, loaders, splits, subsets, fingerprint): each split is one
uint8 tensor ``[N, C, H, W]``, or for an image folder too large for memory a ``streaming.StreamSplit``
that reads batches from disk in a DataLoader (``folders``: listing, fingerprint, decoder of image
folders). ``batches`` moves uint8 batches to the device and crops, flips, normalises and mixes them
there. What sources and batches define is re-exported here, so ``modelupdate.data`` stays the one
import path.
"""

from .batches import (
    Batch,
    augment_batch,
    eval_batches,
    mix_batch,
    normalize,
    shard_indices,
    step_generator,
    step_seed,
    train_batches,
    train_order,
)
from .sources import (
    DATASETS,
    FASHION_CLASSES,
    IDX_FILES,
    AugmentSpec,
    Dataset,
    DatasetInfo,
    Loader,
    Split,
    cache_dir,
    known_datasets,
    load_dataset,
    parse_subset,
    read_idx,
    register_dataset,
    split_train_val,
    take_subset,
)

__all__ = [
    "DATASETS",
    "FASHION_CLASSES",
    "IDX_FILES",
    "AugmentSpec",
    "Batch",
    "Dataset",
    "DatasetInfo",
    "Loader",
    "Split",
    "augment_batch",
    "cache_dir",
    "eval_batches",
    "known_datasets",
    "load_dataset",
    "mix_batch",
    "normalize",
    "parse_subset",
    "read_idx",
    "register_dataset",
    "shard_indices",
    "split_train_val",
    "step_generator",
    "step_seed",
    "take_subset",
    "train_batches",
    "train_order",
]
