"""Snapshot ensembles: a cosine schedule that restarts M times, a snapshot at the end of each cycle."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from modelupdate.config import TrainConfig
from modelupdate.data import load_dataset
from modelupdate.engine import Schedule, fit
from modelupdate.errors import ConfigError
from modelupdate.models import build_model
from modelupdate.runtime import setup_runtime


def test_each_cycle_restarts_the_cosine_and_only_the_first_warms_up():
    plan = Schedule(steps_per_epoch=4, total_steps=8, warmup_steps=2, base_lr=1.0, cycles=2)
    lrs = [plan.lr(s) for s in range(8)]
    cos = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5] + cos)
    assert [s for s in range(8) if plan.ends_cycle(s)] == [3]  # the run's last step is the last snapshot
    assert [plan.cycle_of(s) for s in (0, 3, 4, 7)] == [0, 0, 1, 1]


def test_one_cycle_is_the_plain_schedule():
    plain = Schedule(10, 40, 5, 0.1)
    assert [plain.lr(s) for s in range(40)] == [Schedule(10, 40, 5, 0.1, 1).lr(s) for s in range(40)]


def test_fit_hands_over_a_snapshot_at_each_cycle_end(tiny_data_config, tiny_train_config):
    data = load_dataset(tiny_data_config())
    cfg = tiny_train_config(epochs=3, lr_cycles=3)
    model = build_model(cfg.arch, data.info.num_classes, data.info.input_shape)
    snapshots = []
    fit(model, data, cfg, setup_runtime(cfg),
        on_cycle_end=lambda cycle, m: snapshots.append((cycle, {k: v.clone() for k, v in m.state_dict().items()})))
    assert [c for c, _ in snapshots] == [0, 1]
    first, second = snapshots[0][1], snapshots[1][1]
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(second[k], model.state_dict()[k]) for k in second)


def test_more_cycles_than_steps_is_refused(tiny_data_config, tiny_train_config):
    data = load_dataset(tiny_data_config())
    cfg = tiny_train_config(lr_cycles=1000)
    with pytest.raises(ConfigError, match="--snapshots 1000"):
        Schedule.of(len(data.train), cfg, setup_runtime(cfg))
    with pytest.raises(ConfigError, match="--snapshots"):
        TrainConfig(lr_cycles=0)


def test_ensemble_train_snapshots_through_the_cli(tmp_path, run_cli):
    out = tmp_path / "ref.safetensors"
    args = ["ensemble-train", "--snapshots", "3", "--arch", "tiny", "--epochs", "3", "--train-subset", "512",
            "--device", "cpu", "--quiet", "--out", out]
    rc, stdout, err = run_cli(*args)
    assert rc == 0, err
    tensors = load_file(str(out))
    members = sorted({k.split(".")[0] for k in tensors})
    assert members == ["member0", "member1", "member2"]
    header = json.loads(out.read_bytes()[8:8 + int.from_bytes(out.read_bytes()[:8], "little")])["__metadata__"]
    assert json.loads(header["member_seeds"]) == [100, 100, 100]
    assert json.loads(header["config"])["train"]["lr_cycles"] == 3
    weight = next(k for k in tensors if k.startswith("member0.") and tensors[k].is_floating_point())
    other = weight.replace("member0.", "member1.")
    assert not torch.equal(tensors[weight], tensors[other]), "snapshots differ"
    assert not (tmp_path / "ref.members").exists()
    rc, _, err = run_cli(*args[:-1], tmp_path / "other.safetensors", "--members", "3")
    assert rc == 2 and "--snapshots" in err and "--members" in err


def test_cycles_of_uneven_length_still_make_every_snapshot():
    plan = Schedule(steps_per_epoch=3, total_steps=9, warmup_steps=0, base_lr=1.0, cycles=4)
    assert plan.cycle_ends == [2, 4, 7, 9]  # round(k * 9 / 4): cycles of 2, 2, 3 and 2 steps
    assert [s for s in range(9) if plan.ends_cycle(s)] == [1, 3, 6]  # 3 snapshots + the run's own end
    assert [plan.cycle_of(s) for s in range(9)] == [0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert plan.lr(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 3)))  # the last of a 3-step cycle
    assert plan.lr(7) == 1.0 and plan.lr(8) == pytest.approx(0.5)


def test_a_warm_up_as_long_as_a_cycle_is_refused(tiny_data_config, tiny_train_config):
    data = load_dataset(tiny_data_config())
    cfg = tiny_train_config(epochs=2, lr_cycles=4, warmup_epochs=1.0)
    with pytest.raises(ConfigError, match="warm-up"):
        Schedule.of(len(data.train), cfg, setup_runtime(cfg))
