"""torchrun's environment, read in one place (launch.py)."""

from __future__ import annotations

from modelupdate.launch import Launch, is_rank0, launch, local_world


def test_a_process_started_alone_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launch() == Launch(rank=0, local_rank=0, world=1) and local_world() == 1 and is_rank0()


def test_torchrun_s_variables_place_the_process(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert launch() == Launch(rank=3, local_rank=1, world=4) and local_world() == 2 and not is_rank0()


def test_a_garbled_variable_is_named_and_is_rank0_never_fails(monkeypatch):
    import pytest

    from modelupdate.errors import ConfigError

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "x")
    monkeypatch.setenv("RANK", "")
    with pytest.raises(ConfigError, match=r"^\$LOCAL_WORLD_SIZE: expected an integer \(torchrun sets it\), got 'x'$"):
        local_world()
    assert not is_rank0()  # not "0": this process neither writes nor prints
