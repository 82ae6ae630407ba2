"""The method registry: what each method resolves to and records, what it refuses, and the help derived from it.
(The objectives against hand-computed values: tests/test_ldi_train.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelupdate.config import TrainConfig
from modelupdate.data import Batch
from modelupdate.errors import ConfigError
from modelupdate.methods import (
    REGISTRY,
    UpdateConfig,
    held_against,
    make_objective,
    per_method,
    using,
    with_method_defaults,
)

CLI_DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_each_method_records_every_parameter_with_its_defaults_filled():
    assert UpdateConfig(method="elodi").resolved().to_dict() == {
        "method": "elodi", "alpha": 0.5, "xi": 0.0, "p": 2.0, "topk": 2, "exclude_target": False,
        "weighting": "uniform", "tau": 1.0, "fd_a": 1.0, "fd_b": 5.0}
    # a parameter the method does not read is recorded at its neutral value
    kd = UpdateConfig(method="kd").resolved()
    assert (kd.alpha, kd.tau, kd.xi, kd.topk) == (0.5, 4.0, 0.0, None)
    assert UpdateConfig(method="ldi-old").resolved().xi == 0.5
    assert UpdateConfig(method="fd-lm").resolved().alpha == 0.1
    ce = UpdateConfig(method="ce").resolved()
    assert (ce.alpha, ce.xi, ce.topk, ce.exclude_target, ce.tau) == (0.0, 0.0, None, False, 1.0)
    # what the user gave wins over the default
    assert UpdateConfig(method="elodi", alpha=0.8, topk=0).resolved().alpha == 0.8


def test_a_method_without_a_loss_refuses_the_loss_parameters_by_option():
    with pytest.raises(ConfigError, match=r"^--alpha, --topk: --method ce is plain cross-entropy"):
        UpdateConfig(method="ce", alpha=0.5, topk=2).resolved()
    with pytest.raises(ConfigError, match=r"^--method: expected one of elodi, ldi-old, kd, fd-kl, fd-lm, new-error, "
                                          r"ce, got 'bogus'"):
        UpdateConfig(method="bogus")


def test_what_each_method_is_held_against():
    assert held_against("reference") == ["elodi"]
    assert held_against("old") == ["ldi-old", "kd", "fd-kl", "fd-lm", "new-error"]
    assert held_against("none") == ["ce"]
    assert set(REGISTRY) == set(held_against("reference") + held_against("old") + held_against("none"))


def test_a_method_held_against_a_model_needs_its_logits():
    with pytest.raises(ConfigError, match="--method kd: needs the logits"):
        make_objective(UpdateConfig(method="kd").resolved(), None)
    z, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    loss, parts = make_objective(UpdateConfig(method="ce").resolved(), None)(z, Batch(z, y, y))
    assert float(loss) == pytest.approx(torch.log1p(torch.exp(torch.tensor(-2.0))).item()) and parts == {}


def test_training_defaults_come_from_the_entry():
    for name, entry in REGISTRY.items():
        cfg = with_method_defaults(TrainConfig(), name)
        assert cfg.clip_grad_norm == entry.clip_grad_norm and cfg.ema_epochs == entry.ema_epochs
    assert with_method_defaults(TrainConfig(clip_grad_norm=0.0), "elodi").clip_grad_norm == 0.0


def test_per_method_defaults_read_as_help():
    assert per_method(using("alpha")) == "0.1 for fd-lm, else 0.5"
    assert per_method(using("tau")) == "4 for kd, 100 for fd-kl"
    assert per_method(using("topk"), none="every class") == "2 for elodi, every class for ldi-old"
    assert per_method({"a": 1.0, "b": 1.0}) == "1"
    assert per_method({"a": 5.0, "b": 5.0, "c": 1.0}) == "1 for c, else 5"


def test_ldi_train_help_shows_each_method_and_its_defaults():
    text = CLI_DOCS.read_text()  # generated from --help (tests/test_docs.py keeps it current)
    for entry in REGISTRY.values():
        assert f"{entry.name}: {entry.summary}" in text
    assert "[default: 0.1 for fd-lm, else 0.5]" in text
    assert "elodi, ldi-old, fd-lm: 5" in text
