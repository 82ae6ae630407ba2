"""The ldi-train objective against hand-computed values, and the method defaults it records."""

from __future__ import annotations

import math

import pytest
import torch

from modelupdate.config import TrainConfig
from modelupdate.data import Batch
from modelupdate.methods import UpdateConfig, make_objective, with_method_defaults

# B=2, C=3 (the LDI example of test_losses): |z - r|^2 = [1, 0.04, 1] and [1, 0, 9]
Z = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
R = torch.tensor([[0.0, 2.2, 1.0], [1.0, 0.0, 0.0]])
Y = torch.tensor([1, 2])
LDI = [2.04 / 3, 10.0 / 3]


def log_softmax(row: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in row))
    return [v - norm for v in row]


def fixed_teacher(logits: torch.Tensor):
    return lambda batch: logits


def objective_for(method: str, **kw):
    ucfg = UpdateConfig(method=method, **kw).resolved()
    return make_objective(ucfg, fixed_teacher(R))


def test_elodi_objective_is_the_weighted_sum_of_ce_and_ldi():
    ce = [-log_softmax(Z[i].tolist())[int(Y[i])] for i in range(2)]
    loss, parts = objective_for("elodi", alpha=0.25, topk=0)(Z, Batch(torch.zeros(2, 1, 1, 1), Y, torch.arange(2)))
    expected = 0.75 * sum(ce) / 2 + 0.25 * sum(LDI) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(parts["ce"]) == pytest.approx(sum(ce) / 2, rel=1e-6)
    assert float(parts["aux"]) == pytest.approx(sum(LDI) / 2, rel=1e-6)


def test_the_objective_uses_the_soft_targets_of_a_mixed_batch():
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    ce = [-sum(q * lp for q, lp in zip(soft[i].tolist(), log_softmax(Z[i].tolist()), strict=True))
          for i in range(2)]
    batch = Batch(torch.zeros(2, 1, 1, 1), Y, torch.arange(2), soft)
    loss, _ = objective_for("elodi", alpha=0.5, topk=0)(Z, batch)
    assert float(loss) == pytest.approx(0.5 * sum(ce) / 2 + 0.5 * sum(LDI) / 2, rel=1e-6)
    plain, _ = objective_for("ce")(Z, batch)
    assert float(plain) == pytest.approx(sum(ce) / 2, rel=1e-6)


def test_elodi_defaults_to_the_top_2_classes_and_topk_0_means_every_class():
    # C=4: the student's top 2 are classes 0, 1 and the reference's 0, 2: S = {0, 1, 2}; class 3 is out.
    z = torch.tensor([[3.0, 2.0, 0.0, 0.0]])
    r = torch.tensor([[2.0, 0.0, 1.0, -5.0]])  # |z - r|^2 = [1, 4, 1, 25]
    y = torch.tensor([0])
    assert UpdateConfig(method="elodi").resolved().topk == 2
    ucfg = UpdateConfig(method="elodi", alpha=1.0).resolved()
    top2, _ = make_objective(ucfg, fixed_teacher(r))(z, Batch(z, y, y))
    assert float(top2) == pytest.approx(6.0 / 3)
    ucfg = UpdateConfig(method="elodi", alpha=1.0, topk=0).resolved()
    every, _ = make_objective(ucfg, fixed_teacher(r))(z, Batch(z, y, y))
    assert float(every) == pytest.approx(31.0 / 4)


def test_every_update_trains_without_dropout_unless_told():
    for method in ("elodi", "ldi-old", "ce", "kd", "fd-kl", "fd-lm", "new-error"):
        assert with_method_defaults(TrainConfig(), method).dropout == 0.0


def test_the_plain_update_averages_its_weights_unless_told():
    assert with_method_defaults(TrainConfig(), "ce").ema_epochs == 1.0
    assert with_method_defaults(TrainConfig(ema_epochs=0.0), "ce").ema_epochs == 0.0
    assert with_method_defaults(TrainConfig(), "elodi").ema_epochs == 0.0
    assert with_method_defaults(TrainConfig(dropout=0.3), "elodi").dropout == 0.3
    assert with_method_defaults(TrainConfig(), "elodi").clip_grad_norm == 5.0


def kl_at(tau: float, fixed: list[float], student: list[float]) -> float:
    """KL(softmax(fixed/τ) || softmax(student/τ)) · τ², written out."""
    q = [math.exp(v) for v in log_softmax([x / tau for x in fixed])]
    return tau * tau * sum(qi * (lf - ls) for qi, lf, ls in zip(
        q, log_softmax([x / tau for x in fixed]), log_softmax([x / tau for x in student]), strict=True))


CE = [-log_softmax(Z[i].tolist())[int(Y[i])] for i in range(2)]
OLD_RIGHT = [1.0, 0.0]  # argmax R = [1, 0] against Y = [1, 2]
# ldi-old: ξ = 0.5 -> excesses [0.5, 0, 0.5] and [0.5, 0, 2.5]; squared means 0.5/3 and 6.5/3
LDI_OLD = [0.5 / 3, 6.5 / 3]
KD = [kl_at(4.0, R[i].tolist(), Z[i].tolist()) for i in range(2)]
FD_KL = [(1 + 5 * OLD_RIGHT[i]) * kl_at(100.0, R[i].tolist(), Z[i].tolist()) for i in range(2)]
# ½‖z − r‖² summed over classes: ½(1 + 0.04 + 1), ½(1 + 0 + 9)
FD_LM = [(1 + 5 * OLD_RIGHT[0]) * 0.5 * 2.04, (1 + 5 * OLD_RIGHT[1]) * 0.5 * 10.0]
NEW_ERROR = [CE[i] * OLD_RIGHT[i] for i in range(2)]


@pytest.mark.parametrize("method, alpha, aux", [
    ("ldi-old", 0.5, LDI_OLD), ("kd", 0.5, KD), ("fd-kl", 0.5, FD_KL), ("fd-lm", 0.1, FD_LM),
    ("new-error", 0.5, NEW_ERROR), ("ce", 0.0, None),
], ids=["ldi-old", "kd", "fd-kl", "fd-lm", "new-error", "ce"])
def test_every_method_objective_by_hand_at_its_defaults(method, alpha, aux):
    """(1 - α)·mean CE + α·mean aux, with each method's default α, ξ, τ, a, b (the teacher: R)."""
    loss, parts = objective_for(method)(Z, Batch(torch.zeros(2, 1, 1, 1), Y, torch.arange(2)))
    expected = (1 - alpha) * sum(CE) / 2 + (alpha * sum(aux) / 2 if aux else 0.0)
    rel = 1e-3 if method == "fd-kl" else 1e-5  # τ² = 10⁴ times a float32 KL of ~1e-4: cancellation
    assert float(loss) == pytest.approx(expected, rel=rel)
    if aux:
        assert float(parts["aux"]) == pytest.approx(sum(aux) / 2, rel=rel)


def test_ce_refuses_parameters_it_would_ignore():
    from modelupdate.errors import ConfigError

    with pytest.raises(ConfigError, match="--alpha: --method ce is plain cross-entropy"):
        UpdateConfig(method="ce", alpha=0.7).resolved()


def test_the_method_follows_the_inputs_when_not_named():
    assert UpdateConfig().for_inputs(has_reference=True, has_old=True).method == "elodi"
    assert UpdateConfig().for_inputs(has_reference=False, has_old=True).method == "ldi-old"
    assert UpdateConfig(method="kd").for_inputs(has_reference=True, has_old=True).method == "kd"


def test_each_logged_step_records_the_loss_parts_and_the_gradient_norm(tiny_data_config, tiny_train_config,
                                                                      tmp_path):
    import json

    from modelupdate.workflows.ensemble_train import ensemble_train
    from modelupdate.workflows.ldi_train import ldi_train

    reference = tmp_path / "ref.safetensors"
    ensemble_train(tiny_data_config(), tiny_train_config(), reference, 2)
    out = tmp_path / "new.safetensors"
    ldi_train(tiny_data_config(), tiny_train_config(epochs=2, batch_size=16), UpdateConfig(method="elodi"), out,
              reference=reference)
    records = [json.loads(line) for line in out.with_name("new.log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) >= 2 and {r["epoch"] for r in steps} == {0, 1}
    for r in steps:
        assert r["grad_norm"] > 0 and r["ce"] > 0 and r["aux"] >= 0
        assert r["loss"] > 0 and 0 < r["lr"] and r["global_step"] <= r["total_steps"]
