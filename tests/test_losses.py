"""Losses against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from modelupdate.losses import (
    combined_objective,
    focal_distillation_loss,
    kd_loss,
    ldi_loss,
    new_error_loss,
)

LN2 = math.log(2.0)
LN3 = math.log(3.0)
# KL([3/4, 1/4] || [1/2, 1/2]) = 3/4·ln(3/2) + 1/4·ln(1/2)
KL_QUARTERS_VS_HALVES = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # ≈ 0.130812


def close(actual: torch.Tensor, expected: list[float] | float) -> None:
    torch.testing.assert_close(
        actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-5, atol=1e-6
    )


# B=2, C=3. d = z - r:
#   sample 0: [1-0, 2-2.2, 0-1] = [1.0, -0.2, -1.0]  -> |d| = [1.0, 0.2, 1.0]
#   sample 1: [0-1, 0-0,   3-0] = [-1.0, 0.0, 3.0]   -> |d| = [1.0, 0.0, 3.0]
Z3 = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
R3 = torch.tensor([[0.0, 2.2, 1.0], [1.0, 0.0, 0.0]])
Y3 = torch.tensor([1, 2])


def test_ldi_all_classes_margin_and_square() -> None:
    # xi=0.5: max(|d| - 0.5, 0) = [0.5, 0, 0.5] and [0.5, 0, 2.5]
    # p=2:    [0.25, 0, 0.25] -> 0.5/3;  [0.25, 0, 6.25] -> 6.5/3
    close(ldi_loss(Z3, R3, Y3, xi=0.5, p=2), [0.5 / 3, 6.5 / 3])


def test_ldi_exponent_one() -> None:
    # p=1: [0.5, 0, 0.5] -> 1/3;  [0.5, 0, 2.5] -> 3/3
    close(ldi_loss(Z3, R3, Y3, xi=0.5, p=1), [1.0 / 3, 1.0])


def test_ldi_no_margin_is_mean_squared_difference() -> None:
    # xi=0, p=2: [1, 0.04, 1] -> 2.04/3 = 0.68;  [1, 0, 9] -> 10/3
    close(ldi_loss(Z3, R3, Y3), [0.68, 10.0 / 3])


def test_ldi_exclude_target_means_over_remaining_classes() -> None:
    # targets [1, 2], xi=0.5, p=2:
    # sample 0 drops class 1: [0.25, 0.25] -> 0.25
    # sample 1 drops class 2: [0.25, 0]    -> 0.125
    close(ldi_loss(Z3, R3, Y3, xi=0.5, p=2, exclude_target=True), [0.25, 0.125])


# B=2, C=5; chosen so the two samples have *different* top-K class sets.
#   z0 = [4, 0, 0, 0, 1]  r0 = [0, 3, 0, 0, 2]  d0² = [16, 9, 0, 0, 1]
#   z1 = [0, 1, 0, 5, 0]  r1 = [0, 0, 2, 3, 0]  d1² = [0, 1, 4, 4, 0]
Z5 = torch.tensor([[4.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 5.0, 0.0]])
R5 = torch.tensor([[0.0, 3.0, 0.0, 0.0, 2.0], [0.0, 0.0, 2.0, 3.0, 0.0]])
Y5 = torch.tensor([1, 3])


def test_ldi_topk_is_a_per_sample_union() -> None:
    # K=1: sample 0: student top-1 {0} ∪ reference top-1 {1} = {0, 1} -> (16+9)/2 = 12.5
    #      sample 1: student top-1 {3} ∪ reference top-1 {3} = {3}    -> 4/1 = 4
    # (A batch-wide union {0, 1, 3} would give 25/3 and 9/3; all classes 26/5 and 9/5.)
    close(ldi_loss(Z5, R5, Y5, topk=1), [12.5, 4.0])
    # K=2: sample 0: {0, 4} ∪ {1, 4} = {0, 1, 4} -> (16+9+1)/3 = 26/3
    #      sample 1: {3, 1} ∪ {3, 2} = {1, 2, 3} -> (1+4+4)/3 = 3
    close(ldi_loss(Z5, R5, Y5, topk=2), [26.0 / 3, 3.0])


def test_ldi_topk_does_not_depend_on_the_other_samples_in_the_batch() -> None:
    together = ldi_loss(Z5, R5, Y5, topk=1)
    alone = torch.cat(
        [ldi_loss(Z5[i : i + 1], R5[i : i + 1], Y5[i : i + 1], topk=1) for i in range(2)]
    )
    torch.testing.assert_close(together, alone)
    # Reversing the batch reverses the losses: no position in the batch is special.
    torch.testing.assert_close(
        ldi_loss(Z5.flip(0), R5.flip(0), Y5.flip(0), topk=1), together.flip(0)
    )


def test_ldi_topk_with_exclude_target_and_empty_set() -> None:
    # K=1, targets [1, 3]: sample 0 keeps {0} -> 16; sample 1 keeps {} -> 0 (not NaN)
    close(ldi_loss(Z5, R5, Y5, topk=1, exclude_target=True), [16.0, 0.0])


def test_ldi_topk_at_least_classes_is_all_classes() -> None:
    torch.testing.assert_close(ldi_loss(Z5, R5, Y5, topk=5), ldi_loss(Z5, R5, Y5))
    torch.testing.assert_close(ldi_loss(Z5, R5, Y5, topk=9), ldi_loss(Z5, R5, Y5))


def test_ldi_gradient_by_hand_and_reference_gets_none() -> None:
    # xi=0, p=2, all classes: d l_i / d z_ik = 2·d_ik / C
    z = Z3.clone().requires_grad_(True)
    r = R3.clone().requires_grad_(True)
    ldi_loss(z, r, Y3).sum().backward()
    close(z.grad, (2 * (Z3 - R3) / 3).tolist())
    assert r.grad is None


def test_ldi_gradient_is_zero_inside_the_margin() -> None:
    # |d| = 0.2 < xi = 0.5 for sample 0, class 1: that class gets no gradient.
    z = Z3.clone().requires_grad_(True)
    ldi_loss(z, R3, Y3, xi=0.5).sum().backward()
    assert z.grad[0, 1] == 0
    # p=2, xi=0.5, sample 0 class 0: 2·(|d| - xi)·sign(d)/C = 2·0.5·1/3
    assert z.grad[0, 0].item() == pytest.approx(1.0 / 3)


def _away_from_kink(xi: float, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits whose |z - r| stays at least 0.15 away from xi (and from 0)."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(shape, dtype=torch.float64, generator=generator)
    magnitude = torch.empty(shape, dtype=torch.float64).uniform_(
        xi + 0.15, xi + 1.5, generator=generator
    )
    # Half the entries inside the margin (gradient 0 there), half outside.
    inside = torch.rand(shape, generator=generator) < 0.5
    if xi > 0.3:
        magnitude = torch.where(inside, torch.full_like(magnitude, 0.15), magnitude)
    sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
    return z, z - sign * magnitude


@pytest.mark.parametrize(
    "options",
    [
        {"xi": 0.5, "p": 2.0},
        {"xi": 0.5, "p": 1.0},
        {"xi": 0.0, "p": 1.5},
        {"xi": 0.5, "p": 2.0, "topk": 2, "exclude_target": True},
    ],
)
def test_ldi_gradcheck(options: dict) -> None:
    z, r = _away_from_kink(options["xi"], (3, 6))
    targets = torch.tensor([0, 3, 5])
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: ldi_loss(s, r, targets, **options), (z,))


def test_ldi_computes_in_float32_under_autocast() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ldi_loss(Z3.bfloat16(), R3.bfloat16(), Y3, xi=0.5)
    assert loss.dtype == torch.float32
    close(loss, [0.5 / 3, 6.5 / 3])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ldi_loss(Z3, R5, Y3), "same shape"),
        (lambda: ldi_loss(Z3[0], R3[0], Y3), r"shape \[B, C\]"),
        (lambda: ldi_loss(Z3, R3, Y5[:1]), r"targets must have shape \[B\]"),
        (lambda: ldi_loss(Z3, R3, Y3.float()), "integer class indices"),
        (lambda: ldi_loss(Z3, R3, Y3, xi=-0.1), "xi"),
        (lambda: ldi_loss(Z3, R3, Y3, p=0.0), "exponent"),
        (lambda: ldi_loss(Z3, R3, Y3, topk=0), "topk"),
        (lambda: kd_loss(Z3, R3, tau=0.0), "temperature"),
        (lambda: focal_distillation_loss(Z3, R3, Y3, distance="l2"), "distance"),
        (lambda: combined_objective(Y3.float(), Y3.float(), 1.5), "alpha"),
    ],
)
def test_invalid_inputs_are_refused_with_a_clear_message(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# Two classes: softmax([ln3, 0]) = [3/4, 1/4], softmax([0, 0]) = [1/2, 1/2].
HALVES = torch.zeros(2, 2)
QUARTERS = torch.tensor([[LN3, 0.0], [0.0, LN3]])  # sample 1: [1/4, 3/4]


def test_kd_loss_by_hand() -> None:
    # tau=1: KL([3/4,1/4] || [1/2,1/2]) for both samples (sample 1 mirrored).
    close(kd_loss(HALVES, QUARTERS, tau=1.0), [KL_QUARTERS_VS_HALVES] * 2)
    # tau=2 on teacher 2·[ln3, 0]: same distributions, times tau² = 4.
    close(kd_loss(HALVES, 2 * QUARTERS, tau=2.0), [4 * KL_QUARTERS_VS_HALVES] * 2)
    close(kd_loss(QUARTERS, QUARTERS, tau=3.0), [0.0, 0.0])


def test_kd_gradient_by_hand_and_teacher_gets_none() -> None:
    # d/dz [KL(p_t || softmax(z/τ))·τ²] = τ·(p_s - p_t).
    # τ=2, teacher 2·[ln3, 0] -> p_t = [3/4, 1/4]; student 0 -> p_s = [1/2, 1/2]
    #   -> 2·[-1/4, 1/4] = [-0.5, 0.5]; sample 1 is mirrored.
    student = HALVES.clone().requires_grad_(True)
    teacher = (2 * QUARTERS).requires_grad_(True)
    kd_loss(student, teacher, tau=2.0).sum().backward()
    assert teacher.grad is None
    close(student.grad, [[-0.5, 0.5], [0.5, -0.5]])


def test_focal_distillation_by_hand() -> None:
    # Old logits QUARTERS: argmax [0, 1]; targets [0, 0] -> old right on sample 0 only.
    # Weights: a + b·1[old right] = [1 + 5, 1] = [6, 1].
    targets = torch.tensor([0, 0])
    # kl at tau=1: both distances are KL([3/4,1/4] || [1/2,1/2]).
    close(
        focal_distillation_loss(HALVES, QUARTERS, targets, distance="kl", tau=1.0),
        [6 * KL_QUARTERS_VS_HALVES, KL_QUARTERS_VS_HALVES],
    )
    # lm: ½‖z - old‖² with z = [[1, 1], [0, 0]], old = [[2, 1], [0, 3]]
    #   sample 0: ½·(1 + 0) = 0.5, ×6 = 3.0;  sample 1: ½·(0 + 9) = 4.5, ×1
    student = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    old = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    close(focal_distillation_loss(student, old, targets, distance="lm"), [3.0, 4.5])
    # a=2, b=0: uniform weight 2 -> [1.0, 9.0]
    close(focal_distillation_loss(student, old, targets, a=2.0, b=0.0, distance="lm"), [1.0, 9.0])


def test_focal_distillation_default_temperature_scales_by_tau_squared() -> None:
    # At tau=100 the logits 100·[ln3, 0] give the same [3/4, 1/4] -> KL·100²·6.
    targets = torch.tensor([0, 0])
    loss = focal_distillation_loss(HALVES, 100 * QUARTERS, targets)
    close(loss, [6e4 * KL_QUARTERS_VS_HALVES, 1e4 * KL_QUARTERS_VS_HALVES])


def test_new_error_loss_by_hand() -> None:
    # Student logits all zero: CE = ln 2 per sample. Old right on sample 0 only -> [ln2, 0]
    close(new_error_loss(HALVES, QUARTERS, torch.tensor([0, 0])), [LN2, 0.0])
    # with the CE given (e.g. against soft targets): that CE where the old model is right
    close(new_error_loss(HALVES, QUARTERS, torch.tensor([0, 0]), cross_entropy=torch.tensor([3.0, 5.0])), [3.0, 0.0])


def test_combined_objective_by_hand() -> None:
    # (1 - 0.25)·mean([1, 3]) + 0.25·mean([2, 4]) = 0.75·2 + 0.25·3 = 2.25
    result = combined_objective(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]), 0.25)
    assert result.dim() == 0
    assert result.item() == pytest.approx(2.25)


def test_ldi_softmax_weighting_weights_each_class_by_the_reference_probability() -> None:
    # one sample, C=3: r = [ln 2, 0, 0] -> softmax q = [2/4, 1/4, 1/4]; z - r = [1, 2, 0]
    # squared: [1, 4, 0]; weighted mean = (1/2·1 + 1/4·4 + 1/4·0) / 1 = 1.5 (uniform mean: 5/3)
    r = torch.tensor([[LN2, 0.0, 0.0]])
    z = r + torch.tensor([[1.0, 2.0, 0.0]])
    y = torch.tensor([0])
    close(ldi_loss(z, r, y, weighting="softmax"), [1.5])
    close(ldi_loss(z, r, y), [5.0 / 3.0])
    # true class (0) left out: (1/4·4 + 1/4·0) / (1/2) = 2.0
    close(ldi_loss(z, r, y, weighting="softmax", exclude_target=True), [2.0])
    with pytest.raises(ValueError, match="weighting"):
        ldi_loss(z, r, y, weighting="max")


def test_ldi_softmax_weighting_gradient_does_not_reach_the_reference() -> None:
    r = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    z = torch.zeros(1, 3, requires_grad=True)
    ldi_loss(z, r, torch.tensor([0]), weighting="softmax").sum().backward()
    assert r.grad is None and z.grad is not None and torch.isfinite(z.grad).all()
