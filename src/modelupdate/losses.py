"""Per-sample training losses: LDI and the baselines it is compared against.

Pure functions over tensors; nothing but torch is imported (a batch's type only for annotations). Shapes use
``B`` for the batch and ``C`` for the classes. Every loss returns one value
per sample (``[B]``) so the caller decides how to reduce and weight them;
``combined_objective`` is the reduction the method uses.

Whatever is held fixed (the reference, the teacher, the old model) is detached
here, so no gradient can reach it even if the caller forgot ``no_grad``.

Losses are computed in at least float32: half-precision logits from autocast
are cast up (float64 stays float64, which gradient checks rely on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .data import Batch

__all__ = [
    "batch_cross_entropy",
    "combined_objective",
    "focal_distillation_loss",
    "kd_loss",
    "ldi_loss",
    "new_error_loss",
]

FOCAL_DISTANCES = ("kl", "lm")
# An objective maps (student logits [B, C], batch) to (scalar loss, named parts for the log; tensors are
# read only when a step is logged, so the loop does not wait on the device every step).
Objective = Callable[[Tensor, "Batch"], tuple[Tensor, dict[str, float | Tensor]]]


def batch_cross_entropy(logits: Tensor, batch: Batch, label_smoothing: float = 0.0) -> Tensor:
    """Per-sample CE [B] against the batch's labels, or its mixed soft targets where it has them."""
    targets = batch.soft_targets if batch.soft_targets is not None else batch.targets
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction="none")


def _at_least_float32(t: Tensor) -> Tensor:
    """Cast half/bfloat16 (or integer) logits up to float32; keep float64 as is."""
    return t if t.dtype == torch.float64 else t.float()


def _check_logits(name: str, logits: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name} must have shape [B, C], got {tuple(logits.shape)}")


def _check_logit_pair(first_name: str, first: Tensor, second_name: str, second: Tensor) -> None:
    _check_logits(first_name, first)
    _check_logits(second_name, second)
    if first.shape != second.shape:
        raise ValueError(
            f"{first_name} {tuple(first.shape)} and {second_name} "
            f"{tuple(second.shape)} must have the same shape [B, C]"
        )


def _check_targets(targets: Tensor, batch_size: int) -> None:
    # Only shape and dtype: checking the label range would force a host sync
    # every step on an accelerator; labels are validated when data is loaded.
    if targets.dim() != 1 or targets.shape[0] != batch_size:
        raise ValueError(f"targets must have shape [B]=[{batch_size}], got {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must hold integer class indices, got {targets.dtype}")


def _check_temperature(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")


def _kl_at_temperature(student_logits: Tensor, fixed_logits: Tensor, tau: float) -> Tensor:
    """``KL(softmax(fixed/τ) || softmax(student/τ)) · τ²`` per sample, ``[B]``.

    The τ² factor keeps gradient magnitudes comparable across temperatures
    (Hinton et al.), so a loss weight tuned at one τ still makes sense at another.
    """
    log_student = F.log_softmax(student_logits / tau, dim=1)
    log_fixed = F.log_softmax(fixed_logits / tau, dim=1)
    kl = F.kl_div(log_student, log_fixed, reduction="none", log_target=True).sum(dim=1)
    return kl * (tau * tau)


def _old_model_correct(old_logits: Tensor, targets: Tensor) -> Tensor:
    """``[B]`` bool: the old model's top-1 prediction equals the target."""
    return old_logits.argmax(dim=1) == targets


def ldi_loss(
    student_logits: Tensor,
    reference_logits: Tensor,
    targets: Tensor,
    *,
    xi: float = 0.0,
    p: float = 2.0,
    topk: int | None = None,
    exclude_target: bool = False,
    weighting: str = "uniform",
) -> Tensor:
    """Logit Difference Inhibition, one value per sample.

    ``l_i = mean_{k in S(i)} max(|z_ik - r_ik| - xi, 0) ** p`` (``weighting="uniform"``), or with
    ``weighting="softmax"`` the mean weighted by the reference's probabilities ``q_ik = softmax(r_i)_k``:
    ``l_i = sum_{k in S(i)} q_ik d_ik / sum_{k in S(i)} q_ik``, so the classes the reference
    considers likely (where a prediction can flip) count most.

    Args:
        student_logits: ``z``, ``[B, C]``.
        reference_logits: ``r``, ``[B, C]``; treated as a constant (detached).
        targets: ``[B]`` integer class indices; used only by ``exclude_target``.
        xi: margin ``>= 0``; differences up to ``xi`` cost nothing.
        p: exponent ``> 0`` applied to the excess over the margin.
        topk: if given, ``S(i)`` is the union of the ``topk`` largest reference
            logits and the ``topk`` largest student logits *of sample i* (a
            per-sample mask, not a slice of the batch). A value ``>= C`` means
            every class.
        exclude_target: leave the true class out of ``S(i)``, so the student
            stays free to raise its target logit.
        weighting: ``"uniform"`` or ``"softmax"`` (see above).

    Returns:
        ``[B]`` loss per sample, float32 (float64 for float64 inputs). A sample
        whose ``S(i)`` is empty (topk with exclude_target can do that) gets 0.
    """
    _check_logit_pair("student_logits", student_logits, "reference_logits", reference_logits)
    batch_size, num_classes = student_logits.shape
    _check_targets(targets, batch_size)
    if not xi >= 0:
        raise ValueError(f"xi (the LDI margin) must be >= 0, got {xi}")
    if not p > 0:
        raise ValueError(f"p (the LDI exponent) must be > 0, got {p}")
    if topk is not None and topk < 1:
        raise ValueError(f"topk must be a positive number of classes or None, got {topk}")
    if weighting not in ("uniform", "softmax"):
        raise ValueError(f"weighting must be 'uniform' or 'softmax', got {weighting!r}")

    student = _at_least_float32(student_logits)
    reference = _at_least_float32(reference_logits.detach()).to(student.dtype)

    excess = (student - reference).abs() - xi
    positive = excess > 0
    # Raise only positive excesses to the power p: where(x > 0, x ** p, 0)
    # would still back-propagate 0 * inf = NaN through x ** p for p < 1.
    safe_excess = torch.where(positive, excess, torch.ones_like(excess))
    term = torch.where(positive, safe_excess.pow(p), torch.zeros_like(excess))

    in_set = _ldi_class_mask(student, reference, targets, topk=topk, exclude_target=exclude_target)
    weights = in_set.to(term.dtype)
    if weighting == "softmax":
        weights = weights * reference.softmax(dim=1)
        # an empty S(i) has zero weights: the sample's loss is 0, as in the uniform case
        return (term * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=torch.finfo(term.dtype).tiny)
    count = weights.sum(dim=1)
    # clamp(min=1): an empty S(i) has a zero sum, so the sample's loss is 0.
    return (term * weights).sum(dim=1) / count.clamp(min=1)


def _ldi_class_mask(
    student: Tensor,
    reference: Tensor,
    targets: Tensor,
    *,
    topk: int | None,
    exclude_target: bool,
) -> Tensor:
    """``[B, C]`` bool: which classes count for each sample (``S(i)``)."""
    batch_size, num_classes = student.shape
    if topk is None or topk >= num_classes:
        mask = torch.ones(batch_size, num_classes, dtype=torch.bool, device=student.device)
    else:
        mask = torch.zeros(batch_size, num_classes, dtype=torch.bool, device=student.device)
        # topk along dim=1 picks classes within each row, so the union is per sample.
        mask.scatter_(1, reference.topk(topk, dim=1).indices, True)
        mask.scatter_(1, student.detach().topk(topk, dim=1).indices, True)
    if exclude_target:
        mask.scatter_(1, targets.long().unsqueeze(1), False)
    return mask


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, *, tau: float) -> Tensor:
    """Knowledge distillation: ``KL(softmax(t/τ) || softmax(s/τ)) · τ²`` per sample.

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``; treated as a constant (detached).
        tau: temperature ``> 0``.

    Returns:
        ``[B]`` float32 (float64 for float64 inputs).
    """
    _check_logit_pair("student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_temperature(tau)
    student = _at_least_float32(student_logits)
    teacher = _at_least_float32(teacher_logits.detach()).to(student.dtype)
    return _kl_at_temperature(student, teacher, tau)


def focal_distillation_loss(
    student_logits: Tensor,
    old_logits: Tensor,
    targets: Tensor,
    *,
    a: float = 1.0,
    b: float = 5.0,
    distance: str = "kl",
    tau: float = 100.0,
) -> Tensor:
    """Focal distillation (PC-Training): distill harder where the old model was right.

    ``w_i = a + b · 1[argmax old_i == y_i]``, returns ``w_i · d_i`` with
    ``d_i = KL(softmax(old/τ) || softmax(z/τ)) · τ²`` for ``distance="kl"`` or
    ``d_i = ½ ‖z_i − old_i‖²`` (sum over classes) for ``distance="lm"``.

    Args:
        student_logits: ``z``, ``[B, C]``.
        old_logits: ``[B, C]`` from the old model; treated as a constant.
        targets: ``[B]`` integer class indices.
        a, b: base weight and extra weight on samples the old model gets right.
        distance: ``"kl"`` or ``"lm"`` (logit matching).
        tau: temperature for ``"kl"``, ``> 0``; ignored for ``"lm"``.

    Returns:
        ``[B]`` float32 (float64 for float64 inputs).
    """
    _check_logit_pair("student_logits", student_logits, "old_logits", old_logits)
    _check_targets(targets, student_logits.shape[0])
    if distance not in FOCAL_DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(FOCAL_DISTANCES)}, got {distance!r}")
    student = _at_least_float32(student_logits)
    old = _at_least_float32(old_logits.detach()).to(student.dtype)
    if distance == "kl":
        _check_temperature(tau)
        per_sample_distance = _kl_at_temperature(student, old, tau)
    else:
        per_sample_distance = 0.5 * (student - old).pow(2).sum(dim=1)
    weight = a + b * _old_model_correct(old, targets).to(student.dtype)
    return weight * per_sample_distance


def new_error_loss(student_logits: Tensor, old_logits: Tensor, targets: Tensor, *,
                   cross_entropy: Tensor | None = None) -> Tensor:
    """CE on the samples the old model gets right: ``ce_i · 1[argmax old_i == y_i]`` per sample.

    The method's objective adds it to CE on every sample (``combined_objective``), so the samples the
    old model gets right count twice as much at α = 0.5. ``cross_entropy``: the per-sample CE already
    computed (e.g. against a mixed batch's soft targets); by default CE against ``targets``.

    Args:
        student_logits: ``[B, C]``.
        old_logits: ``[B, C]``; only its argmax is used.
        targets: ``[B]`` integer class indices.

    Returns:
        ``[B]`` float32 (float64 for float64 inputs).
    """
    _check_logit_pair("student_logits", student_logits, "old_logits", old_logits)
    _check_targets(targets, student_logits.shape[0])
    if cross_entropy is None:
        cross_entropy = F.cross_entropy(_at_least_float32(student_logits), targets.long(), reduction="none")
    old_correct = _old_model_correct(old_logits.detach(), targets)
    return cross_entropy * old_correct.to(cross_entropy.dtype)


def combined_objective(ce: Tensor, aux: Tensor, alpha: float) -> Tensor:
    """``(1 - α) · mean(ce) + α · mean(aux)``, a scalar; ``ce`` and ``aux`` are ``[B]``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return (1.0 - alpha) * ce.mean() + alpha * aux.mean()
