"""The weight average of ``--ema-epochs``: its decay, its value against hand-computed averages, resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from modelupdate.config import TrainConfig
from modelupdate.data import load_dataset
from modelupdate.ema import WeightEma, ema_decay, warmed_decay
from modelupdate.engine import fit
from modelupdate.errors import ConfigError
from modelupdate.models import build_model
from modelupdate.runtime import setup_runtime


def test_decay_scales_with_the_run():
    assert ema_decay(2.0, 50) == pytest.approx(1 - 1 / 100)
    assert ema_decay(0.5, 400) == pytest.approx(1 - 1 / 200)
    assert ema_decay(0.01, 10) == 0.0  # a horizon under one step: the last weights
    # a running mean until the horizon is reached
    assert [warmed_decay(0.9, n) for n in (1, 2, 3, 20)] == pytest.approx([1 / 2, 2 / 3, 3 / 4, 0.9])


def test_average_of_three_steps_against_hand_computed_values():
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    weights = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[-1.0, 4.0]])]
    stats = [torch.tensor([0.5]), torch.tensor([1.5]), torch.tensor([-0.5])]
    ema = None
    for w, m in zip(weights, stats, strict=True):
        with torch.no_grad():
            model[0].weight.copy_(w)
            model[1].running_mean.copy_(m)
        if ema is None:
            ema = WeightEma(model, decay=0.6)
        ema.update(model)
    # step 1 copies; step 2: decay min(0.6, 1/2) = 0.5; step 3: decay min(0.6, 2/3) = 0.6
    after_two = 0.5 * weights[0] + 0.5 * weights[1]
    expected = 0.6 * after_two + 0.4 * weights[2]
    assert torch.allclose(ema.module[0].weight, expected)
    assert torch.allclose(ema.module[0].weight, torch.tensor([[0.8, 1.0]]))
    assert torch.allclose(ema.module[1].running_mean, torch.tensor([0.6 * (0.5 * 0.5 + 0.5 * 1.5) + 0.4 * -0.5]))
    assert ema.updates == 3
    assert torch.equal(model[0].weight, weights[2]), "the trained model is left alone"


def test_fit_averages_every_step_and_logs_both_weights(tiny_data_config, tiny_train_config):
    """A horizon longer than the run: the average is the plain mean of the weights after each step."""
    torch.manual_seed(0)
    data = load_dataset(tiny_data_config())
    cfg = tiny_train_config(ema_epochs=100.0, epochs=2)
    runtime = setup_runtime(cfg)
    model = build_model(cfg.arch, data.info.num_classes, data.info.input_shape, cfg.arch_args)
    seen: list[dict[str, torch.Tensor]] = []  # the weights before each training step = after the one before

    def snapshot(module, inputs):
        if module.training:
            seen.append({k: v.detach().clone() for k, v in module.state_dict().items()})

    model.register_forward_pre_hook(snapshot)
    result = fit(model, data, cfg, runtime)
    after_each_step = seen[1:] + [model.state_dict()]
    assert result.averaged is not None and len(after_each_step) == result.steps
    for key, value in result.averaged.state_dict().items():
        if value.is_floating_point():
            mean = torch.stack([s[key].float() for s in after_each_step]).mean(0)
            assert torch.allclose(value, mean, atol=1e-5), key
    record = result.history[-1]
    assert {"val_error_rate", "raw_val_error_rate"} <= set(record)
    assert record["val_error_rate"] != record["raw_val_error_rate"] or not torch.equal(
        next(result.averaged.parameters()), next(model.parameters()))


def test_the_checkpoint_holds_the_average(tmp_path, tiny_data_config, tiny_train_config):
    from modelupdate.workflows.common import seeded_model
    from modelupdate.workflows.train import train

    cfg = tiny_train_config(ema_epochs=0.5, epochs=2)
    trained = train(tiny_data_config(), cfg, tmp_path / "m.safetensors")
    data = load_dataset(tiny_data_config())
    model = seeded_model(lambda: build_model(cfg.arch, data.info.num_classes, data.info.input_shape), cfg.seed)
    again = fit(model, data, cfg, setup_runtime(cfg))  # the same run, deterministic on the CPU
    saved = load_file(str(tmp_path / "m.safetensors"))
    averaged = again.averaged.state_dict()
    assert all(torch.allclose(saved[k], averaged[k]) for k in saved)
    assert any(not torch.allclose(saved[k], model.state_dict()[k]) for k in saved if saved[k].is_floating_point())
    assert trained.meta.metrics["weights"] == "ema"
    assert trained.meta.metrics["ema_decay"] == pytest.approx(ema_decay(0.5, again.steps // 2))
    assert trained.meta.config["train"]["ema_epochs"] == 0.5


def test_a_negative_horizon_is_refused():
    with pytest.raises(ConfigError, match="--ema-epochs"):
        TrainConfig(ema_epochs=-1)


def test_resume_without_the_average_is_refused(tmp_path, run_cli):
    args = ["train", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--quiet", "--checkpoint-every", "3",
            "--train-subset", "256", "--out", tmp_path / "m.safetensors"]
    from modelupdate.train_state import save_train_state

    model = nn.Linear(1, 1)
    save_train_state(tmp_path / "m.state.safetensors", model, torch.optim.SGD(model.parameters(), lr=0.1),
                     {"epoch": 0, "step": 3, "config": TrainConfig(arch="tiny", epochs=1, ema_epochs=1.0).to_dict()})
    rc, _, err = run_cli(*args, "--resume")
    assert rc == 2, err
    assert "ema_epochs" in err and "Traceback" not in err
