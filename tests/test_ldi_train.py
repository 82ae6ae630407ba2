"""The ldi-train objective against hand-computed values, and the method defaults it records."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from modelupdate.config import TrainConfig, UpdateConfig, with_method_defaults
from modelupdate.data import Batch
from modelupdate.engine import Runtime
from modelupdate.workflows.ldi_train import make_objective

# B=2, C=3 (the LDI example of test_losses): |z - r|^2 = [1, 0.04, 1] and [1, 0, 9]
Z = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
R = torch.tensor([[0.0, 2.2, 1.0], [1.0, 0.0, 0.0]])
Y = torch.tensor([1, 2])
LDI = [2.04 / 3, 10.0 / 3]


def log_softmax(row: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in row))
    return [v - norm for v in row]


def fixed_teacher(logits: torch.Tensor):
    return SimpleNamespace(model=lambda images: logits, members=[None])


def objective_for(method: str, **kw):
    ucfg = UpdateConfig(method=method, **kw).resolved()
    return make_objective(ucfg, fixed_teacher(R), None, 0.0, Runtime(torch.device("cpu")))


def test_elodi_objective_is_the_weighted_sum_of_ce_and_ldi():
    ce = [-log_softmax(Z[i].tolist())[int(Y[i])] for i in range(2)]
    loss, parts = objective_for("elodi", alpha=0.25)(Z, Batch(torch.zeros(2, 1, 1, 1), Y, torch.arange(2)))
    expected = 0.75 * sum(ce) / 2 + 0.25 * sum(LDI) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(parts["ce"]) == pytest.approx(sum(ce) / 2, rel=1e-6)
    assert float(parts["aux"]) == pytest.approx(sum(LDI) / 2, rel=1e-6)


def test_the_objective_uses_the_soft_targets_of_a_mixed_batch():
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    ce = [-sum(q * lp for q, lp in zip(soft[i].tolist(), log_softmax(Z[i].tolist()), strict=True))
          for i in range(2)]
    batch = Batch(torch.zeros(2, 1, 1, 1), Y, torch.arange(2), soft)
    loss, _ = objective_for("elodi", alpha=0.5)(Z, batch)
    assert float(loss) == pytest.approx(0.5 * sum(ce) / 2 + 0.5 * sum(LDI) / 2, rel=1e-6)
    plain, _ = objective_for("ce")(Z, batch)
    assert float(plain) == pytest.approx(sum(ce) / 2, rel=1e-6)


def test_ldi_students_train_without_dropout_unless_told():
    assert with_method_defaults(TrainConfig(), "elodi").dropout == 0.0
    assert with_method_defaults(TrainConfig(), "ldi-old").dropout == 0.0
    assert with_method_defaults(TrainConfig(), "ce").dropout is None
    assert with_method_defaults(TrainConfig(dropout=0.3), "elodi").dropout == 0.3
    assert with_method_defaults(TrainConfig(), "elodi").clip_grad_norm == 5.0
