"""The training methods of `ldi-train`: one registry entry each (docs/method.md).

A method says what the student is held against (the reference ensemble, the old model, or nothing), its
parameter defaults, its gradient clipping and weight EMA where the user gives none, and its loss beside
the cross-entropy. Everything else is derived from the entry: the input checks, the teacher, the objective
(``make_objective``), the checkpoint's record and the ``--help`` texts. Adding a method is an entry here, its
loss in ``losses.py`` and a test against hand-computed values.

Defaults: ELODI's were chosen on Fashion-MNIST's validation split by a rule fixed before the runs
(docs/results.md); ldi-old follows the authors' published commands (docs/method.md); kd / fd follow the
PC-Training and KD papers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import torch

from . import losses
from .config import TrainConfig, _JsonMixin, with_update_dropout
from .errors import ConfigError
from .fields import field_error, flag
from .validation import check_field_types, guard_init

if TYPE_CHECKING:
    from .data import Batch

HeldAgainst = Literal["reference", "old", "none"]
# (student logits [B, C], teacher logits [B, C], targets [B], per-sample CE [B], params) -> per-sample loss [B]
AuxLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "MethodParams"], torch.Tensor]
# the parameters a method may give a default for; a method without a loss (ce) refuses every one of them
LOSS_PARAMS = ("alpha", "xi", "topk", "exclude_target", "tau")
_NEUTRAL = {"alpha": 0.0, "xi": 0.0, "topk": None, "exclude_target": False, "tau": 1.0}


@dataclass(frozen=True)
class Method:
    name: str
    held_against: HeldAgainst
    summary: str  # one line of --help
    aux_loss: AuxLoss | None  # None: plain cross-entropy
    # the LOSS_PARAMS the loss reads, with their defaults; the others are recorded at neutral values
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # where --clip-grad-norm is not given: squared logit differences have gradients that grow with the
    # student-teacher gap (large in the first steps); CE, KD and fd-kl have bounded gradients
    clip_grad_norm: float | None = None
    ema_epochs: float = 0.0  # where --ema-epochs is not given (docs/results.md, "Baselines users already run")


@dataclass(frozen=True)
class MethodParams:
    """An update's method and its parameters, every default filled (``resolve``): what the checkpoint records."""

    method: str
    alpha: float
    xi: float
    p: float
    topk: int | None  # None or 0: every class
    exclude_target: bool
    weighting: str
    tau: float
    fd_a: float
    fd_b: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ldi(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, ce: torch.Tensor, p: MethodParams) -> torch.Tensor:
    return losses.ldi_loss(z, t, y, xi=p.xi, p=p.p, topk=p.topk or None, exclude_target=p.exclude_target,
                           weighting=p.weighting)


def _kd(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, ce: torch.Tensor, p: MethodParams) -> torch.Tensor:
    return losses.kd_loss(z, t, tau=p.tau)


def _focal(distance: str) -> AuxLoss:
    def loss(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, ce: torch.Tensor, p: MethodParams) -> torch.Tensor:
        return losses.focal_distillation_loss(z, t, y, a=p.fd_a, b=p.fd_b, distance=distance, tau=p.tau)

    return loss


def _new_error(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, ce: torch.Tensor, p: MethodParams
               ) -> torch.Tensor:
    return losses.new_error_loss(z, t, y, cross_entropy=ce)


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("elodi", "reference", "LDI towards the reference ensemble", _ldi,
           {"alpha": 0.5, "xi": 0.0, "topk": 2, "exclude_target": False}, clip_grad_norm=5.0),
    Method("ldi-old", "old", "LDI towards the old model", _ldi,
           {"alpha": 0.5, "xi": 0.5, "topk": None, "exclude_target": False}, clip_grad_norm=5.0),
    Method("kd", "old", "knowledge distillation from the old model", _kd, {"alpha": 0.5, "tau": 4.0}),
    Method("fd-kl", "old", "focal distillation, KL", _focal("kl"), {"alpha": 0.5, "tau": 100.0}),
    # fd-lm sums ½‖z − z_old‖² over classes: ~C x a per-class loss, hence the small α (docs/results.md)
    Method("fd-lm", "old", "focal distillation, logit matching", _focal("lm"), {"alpha": 0.1}, clip_grad_norm=5.0),
    Method("new-error", "old", "CE weighted up where the old model is right", _new_error, {"alpha": 0.5}),
    Method("ce", "none", "plain cross-entropy", None, ema_epochs=1.0),
)}
METHODS = tuple(REGISTRY)


def method_named(name: str) -> Method:
    if name not in REGISTRY:
        raise ConfigError(f"--method: expected one of {', '.join(METHODS)}, got {name!r}")
    return REGISTRY[name]


def held_against(kind: HeldAgainst) -> list[str]:
    """The names of the methods held against ``kind``, in registry order."""
    return [m.name for m in REGISTRY.values() if m.held_against == kind]


def using(param: str) -> dict[str, Any]:
    """Method name -> its default of ``param`` (one of LOSS_PARAMS), for the methods whose loss reads it."""
    return {m.name: m.defaults[param] for m in REGISTRY.values() if param in m.defaults}


def resolve(method: str, given: Mapping[str, Any]) -> MethodParams:
    """``given`` (an UpdateConfig's fields, None where unset) with the method's defaults filled in.

    Raises ConfigError naming the options a method without a loss of its own has no use for."""
    entry = method_named(method)
    if entry.aux_loss is None:
        unused = [f"--{name.replace('_', '-')}" for name in LOSS_PARAMS if given.get(name) is not None]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: --method {method} is {entry.summary} and uses none of them")
    fields = {f.name for f in dataclasses.fields(MethodParams)}
    values = {k: v for k, v in given.items() if k in fields}
    values["method"] = method
    for key in LOSS_PARAMS:
        if values.get(key) is None:
            values[key] = entry.defaults.get(key, _NEUTRAL[key])
    return MethodParams(**values)


# --------------------------------------------------------------------------- what the user said


def per_method(values: Mapping[str, Any], none: str = "none") -> str:
    """A default that depends on the method, for --help: "0.1 for fd-lm, else 0.5"; every value named when
    none is shared ("4 for kd, 100 for fd-kl")."""
    def show(value: Any) -> str:
        return none if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    groups: dict[str, list[str]] = {}
    for name, value in values.items():
        groups.setdefault(show(value), []).append(name)
    common = max(groups, key=lambda v: len(groups[v]))
    if len(groups) == 1:
        return common
    if len(groups[common]) == 1:
        return ", ".join(f"{v} for {names[0]}" for v, names in groups.items())
    return ", ".join(f"{v} for {', '.join(names)}" for v, names in groups.items() if v != common) + f", else {common}"


def set_by_methods(attribute: str) -> str:
    """"ldi-train's elodi, ldi-old and fd-lm: 5": the methods whose ``attribute`` (clip_grad_norm, ema_epochs)
    is set, and its value(s); for the help of the TrainConfig field it stands in for."""
    set_by = {m.name: getattr(m, attribute) for m in REGISTRY.values() if getattr(m, attribute)}
    return f"ldi-train's {', '.join(set_by)}: {per_method(set_by)}"


LDI_WEIGHTINGS = ("uniform", "softmax")


@dataclass
class UpdateConfig(_JsonMixin):
    """How the new model is held against the old model / reference (docs/method.md): ldi-train's method
    options, their help and defaults generated from the registry."""

    # None: elodi with a reference, else ldi-old (see for_inputs)
    method: str | None = field(default=None, metadata=flag(
        "--method", "; ".join(f"{m.name}: {m.summary}" for m in REGISTRY.values()),
        default_text="elodi with --reference, else ldi-old"))
    alpha: float | None = field(default=None, metadata=flag(
        "--alpha", "Weight of the method's loss: (1-a)*CE + a*loss", default_text=per_method(using("alpha"))))
    xi: float | None = field(default=None, metadata=flag(
        "--xi", "LDI margin: logit differences up to xi cost nothing", default_text=per_method(using("xi"))))
    p: float = field(default=2.0, metadata=flag("--p", "LDI exponent."))
    topk: int | None = field(default=None, metadata=flag(  # 0: every class
        "--topk", "LDI over the union of the top-K classes of reference and student, per sample; 0: every class",
        default_text=per_method(using("topk"), "every class")))
    exclude_target: bool | None = field(default=None, metadata=flag(
        "--exclude-target", "Leave the true class out of the LDI loss.", off="--all-classes"))
    # LDI: uniform over S(i), or each class weighted by the reference's softmax
    weighting: str = field(default="uniform", metadata=flag(
        "--weighting", "LDI: uniform over the classes, or each class weighted by the reference's softmax "
        "probability."))
    tau: float | None = field(default=None, metadata=flag(
        "--tau", "Temperature of kd and fd-kl", default_text=per_method(using("tau"))))
    fd_a: float = field(default=1.0, metadata=flag("--fd-a", "Focal distillation: weight of every sample."))
    fd_b: float = field(default=5.0, metadata=flag(
        "--fd-b", "Focal distillation: extra weight where the old model is right."))

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.method is not None:
            method_named(self.method)
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise field_error(self, "alpha", "expected a value in [0, 1]")
        if self.xi is not None and not 0 <= self.xi < math.inf:
            raise field_error(self, "xi", "expected a finite value >= 0")
        if not 0 < self.p < math.inf:
            raise field_error(self, "p", "expected a finite value > 0")
        if self.tau is not None and not 0 < self.tau < math.inf:
            raise field_error(self, "tau", "expected a finite temperature > 0")
        for name in ("fd_a", "fd_b"):
            if not 0 <= getattr(self, name) < math.inf:
                raise field_error(self, name, "expected a finite value >= 0")
        if self.topk is not None and self.topk < 0:
            raise field_error(self, "topk", "expected an integer >= 0 (0: every class)")
        if self.weighting not in LDI_WEIGHTINGS:
            raise field_error(self, "weighting", f"expected one of {', '.join(LDI_WEIGHTINGS)}")

    def for_inputs(self, *, has_reference: bool, has_old: bool) -> UpdateConfig:
        """The method named, or the default for the inputs given: LDI towards the ensemble when there
        is a reference (elodi), else towards the old model (ldi-old)."""
        if self.method is not None:
            return self
        return replace(self, method="elodi" if has_reference or not has_old else "ldi-old")

    def resolved(self) -> MethodParams:
        """Every parameter of the method, its defaults filled in (methods.py holds them); refuses parameters
        the method has no use for."""
        if self.method is None:
            raise ConfigError("--method: no method given (UpdateConfig.for_inputs picks the default)")
        return resolve(self.method, self.to_dict())

def with_method_defaults(cfg: TrainConfig, method: str) -> TrainConfig:
    """``cfg`` with the method's gradient clipping and weight EMA and the update's dropout where the user left
    them unset."""
    entry = method_named(method)
    if cfg.clip_grad_norm is None and entry.clip_grad_norm is not None:
        cfg = replace(cfg, clip_grad_norm=entry.clip_grad_norm)
    if cfg.ema_epochs is None:
        cfg = replace(cfg, ema_epochs=entry.ema_epochs)
    return with_update_dropout(cfg)


guard_init(UpdateConfig)


# --------------------------------------------------------------------------- the objective


def make_objective(params: MethodParams, teacher_logits: Callable[[Batch], torch.Tensor] | None,
                   label_smoothing: float = 0.0) -> losses.Objective:
    """(student logits [B, C], batch) -> (loss, parts): (1-α)·CE + α·the method's loss against the teacher's
    logits on the same batch (``teacher_logits``; None for a method held against nothing)."""
    aux_loss = method_named(params.method).aux_loss
    if aux_loss is None:
        def plain(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
            return losses.batch_cross_entropy(logits.float(), batch, label_smoothing).mean(), {}

        return plain
    if teacher_logits is None:
        raise ConfigError(f"--method {params.method}: needs the logits of the model it is held against")
    fetch = teacher_logits

    def objective(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        logits = logits.float()
        ce = losses.batch_cross_entropy(logits, batch, label_smoothing)
        aux = aux_loss(logits, fetch(batch), batch.targets, ce, params)
        return losses.combined_objective(ce, aux, params.alpha), {"ce": ce.detach().mean(),
                                                                   "aux": aux.detach().mean()}

    return objective
