"""An exponential moving average of a model's weights and buffers (``--ema-epochs``).

The average is torch's ``AveragedModel`` with ``get_ema_multi_avg_fn``; its horizon is given in epochs
so that it scales with the run: with H epochs of S steps each, the decay per step is 1 - 1/(H*S). Until
H*S updates have been averaged the decay is n/(n+1) instead (an exact running mean of the updates so
far), so a horizon longer than the run, or a short run, never weights the first steps' weights more than
the last ones' (docs/method.md, "Weight EMA").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(horizon_epochs: float, steps_per_epoch: int) -> float:
    """The decay per step of an average whose horizon is ``horizon_epochs`` epochs of ``steps_per_epoch``."""
    horizon_steps = horizon_epochs * steps_per_epoch
    return 0.0 if horizon_steps <= 1 else 1.0 - 1.0 / horizon_steps


def warmed_decay(decay: float, averaged: int) -> float:
    """The decay of the update after ``averaged`` earlier ones: a running mean until it reaches ``decay``."""
    return min(decay, averaged / (averaged + 1))


class WeightEma:
    """The running average of ``model``'s weights and buffers (BatchNorm statistics included).

    ``update(model)`` after every optimizer step; ``module`` is the averaged model to evaluate and save.
    The count of updates is kept on the host, so an update needs no device sync to choose its decay.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)

    def _average(self, ema: tuple[torch.Tensor, ...] | list[torch.Tensor],
                 current: tuple[torch.Tensor, ...] | list[torch.Tensor], _: torch.Tensor | int) -> None:
        # AveragedModel copies the first update and calls this from the second on, so updates >= 1 here
        get_ema_multi_avg_fn(warmed_decay(self.decay, self.updates))(ema, current, _)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)
        self.updates += 1

    def resume_at(self, updates: int) -> None:
        """Continue an average of ``updates`` updates whose weights were loaded into ``module``."""
        self.updates = updates
        self.averaged.n_averaged.fill_(updates)
