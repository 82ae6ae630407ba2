"""Training engine: schedule, learning, pooled evaluation, resumable state, divergence, devices."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
import torch.nn.functional as F

from modelupdate.checkpoint import read_safetensors, save_model
from modelupdate.data import load_dataset, normalize
from modelupdate.engine import accuracy_counts, fit, lr_at, make_optimizer, predict_logits
from modelupdate.errors import CheckpointError, ConfigError, TrainingDiverged
from modelupdate.models import build_model
from modelupdate.runtime import Runtime, amp_dtype, select_device
from modelupdate.train_state import load_train_state, save_train_state

CPU = Runtime(device=torch.device("cpu"))


@pytest.fixture(scope="module")
def data(tiny_data_config):
    # 256 samples: 26 validation, 230 training -> 7 steps of 32 per epoch (drop_last)
    return load_dataset(tiny_data_config())


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def new_model(data, seed: int = 0, arch: str = "tiny"):
    torch.manual_seed(seed)
    return build_model(arch, data.info.num_classes, data.info.input_shape)


# --------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(("step", "expected"), [
    (0, 0.1),  # warm-up: (0 + 1) / 10
    (4, 0.5),
    (9, 1.0),  # last warm-up step reaches the peak
    (10, 1.0),  # cosine starts at the peak
    (25, 0.5 * (1 + math.cos(math.pi / 6))),  # progress 15 / 90
    (55, 0.5),  # half way: cos(pi / 2) = 0
    (100, 0.0),
    (130, 0.0),  # past the end: stays at 0
])
def test_lr_at_hand_values(step, expected):
    assert lr_at(step, 100, 10, 1.0) == pytest.approx(expected, abs=1e-12)


def test_lr_at_without_warmup():
    assert lr_at(0, 10, 0, 2.0) == pytest.approx(2.0)
    assert lr_at(5, 10, 0, 2.0) == pytest.approx(1.0)
    assert lr_at(10, 10, 0, 2.0) == pytest.approx(0.0)


def test_fit_follows_the_schedule(tiny_train_config, data):
    events = []
    fit(new_model(data), data, tiny_train_config(epochs=2, batch_size=32, lr=0.1), CPU, on_event=events.append)
    start = next(e for e in events if e["type"] == "start")
    assert (start["steps_per_epoch"], start["total_steps"], start["n_train"]) == (7, 14, 230)
    # warm-up 0.5 epoch = round(3.5) = 4 steps; the logged lr is that of the epoch's last step
    steps = [e for e in events if e["type"] == "step"]
    assert [e["global_step"] for e in steps] == [7, 14]
    assert steps[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 10)))  # global step 6
    assert steps[1]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))  # global step 13
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]


# --------------------------------------------------------------------------- learning and evaluation


def test_loss_falls_on_synthetic_data(tiny_train_config, data):
    model = new_model(data, arch="cnn-s")

    def train_loss_and_error():
        logits, targets, _ = predict_logits(model, data.train, data.info, CPU)
        return F.cross_entropy(logits, targets).item(), (logits.argmax(1) != targets).float().mean().item()

    loss_before, error_before = train_loss_and_error()
    result = fit(model, data, tiny_train_config(arch="cnn-s", epochs=5, batch_size=32, lr=0.2), CPU)
    loss_after, error_after = train_loss_and_error()
    assert loss_after < 0.8 * loss_before
    assert error_after < 0.5 < error_before  # chance is 0.75 with 4 classes
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.steps == 35 and result.images_per_second > 0


def test_accuracy_counts_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [1.0, 2.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1, 1, 0, 1])  # predictions 0 1 0 1 1: right, right, wrong, wrong, right
    assert accuracy_counts(logits, targets, CPU) == {"n": 5, "correct": 3, "error_rate": pytest.approx(0.4)}
    empty = accuracy_counts(torch.empty(0, 2), torch.empty(0, dtype=torch.long), CPU)
    assert empty == {"n": 0, "correct": 0, "error_rate": None}


def test_predict_logits_in_id_order_over_uneven_batches(data):
    model = new_model(data).train()
    logits, targets, ids = predict_logits(model, data.test, data.info, CPU, batch_size=10)  # 64 = 6 x 10 + 4
    assert logits.shape == (64, 4) and ids.tolist() == list(range(64))
    assert torch.equal(targets, data.test.targets)
    assert model.training, "predict_logits restores the training mode"
    model.eval()
    with torch.no_grad():
        direct = model(normalize(data.test.images, data.info))
    assert torch.allclose(logits, direct, atol=1e-5)


def test_validation_error_is_pooled_over_batches(tiny_train_config, data):
    model = new_model(data)
    result = fit(model, data, tiny_train_config(epochs=1, batch_size=32, eval_batch_size=10), CPU)
    # 26 validation samples in batches of 10, 10, 6: the rate must be wrong / 26, not a mean of batch rates
    logits, targets, _ = predict_logits(model, data.val, data.info, CPU, batch_size=1000)
    wrong = int((logits.argmax(1) != targets).sum())
    assert result.history[-1]["val_error_rate"] == pytest.approx(wrong / 26)


def _weight_travel(tiny_train_config, data, **overrides) -> tuple[float, int]:
    """L2 distance the weights move in one epoch of plain SGD (no momentum / decay), and the step count."""
    model = new_model(data)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = tiny_train_config(epochs=1, batch_size=32, momentum=0.0, weight_decay=0.0, warmup_epochs=0.0,
                            **overrides)
    events = []
    fit(model, data, cfg, CPU, on_event=events.append)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm()), next(e for e in events if e["type"] == "start")["steps_per_epoch"]


def test_clip_grad_norm_bounds_every_step(tiny_train_config, data):
    # each SGD step moves the weights by lr_t * ||clipped grad|| <= lr * c, so an epoch moves them <= steps * lr * c
    lr, c = 1.0, 1e-3
    clipped, steps = _weight_travel(tiny_train_config, data, lr=lr, clip_grad_norm=c)
    free, _ = _weight_travel(tiny_train_config, data, lr=lr)
    assert 0 < clipped <= steps * lr * c * (1 + 1e-4)
    assert free > 10 * steps * lr * c  # the bound is not met by accident: unclipped steps are far larger


def test_clip_grad_norm_must_not_be_negative(tiny_train_config):
    with pytest.raises(ConfigError, match="--clip-grad-norm"):
        tiny_train_config(clip_grad_norm=-1.0)


# --------------------------------------------------------------------------- resumable state


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_train_state_round_trip_restores_model_and_optimizer(tiny_train_config, data, tmp_path, optimizer):
    cfg = tiny_train_config(optimizer=optimizer, lr=0.1)
    model = new_model(data, seed=1)
    opt = make_optimizer(model, cfg)
    x, y = torch.randn(8, *data.info.input_shape), torch.arange(8) % 4
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    path = tmp_path / "state.safetensors"
    progress = {"epoch": 1, "step": 2, "history": [{"epoch": 1, "train_loss": 1.25}]}
    save_train_state(path, model, opt, progress)

    restored = new_model(data, seed=2)
    restored_opt = make_optimizer(restored, cfg)
    assert load_train_state(path, restored, restored_opt) == progress
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    saved, loaded = opt.state_dict(), restored_opt.state_dict()
    # JSON has no tuples: AdamW's betas come back as a list, which the optimizer reads the same way
    assert loaded["param_groups"] == json.loads(json.dumps(saved["param_groups"]))
    assert saved["state"].keys() == loaded["state"].keys() and len(saved["state"]) > 0
    for pid, pstate in saved["state"].items():
        for name, value in pstate.items():
            got = loaded["state"][pid][name]
            assert torch.equal(torch.as_tensor(got), torch.as_tensor(value)), (pid, name)
    if optimizer == "sgd":
        assert all("momentum_buffer" in s for s in saved["state"].values())
    # the next step is the same step
    for m, o in ((model, opt), (restored, restored_opt)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key


def test_load_train_state_refuses_other_files(tiny_train_config, data, tmp_path):
    from modelupdate.formats import ModelMeta

    model = new_model(data)
    opt = make_optimizer(model, tiny_train_config())
    ckpt = tmp_path / "model.safetensors"
    save_model(ckpt, model, ModelMeta(arch="tiny", arch_args={}, classes=list(data.info.classes),
                                      input_shape=data.info.input_shape, normalization=data.info.normalization,
                                      dataset="synthetic", dataset_fingerprint=data.info.fingerprint))
    with pytest.raises(CheckpointError, match="not a modelupdate training state"):
        load_train_state(ckpt, model, opt)
    state = tmp_path / "state.safetensors"
    save_train_state(state, model, opt, {"epoch": 0, "step": 1})
    other = new_model(data, arch="cnn-s")
    with pytest.raises(CheckpointError, match="saved state does not fit this model"):
        load_train_state(state, other, make_optimizer(other, tiny_train_config()))


def _interrupt_at(global_step: int, how: str):
    calls = {"n": 0}

    def prepare(batch):
        if calls["n"] == global_step:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # fit finishes the step, saves, then stops
            else:
                raise RuntimeError("simulated crash")
        calls["n"] += 1
        return batch

    return prepare


@pytest.mark.parametrize(("how", "at", "resumed_from"), [
    ("crash", 4, 3),  # last save after global step 2 (checkpoint_every=3): resume at epoch 0, step 3
    ("crash", 10, 9),  # last save after global step 8: epoch 1, step 2
    ("signal", 4, 5),  # SIGINT during global step 4: that step completes and is saved
])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tiny_train_config, data, tmp_path, deterministic, how, at,
                                                          resumed_from):
    cfg = tiny_train_config(epochs=2, batch_size=32, lr=0.1, checkpoint_every=3, deterministic=True)
    reference = new_model(data, seed=0)
    full = fit(reference, data, cfg, CPU)

    state = tmp_path / "run.state.safetensors"
    interrupted = new_model(data, seed=0)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in the background
    with pytest.raises(KeyboardInterrupt if how == "signal" else RuntimeError):
        fit(interrupted, data, cfg, CPU, state_path=state, prepare_batch=_interrupt_at(at, how))
    assert state.exists()
    assert signal.getsignal(signal.SIGINT) is before, "fit restores the SIGINT handler"

    resumed = new_model(data, seed=123)  # a different init: the weights must come from the state file
    events = []
    result = fit(resumed, data, cfg, CPU, state_path=state, resume=True, on_event=events.append)
    assert result.resumed_from_step == resumed_from
    assert [e for e in events if e["type"] == "resume"][0]["step"] == resumed_from % 7
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    # the log matches too: the resumed epoch's train loss is the mean over all its steps, not only the last ones
    for key in ("epoch", "train_loss", "val_error_rate", "lr"):
        assert [h[key] for h in result.history] == [h[key] for h in full.history], key


def test_resume_right_after_an_epoch_s_last_step(tiny_train_config, data, tmp_path, deterministic):
    """SIGINT during the last step of epoch 1: the state says (epoch 0, step 7); resuming runs no step of
    epoch 1 again, yet logs its evaluation and loss as the uninterrupted run did."""
    cfg = tiny_train_config(epochs=2, batch_size=32, lr=0.1, checkpoint_every=0)
    reference = new_model(data)
    full = fit(reference, data, cfg, CPU)
    state = tmp_path / "s.safetensors"
    with pytest.raises(KeyboardInterrupt):
        fit(new_model(data), data, cfg, CPU, state_path=state, prepare_batch=_interrupt_at(6, "signal"))
    resumed = new_model(data, seed=5)
    result = fit(resumed, data, cfg, CPU, state_path=state, resume=True)
    assert result.resumed_from_step == 7
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    for key in ("epoch", "train_loss", "val_error_rate"):
        assert [h[key] for h in result.history] == [h[key] for h in full.history], key


# --------------------------------------------------------------------------- divergence


def _nan_from(first_bad_call: int):
    calls = {"n": 0}

    def objective(logits, batch):
        loss = F.cross_entropy(logits.float(), batch.targets)
        if calls["n"] >= first_bad_call:
            loss = loss * float("nan")
        calls["n"] += 1
        return loss, {}

    return objective


def test_nan_loss_raises_with_the_step(tiny_train_config, data, tmp_path):
    cfg = tiny_train_config(epochs=2, batch_size=32, checkpoint_every=0)
    with pytest.raises(TrainingDiverged) as err:
        fit(new_model(data), data, cfg, CPU, objective=_nan_from(0), state_path=tmp_path / "s.safetensors")
    message = str(err.value)
    assert "loss became nan at epoch 1, step 7" in message  # checked where the loss is logged: epoch end
    assert "--lr" in message
    assert "last good state" not in message, "no state was saved yet"
    assert TrainingDiverged.exit_code == 3


def test_nan_loss_never_overwrites_the_last_good_state(tiny_train_config, data, tmp_path):
    """Good steps 0-2 (state saved after step 3), NaN from global step 3 on: the saved state stays finite."""
    state = tmp_path / "s.safetensors"
    cfg = tiny_train_config(epochs=2, batch_size=32, checkpoint_every=3)
    with pytest.raises(TrainingDiverged) as err:
        fit(new_model(data), data, cfg, CPU, objective=_nan_from(3), state_path=state)
    assert "at epoch 1, step 6" in str(err.value)  # detected before the save after step 6
    assert f"the last good state is in {state}" in str(err.value)
    tensors, meta = read_safetensors(state)
    assert '"step": 3' in meta["progress"]
    assert all(torch.isfinite(t.float()).all() for t in tensors.values())


# --------------------------------------------------------------------------- devices and precision


def test_amp_dtype():
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="--amp fp16: needs a CUDA device"):
        amp_dtype("fp16", cpu)
    assert amp_dtype("off", cpu) is None
    assert amp_dtype("auto", cpu) is None
    assert amp_dtype("bf16", cpu) is torch.bfloat16
    assert amp_dtype("fp16", torch.device("cuda")) is torch.float16


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device"):
        select_device("abacus")
    if not torch.cuda.is_available():
        assert select_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="no CUDA device"):
            select_device("cuda")


def test_optimizer_skips_weight_decay_on_biases_and_norms(tiny_train_config, data):
    model = new_model(data)
    opt = make_optimizer(model, tiny_train_config(weight_decay=0.01, lr=0.3))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert isinstance(opt, torch.optim.SGD) and decay["nesterov"] and decay["lr"] == 0.3
    assert isinstance(make_optimizer(model, tiny_train_config(optimizer="adamw")), torch.optim.AdamW)


@pytest.mark.parametrize(("field", "value", "option"), [
    ("epochs", 0, "--epochs"), ("batch_size", 0, "--batch-size"), ("optimizer", "lion", "--optimizer"),
    ("amp", "fp8", "--amp"), ("lr", -1.0, "--lr"),
])
def test_train_config_validation(tiny_train_config, field, value, option):
    with pytest.raises(ConfigError, match=option):
        tiny_train_config(**{field: value})


def test_default_lr_scales_with_batch(tiny_train_config):
    assert tiny_train_config(batch_size=256).resolved_lr() == pytest.approx(0.1)
    assert tiny_train_config(batch_size=64).resolved_lr() == pytest.approx(0.025)
    assert tiny_train_config(optimizer="adamw").resolved_lr() == pytest.approx(2e-3)


# --------------------------------------------------------------------------- the train workflow


def test_train_workflow_refuses_a_stale_state_without_resume(tiny_data_config, tiny_train_config, tmp_path):
    from modelupdate.atomic import OutputFiles
    from modelupdate.workflows.train import train

    out = tmp_path / "m.safetensors"
    assert OutputFiles(out).state == tmp_path / "m.state.safetensors"
    OutputFiles(out).state.write_bytes(b"left by an interrupted run")
    with pytest.raises(ConfigError, match="pass --resume to continue it"):
        train(tiny_data_config(), tiny_train_config(), out)
    assert not out.exists()


def test_trained_model_fixture_has_metrics_and_log(tiny_data_config, trained_model):
    from modelupdate.checkpoint import load_checkpoint

    meta = load_checkpoint(trained_model).meta
    assert meta.metrics["test_n"] == 64 and 0.0 <= meta.metrics["test_error_rate"] <= 1.0
    assert meta.metrics["test_correct"] == round((1 - meta.metrics["test_error_rate"]) * 64)
    assert meta.dataset_fingerprint == load_dataset(tiny_data_config()).info.fingerprint
    log = (trained_model.parent / "tiny.log.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in log if '"step"' not in line] == ["epoch", "done"]
