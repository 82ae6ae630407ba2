"""Golden values: the losses of the first 3 training steps of `train` and of ELODI, pinned.

A change to the data order, augmentation, seeding, initialisation, dropout, the objective or the
optimizer moves them; a refactor must not. (CPU, one thread, deterministic algorithms.) To re-pin after
an intended change, run this file with GOLDEN_PRINT=1 and copy the printed values.
"""

from __future__ import annotations

import os

import pytest
import torch

from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import load_dataset
from modelupdate.engine import fit
from modelupdate.methods import UpdateConfig, make_objective
from modelupdate.models import build_model
from modelupdate.runtime import Runtime
from modelupdate.workflows.common import seeded_model
from modelupdate.workflows.ensemble_train import ensemble_train
from modelupdate.workflows.ldi_train import teacher_logits

CPU = Runtime(torch.device("cpu"))
DATA = DataConfig(train_subset="192")  # 3 steps of 64
CFG = TrainConfig(arch="cnn-s", epochs=1, batch_size=64, device="cpu", deterministic=True, checkpoint_every=0)
GOLDEN = {
    "train": [1.401632308959961, 1.3559198379516602, 1.3767642974853516],
    "elodi": [0.7428246736526489, 0.7076694965362549, 0.722852349281311],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def first_step_losses(objective=None, cfg: TrainConfig = CFG) -> list[float]:
    data = load_dataset(DATA)
    model = seeded_model(lambda: build_model(cfg.arch, data.info.num_classes, data.info.input_shape), cfg.seed)
    losses: list[float] = []
    base = objective or (lambda logits, batch: (torch.nn.functional.cross_entropy(logits, batch.targets), {}))

    def recording(logits, batch):
        loss, parts = base(logits, batch)
        losses.append(float(loss.detach()))
        return loss, parts

    fit(model, data, cfg, CPU, objective=recording)
    return losses[:3]


def check(name: str, losses: list[float]) -> None:
    if os.environ.get("GOLDEN_PRINT"):
        print(name, losses)
    assert losses == pytest.approx(GOLDEN[name], rel=1e-5), losses


def test_train_first_three_steps():
    check("train", first_step_losses())


def test_elodi_first_three_steps(tmp_path):
    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.methods import with_method_defaults

    reference = tmp_path / "ref.safetensors"
    ensemble_train(DATA, TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu", deterministic=True,
                                     seed=0), reference, 2)  # members' seeds 100, 101
    ucfg = UpdateConfig(method="elodi").resolved()
    objective = make_objective(ucfg, teacher_logits(load_checkpoint(reference), None), 0.0)
    check("elodi", first_step_losses(objective, with_method_defaults(CFG, "elodi")))
