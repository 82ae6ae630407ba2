"""scripts/merge_ensembles.py: two ensembles of one recipe become one, checked and re-measured."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from modelupdate.checkpoint import load_checkpoint
from modelupdate.data import load_dataset
from modelupdate.engine import predict_logits
from modelupdate.errors import MismatchError
from modelupdate.runtime import Runtime
from modelupdate.workflows.ensemble_train import ensemble_train

spec = importlib.util.spec_from_file_location("merge_ensembles",
                                              Path(__file__).parent.parent / "scripts" / "merge_ensembles.py")
merge_ensembles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(merge_ensembles)


@pytest.fixture(scope="module")
def ensembles(tiny_data_config, tiny_train_config, tmp_path_factory):
    work = tmp_path_factory.mktemp("merge")
    cfg = tiny_train_config()
    a, b, c = work / "a.safetensors", work / "b.safetensors", work / "c.safetensors"
    ensemble_train(tiny_data_config(), replace(cfg, seed=10), a, members=2)
    ensemble_train(tiny_data_config(), replace(cfg, seed=20), b, members=2)
    ensemble_train(tiny_data_config(), replace(cfg, seed=30, lr=0.3), c, members=2)
    return work, a, b, c


def test_merge_keeps_every_member_and_measures_the_whole(tiny_data_config, ensembles):
    work, a, b, _ = ensembles
    out = work / "ab.safetensors"
    meta = merge_ensembles.merge([a, b], out)
    merged = load_checkpoint(out)
    assert merged.meta.member_seeds == [110, 111, 120, 121] == meta.member_seeds
    assert len(merged.members) == 4
    parts = [load_checkpoint(p) for p in (a, b)]
    expected = [m for p in parts for m in p.members]
    for got, want in zip(merged.members, expected, strict=True):
        for (name, t1), (_, t2) in zip(got.state_dict().items(), want.state_dict().items(), strict=True):
            assert torch.equal(t1, t2), name
    data = load_dataset(tiny_data_config())
    logits, targets, _ = predict_logits(merged.model, data.test, data.info, Runtime(torch.device("cpu")))
    assert merged.meta.metrics["test_correct"] == int((logits.argmax(1) == targets).sum())


def test_merge_refuses_another_recipe_and_repeated_seeds(ensembles):
    work, a, _, c = ensembles
    with pytest.raises(MismatchError, match="another recipe"):
        merge_ensembles.merge([a, c], work / "ac.safetensors")
    with pytest.raises(MismatchError, match="seeds repeat"):
        merge_ensembles.merge([a, a], work / "aa.safetensors")
    assert not (work / "ac.safetensors").exists() and not (work / "aa.safetensors").exists()


def test_an_option_a_file_predates_counts_as_its_default(ensembles):
    _, a, b, _ = ensembles
    old, new = load_checkpoint(a).meta, load_checkpoint(b).meta
    del old.config["train"]["clip_grad_norm"]  # written before the option existed
    assert merge_ensembles.recipe(old) == merge_ensembles.recipe(new)
    new.config["train"]["clip_grad_norm"] = 5.0
    assert merge_ensembles.recipe(old) != merge_ensembles.recipe(new)
