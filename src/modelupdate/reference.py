"""What the student is held against: one model, an ensemble, or cached logits.

A reference is frozen: always in eval mode, never tracked by autograd. Its
logits are the *raw* logits (no softmax), averaged over members for an
ensemble, as LDI (docs/method.md, "The loss, exactly") compares logits directly.

``EnsembleReference`` runs its members either one after another (``loop``) or
all at once (``batched``: the members' weights stacked along a new leading
axis and the forward ``torch.vmap``-ed over it). Both give the same numbers;
batched launches one kernel per layer instead of M, which pays off on an
accelerator with small members. On the CPU it does not: there the loop is
faster (see ``EnsembleReference`` and docs/performance.md), so ``auto`` loops there.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["CachedReference", "EnsembleReference"]

ENSEMBLE_MODES = ("auto", "batched", "loop")

# Why "auto" loops on the CPU (the message ``fallback_reason`` gives there).
CPU_LOOP_REASON = "on the CPU the loop is faster than the batched (vmapped) forward"


def batched_pays_off(device: torch.device) -> bool:
    """Whether ``auto`` tries the batched forward for inputs on ``device``.

    On the CPU the vmapped forward measured slower than the loop (docs/performance.md, "The reference");
    an accelerator gains from M times fewer kernel launches.
    """
    return device.type != "cpu"


def _batching_obstacle(members: Sequence[nn.Module]) -> str | None:
    """Why these members cannot share one vmapped forward, or None if they can.

    Stacking needs one architecture: same class, same configuration (compared
    through ``repr``, which shows strides, paddings, ...), and the same names,
    shapes and dtypes of parameters and buffers.
    """
    first = members[0]
    first_repr = repr(first)
    first_layout = _tensor_layout(first)
    for index, member in enumerate(members[1:], start=1):
        if type(member) is not type(first):
            return f"member {index} is a {type(member).__name__}, member 0 a {type(first).__name__}"
        if repr(member) != first_repr:
            return f"member {index} is configured differently from member 0"
        if _tensor_layout(member) != first_layout:
            return (
                f"member {index} has parameters or buffers whose names, shapes "
                f"or dtypes differ from member 0's"
            )
    return None


def _tensor_layout(module: nn.Module) -> list[tuple[str, str, tuple[int, ...], torch.dtype]]:
    parameters = [("param", name, tuple(t.shape), t.dtype) for name, t in module.named_parameters()]
    buffers = [("buffer", name, tuple(t.shape), t.dtype) for name, t in module.named_buffers()]
    return parameters + buffers


class EnsembleReference(nn.Module):
    """Mean of the raw logits of M frozen member models.

    Args:
        members: the M models, normally one architecture trained with
            different seeds. Their parameters are set to ``requires_grad=False``
            and they are put (and kept) in eval mode.
        mode: ``"loop"`` runs members one after another; ``"batched"`` stacks
            their weights and vmaps one forward over them (members must share
            one architecture, else ``ValueError``); ``"auto"`` (default) loops
            for inputs on the CPU, and elsewhere (CUDA, MPS) uses batched when
            the members share one architecture, falling back to the loop for
            good if the first batched call raises.

    ``auto`` loops on the CPU because there the batched forward's grouped convolutions and reshapes
    cost more than M ordinary calls; its gain, M times fewer kernel launches, pays on an accelerator
    (measurements: docs/performance.md). The forced ``"batched"`` mode still runs it anywhere.

    The stacked weights are built lazily, on the first batched call, from the
    members' current parameters and buffers, and rebuilt after anything that
    goes through ``nn.Module._apply`` (``.to(...)``, ``.cuda()``, ``.half()``,
    ...) or ``load_state_dict``. They are a copy (M models' worth of memory on
    the members' device), not registered as buffers, so ``state_dict`` holds
    each weight once, under ``members.<i>.``. If you change member weights in
    place some other way, call ``refresh()``.
    """

    def __init__(self, members: Sequence[nn.Module], *, mode: str = "auto") -> None:
        super().__init__()
        if mode not in ENSEMBLE_MODES:
            raise ValueError(
                f"ensemble mode must be one of {', '.join(ENSEMBLE_MODES)}, got {mode!r}"
            )
        members = list(members)
        if not members:
            raise ValueError("an ensemble reference needs at least one member model")
        obstacle = _batching_obstacle(members)
        if mode == "batched" and obstacle is not None:
            raise ValueError(f"cannot batch the ensemble members: {obstacle}")

        self.members = nn.ModuleList(members)
        for parameter in self.members.parameters():
            parameter.requires_grad_(False)
        self.mode = mode
        # Why "auto" uses the loop whatever the device (None while batched may be used).
        self._fallback: str | None = obstacle if mode == "auto" else None
        if mode == "auto" and obstacle is None and len(members) == 1:
            self._fallback = "a single member has nothing to batch"
        self._batched_verified = False
        self._stacked: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None
        self._skeleton: nn.Module | None = None
        self.train(False)

    # -- mode --------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the members' weights live (the inputs must be there too)."""
        first = next(iter(self.members.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def fallback_reason(self) -> str | None:
        """Why ``auto`` mode uses the loop on the members' device (None when it tries batched)."""
        if self.mode != "auto":
            return None
        if self._fallback is not None:
            return self._fallback
        return None if batched_pays_off(self.device) else CPU_LOOP_REASON

    @property
    def active_mode(self) -> str:
        """The path the next forward on the members' device takes: ``"batched"`` or ``"loop"``."""
        return self._mode_for(self.device)

    def _mode_for(self, device: torch.device) -> str:
        if self.mode != "auto":
            return self.mode
        if self._fallback is not None or not batched_pays_off(device):
            return "loop"
        return "batched"

    def train(self, mode: bool = True) -> EnsembleReference:
        """Always eval, whatever ``mode`` says: a reference's BatchNorm statistics
        and dropout must not change, even when a parent module calls ``.train()``."""
        super().train(False)
        if self._skeleton is not None:
            self._skeleton.train(False)
        return self

    def _ensure_eval(self) -> None:
        # Catches a member switched to train mode directly, bypassing train().
        if any(module.training for module in self.members.modules()):
            self.train(False)

    # -- stacked weights ---------------------------------------------------

    def refresh(self) -> None:
        """Forget the stacked weights; the next batched call re-stacks them."""
        self._stacked = None

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001 - nn.Module's signature
        result = super()._apply(fn, *args, **kwargs)
        self.refresh()
        return result

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.refresh()
        super()._load_from_state_dict(*args, **kwargs)

    def _stacked_state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if self._stacked is None:
            params, buffers = stack_module_state(list(self.members))
            self._stacked = (
                {name: tensor.detach() for name, tensor in params.items()},
                {name: tensor.detach() for name, tensor in buffers.items()},
            )
        if self._skeleton is None:
            # A weightless copy of member 0 that functional_call fills with one
            # member's slice of the stacked weights; kept out of the module
            # tree so that .to() and state_dict() never see it.
            skeleton = copy.deepcopy(self.members[0]).to("meta")
            skeleton.train(False)
            object.__setattr__(self, "_skeleton", skeleton)
        return self._stacked

    # -- forward -----------------------------------------------------------

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` inputs → ``[B, C]`` mean of the members' raw logits."""
        return self.member_logits(x).mean(dim=0)

    @torch.no_grad()
    def member_logits(self, x: Tensor) -> Tensor:
        """``[B, ...]`` inputs → ``[M, B, C]`` raw logits of every member."""
        self._ensure_eval()
        if self._mode_for(x.device) == "loop":
            return self._loop_logits(x)
        if self.mode == "batched" or self._batched_verified:
            return self._batched_logits(x)
        # First call in auto mode: try batched; fall back to the loop for good
        # if vmap cannot handle these members (data-dependent control flow,
        # an op without a batching rule, ...).
        try:
            logits = self._batched_logits(x)
        except Exception as error:  # noqa: BLE001 - any failure means "use the loop"
            logits = self._loop_logits(x)  # if this raises too, the input is at fault
            self._fallback = f"batched forward failed: {type(error).__name__}: {error}"
            self._stacked = None  # free the stacked copy
            return logits
        self._batched_verified = True
        return logits

    def _loop_logits(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members])

    def _batched_logits(self, x: Tensor) -> Tensor:
        params, buffers = self._stacked_state()
        skeleton = cast(nn.Module, self._skeleton)  # set by _stacked_state()

        def one_member(
            member_params: dict[str, Tensor], member_buffers: dict[str, Tensor], inputs: Tensor
        ) -> Tensor:
            return functional_call(skeleton, (member_params, member_buffers), (inputs,))

        # in_dims: weights batched over members (dim 0), the input shared.
        return vmap(one_member, in_dims=(0, 0, None))(params, buffers, x)


class CachedReference:
    """Precomputed reference logits, looked up by sample id.

    Args:
        logits: ``[N, C]`` reference logits, one row per sample; must be finite.
        ids: ``[N]`` integer sample ids, one per row, all different. ``None``
            means ``0 .. N-1``.
    """

    def __init__(self, logits: Tensor, ids: Tensor | Sequence[int] | None = None) -> None:
        if logits.dim() != 2:
            raise ValueError(f"cached logits must have shape [N, C], got {tuple(logits.shape)}")
        if ids is None:
            ids = torch.arange(logits.shape[0], device=logits.device)
        if not isinstance(ids, Tensor):
            ids = torch.as_tensor(list(ids), dtype=torch.long)
        ids = ids.to(logits.device)
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(
                f"sample ids must be a 1-D integer tensor, got shape {tuple(ids.shape)} "
                f"and dtype {ids.dtype}"
            )
        if ids.shape[0] != logits.shape[0]:
            raise ValueError(
                f"{ids.shape[0]} sample ids for {logits.shape[0]} rows of cached logits"
            )
        if not torch.isfinite(logits).all():
            row = int((~torch.isfinite(logits)).any(dim=1).nonzero()[0, 0])
            raise ValueError(f"cached logits hold NaN or Inf (first at sample id {int(ids[row])})")
        self.logits = logits
        self.ids = ids.long()
        # Sorted ids + searchsorted: a vectorised id → row lookup that runs on
        # whatever device the cache lives on, without a Python dict.
        self._sorted_ids, self._rows = torch.sort(self.ids)
        if self._sorted_ids.numel() > 1:
            repeated = self._sorted_ids[1:] == self._sorted_ids[:-1]
            if repeated.any():
                duplicate = int(self._sorted_ids[1:][repeated][0])
                raise ValueError(f"sample id {duplicate} appears more than once in the cache")

    def __len__(self) -> int:
        return self.logits.shape[0]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def to(self, device: torch.device | str) -> CachedReference:
        """Move the cache to ``device`` in place; returns self."""
        self.logits = self.logits.to(device)
        self.ids = self.ids.to(device)
        self._sorted_ids = self._sorted_ids.to(device)
        self._rows = self._rows.to(device)
        return self

    def lookup(self, ids: Tensor | Sequence[int]) -> Tensor:
        """``[B]`` sample ids → ``[B, C]`` cached logits, on the cache's device.

        Raises ``ValueError`` naming a missing id (the cache was built on
        another dataset or split) — this check syncs with the device once per call.
        """
        if not isinstance(ids, Tensor):
            ids = torch.as_tensor(list(ids), dtype=torch.long)
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(
                f"sample ids to look up must be a 1-D integer tensor, got shape "
                f"{tuple(ids.shape)} and dtype {ids.dtype}"
            )
        ids = ids.to(self.device).long()
        if len(self) == 0:
            positions = torch.zeros_like(ids)
            found = torch.zeros_like(ids, dtype=torch.bool)
        else:
            positions = torch.searchsorted(self._sorted_ids, ids).clamp(max=len(self) - 1)
            found = self._sorted_ids[positions] == ids
        if not found.all():
            missing = ids[~found]
            raise ValueError(
                f"sample id {int(missing[0])} is not in the cached reference logits "
                f"({missing.numel()} of {ids.numel()} ids missing); was the cache "
                f"built on another dataset or split?"
            )
        return self.logits[self._rows[positions]]
