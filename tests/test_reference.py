"""References: ensemble (batched and loop), single model, cached logits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modelupdate import reference as reference_module
from modelupdate.reference import CachedReference, EnsembleReference

NUM_CLASSES = 5


class TinyCNN(nn.Module):
    """Conv → BatchNorm → ReLU → global pool → linear; BatchNorm makes eval mode matter."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3)))


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 6 * 6, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


class DataDependentCNN(TinyCNN):
    """Branches on a tensor's value: vmap cannot batch this forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if logits.sum() > 1e9:
            return -logits
        return logits


def make_members(count: int = 4, cls: type[nn.Module] = TinyCNN) -> list[nn.Module]:
    members = []
    for seed in range(count):
        torch.manual_seed(seed)
        member = cls()
        for module in member.modules():
            if isinstance(module, nn.BatchNorm2d):
                # Running statistics far from a fresh batch's, so that using
                # batch statistics (train mode) would change the logits.
                module.running_mean.uniform_(-1.0, 1.0)
                module.running_var.uniform_(0.5, 2.0)
        members.append(member)
    return members


def manual_mean(members: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    members = [copy.deepcopy(member).eval() for member in members]
    with torch.no_grad():
        return torch.stack([member(x) for member in members]).mean(dim=0)


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def test_batched_and_loop_give_the_same_logits(inputs: torch.Tensor) -> None:
    members = make_members()
    expected = manual_mean(members, inputs)
    batched = EnsembleReference(copy.deepcopy(members), mode="batched")
    loop = EnsembleReference(copy.deepcopy(members), mode="loop")
    torch.testing.assert_close(batched(inputs), loop(inputs), atol=1e-5, rtol=0)
    torch.testing.assert_close(loop(inputs), expected, atol=1e-5, rtol=0)
    per_member = batched.member_logits(inputs)
    assert per_member.shape == (4, 8, NUM_CLASSES)
    torch.testing.assert_close(per_member, loop.member_logits(inputs), atol=1e-5, rtol=0)


@pytest.fixture
def batched_pays_off_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``auto`` treat this CPU like an accelerator, where it tries the batched forward."""
    monkeypatch.setattr(reference_module, "batched_pays_off", lambda device: True)


def test_auto_loops_on_the_cpu(inputs: torch.Tensor) -> None:
    reference = EnsembleReference(make_members())
    assert reference.active_mode == "loop"
    assert reference.fallback_reason == reference_module.CPU_LOOP_REASON
    torch.testing.assert_close(
        reference(inputs), manual_mean(make_members(), inputs), atol=1e-5, rtol=0
    )
    assert reference._stacked is None  # never stacked: the batched path was not taken


def test_auto_prefers_batched_off_the_cpu() -> None:
    assert reference_module.batched_pays_off(torch.device("cuda", 0))
    assert reference_module.batched_pays_off(torch.device("mps"))
    assert not reference_module.batched_pays_off(torch.device("cpu"))


def test_auto_uses_batched_for_one_architecture(
    inputs: torch.Tensor, batched_pays_off_here: None
) -> None:
    reference = EnsembleReference(make_members())
    assert reference.active_mode == "batched"
    torch.testing.assert_close(
        reference(inputs), manual_mean(make_members(), inputs), atol=1e-5, rtol=0
    )
    assert reference.active_mode == "batched"
    assert reference.fallback_reason is None
    assert reference._stacked is not None  # the batched path ran


def test_reference_stays_in_eval_mode_after_train(inputs: torch.Tensor) -> None:
    reference = EnsembleReference(make_members(), mode="batched")
    before = reference(inputs)
    reference.train()
    assert not reference.training
    assert not any(module.training for module in reference.modules())
    parent = nn.Sequential(reference)
    parent.train()
    assert not any(module.training for module in reference.modules())
    # A member switched to train mode behind the reference's back is put back.
    reference.members[0].train()
    torch.testing.assert_close(reference(inputs), before)
    assert not reference.members[0].training


def test_reference_output_carries_no_gradient(inputs: torch.Tensor) -> None:
    reference = EnsembleReference(make_members(2), mode="loop")
    with torch.enable_grad():
        logits = reference(inputs.requires_grad_(True))
    assert not logits.requires_grad
    assert not any(parameter.requires_grad for parameter in reference.parameters())


def test_auto_falls_back_to_loop_for_different_classes(
    inputs: torch.Tensor, batched_pays_off_here: None
) -> None:
    members = [TinyCNN(), TinyMLP()]
    reference = EnsembleReference(members)
    assert reference.active_mode == "loop"
    assert "TinyMLP" in reference.fallback_reason
    torch.testing.assert_close(reference(inputs), manual_mean(members, inputs))


def test_auto_falls_back_to_loop_for_different_configurations(batched_pays_off_here: None) -> None:
    reference = EnsembleReference([TinyCNN(channels=4), TinyCNN(channels=6)])
    assert reference.active_mode == "loop"
    assert reference.fallback_reason == "member 1 is configured differently from member 0"


def test_auto_loops_for_a_single_member(batched_pays_off_here: None) -> None:
    reference = EnsembleReference(make_members(1))
    assert reference.active_mode == "loop"
    assert reference.fallback_reason == "a single member has nothing to batch"


def test_forced_modes_ignore_the_device() -> None:
    assert EnsembleReference(make_members(2), mode="batched").active_mode == "batched"
    assert EnsembleReference(make_members(2), mode="loop").active_mode == "loop"
    assert EnsembleReference(make_members(2), mode="batched").fallback_reason is None


def test_batched_mode_refuses_members_it_cannot_stack() -> None:
    with pytest.raises(
        ValueError, match="cannot batch the ensemble members: member 1 is a TinyMLP"
    ):
        EnsembleReference([TinyCNN(), TinyMLP()], mode="batched")


def test_auto_falls_back_to_loop_when_vmap_fails_at_first_call(
    inputs: torch.Tensor, batched_pays_off_here: None
) -> None:
    members = make_members(3, DataDependentCNN)
    reference = EnsembleReference(members)
    assert reference.active_mode == "batched"  # looks stackable until tried
    logits = reference(inputs)
    assert reference.active_mode == "loop"
    assert reference.fallback_reason.startswith("batched forward failed")
    assert reference._stacked is None  # the stacked copy is freed
    torch.testing.assert_close(logits, manual_mean(members, inputs))
    torch.testing.assert_close(reference(inputs), logits)  # the loop, for good
    # Forced batched mode lets the vmap error through.
    with pytest.raises(RuntimeError):
        EnsembleReference(make_members(3, DataDependentCNN), mode="batched")(inputs)


def test_stacked_weights_follow_dtype_and_loaded_state(inputs: torch.Tensor) -> None:
    members = make_members()
    reference = EnsembleReference(copy.deepcopy(members), mode="batched")
    reference(inputs)  # stacks float32 weights
    reference.to(torch.float64)
    logits = reference(inputs.double())
    assert logits.dtype == torch.float64
    torch.testing.assert_close(logits.float(), manual_mean(members, inputs), atol=1e-5, rtol=0)
    # Loading other weights replaces what the batched path computes with.
    other = EnsembleReference(make_members(4, TinyCNN)[::-1], mode="loop").to(torch.float64)
    reference.load_state_dict(other.state_dict())
    torch.testing.assert_close(reference(inputs.double()), other(inputs.double()))


def test_channels_last_inputs_give_the_same_logits(inputs: torch.Tensor) -> None:
    reference = EnsembleReference(make_members(), mode="batched")
    channels_last = inputs.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(reference(channels_last), reference(inputs), atol=1e-5, rtol=0)


def test_state_dict_holds_each_weight_once() -> None:
    reference = EnsembleReference(make_members(2), mode="batched")
    reference(torch.randn(2, 3, 6, 6))
    assert all(key.startswith("members.") for key in reference.state_dict())
    assert len(reference.state_dict()) == 2 * len(TinyCNN().state_dict())


def test_ensemble_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleReference([])
    with pytest.raises(ValueError, match="mode must be one of auto, batched, loop"):
        EnsembleReference([TinyCNN()], mode="vmap")


def test_cached_reference_lookup_by_id() -> None:
    logits = torch.arange(12.0).reshape(4, 3)  # row k = [3k, 3k+1, 3k+2]
    cache = CachedReference(logits, ids=torch.tensor([10, 3, 7, 42]))
    assert len(cache) == 4 and cache.num_classes == 3
    found = cache.lookup(torch.tensor([42, 10, 7, 7]))
    torch.testing.assert_close(found, logits[[3, 0, 2, 2]])
    assert cache.to("cpu") is cache
    default_ids = CachedReference(logits)
    torch.testing.assert_close(default_ids.lookup(torch.tensor([2])), logits[[2]])


def test_cached_reference_names_a_missing_id() -> None:
    cache = CachedReference(torch.zeros(3, 2), ids=[0, 1, 5])
    with pytest.raises(
        ValueError, match=r"sample id 4 is not in the cached reference logits \(2 of 3"
    ):
        cache.lookup(torch.tensor([4, 5, 99]))
    with pytest.raises(ValueError, match="sample id 0 is not in the cached"):
        CachedReference(torch.zeros(0, 2), ids=[]).lookup(torch.tensor([0]))


@pytest.mark.parametrize(
    ("logits", "ids", "message"),
    [
        (torch.zeros(3), None, r"shape \[N, C\]"),
        (torch.zeros(3, 2), [0, 1], "2 sample ids for 3 rows"),
        (torch.zeros(3, 2), [0, 1, 1], "sample id 1 appears more than once"),
        (torch.zeros(2, 2), torch.tensor([0.0, 1.0]), "1-D integer tensor"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), [5, 6], "NaN or Inf .* sample id 6"),
    ],
)
def test_cached_reference_refuses_bad_caches(logits, ids, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CachedReference(logits, ids=ids)
