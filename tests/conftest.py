"""Shared fixtures: a CLI runner in a real subprocess, tiny synthetic data and one trained model."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modelupdate.config import DataConfig, TrainConfig

# Small enough that a model trains in about a second on one busy CPU core.
TINY_DATA = dict(name="synthetic", synthetic_train=256, synthetic_test=64, synthetic_size=8, synthetic_classes=4)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _tiny_data_config(**overrides) -> DataConfig:
    return DataConfig(**(TINY_DATA | overrides))


def _tiny_train_config(**overrides) -> TrainConfig:
    values = dict(arch="tiny", epochs=1, batch_size=64, device="cpu", eval_batch_size=256)
    return TrainConfig(**(values | overrides))


@contextlib.contextmanager
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def single_thread():
    """``with single_thread(): ...``: in-process training on one thread (on a shared 2-core machine one
    thread spins less than two), for session fixtures; tests use ``one_thread``."""
    return _single_thread


@pytest.fixture
def one_thread():
    """The test trains in-process on one thread (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    with _single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_data_config():
    """``tiny_data_config(**overrides) -> DataConfig``: synthetic data small enough to train in a second."""
    return _tiny_data_config


@pytest.fixture(scope="session")
def tiny_train_config():
    """``tiny_train_config(**overrides) -> TrainConfig``: one epoch of `tiny` on the CPU."""
    return _tiny_train_config


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Where Debian's dataset-fashion-mnist puts the IDX files."""
    return FASHION_DIR


@pytest.fixture
def run_cli():
    """``run_cli(*args, timeout=120) -> (returncode, stdout, stderr)`` of ``python -m modelupdate ARGS``."""

    def runner(*args: str | os.PathLike, timeout: float = 120, cwd: str | os.PathLike | None = None):
        env = dict(os.environ)
        env.pop("MODELUPDATE_DEBUG", None)
        env["COLUMNS"] = "200"  # rich wraps tables to the terminal width; keep lines whole
        proc = subprocess.run([sys.executable, "-m", "modelupdate", *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=cwd)
        return proc.returncode, proc.stdout, proc.stderr

    return runner


@pytest.fixture(scope="session")
def write_unchecked():
    """Write a model checkpoint exactly as given, metadata that does not fit its weights included: the broken
    files the loaders must refuse (``checkpoint.save_model`` would refuse to write them)."""
    from safetensors.torch import save_file

    def write(path: Path, model: torch.nn.Module, meta) -> None:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path),
                  metadata=meta.to_header())

    return write


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A tiny synthetic model trained once per session through the library; returns its checkpoint path."""
    from modelupdate.workflows.train import train

    out = tmp_path_factory.mktemp("trained") / "tiny.safetensors"
    train(_tiny_data_config(), _tiny_train_config(), out)
    return out


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Image-folder listings are cached under $XDG_CACHE_HOME: a test's go to a temporary folder, not ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
