"""`torchrun --standalone --nproc_per_node 2` runs (gloo, CPU) of train, ldi-train, ensemble-train.

Each command's checkpoint must load, and the counts it recorded while sharded over two
processes (test errors, negative / positive flips against the old model) must equal a
single-process evaluation of the same checkpoints. Only rank 0 may write files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from modelupdate.checkpoint import load_checkpoint
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import load_dataset
from modelupdate.engine import predict_logits
from modelupdate.runtime import Runtime
from modelupdate.workflows.ensemble_train import ensemble_train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with gloo is not available",
    ),
]

# What the CLI's `--data synthetic` builds (DataConfig's defaults), so checkpoints trained
# in-process here and through the CLI share one dataset. One epoch of `tiny` takes ~0.3 s.
COMMON = "--data synthetic --arch tiny --epochs 2 --batch-size 64 --device cpu --quiet".split()
TORCHRUN = "-m torch.distributed.run --standalone --nproc_per_node 2 -m modelupdate".split()


def torchrun_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MODELUPDATE_DEBUG", None)
    env["COLUMNS"] = "200"
    env["OMP_NUM_THREADS"] = "1"  # what torchrun would set; said here to silence its warning
    return env


def torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = torchrun_env()
    proc = subprocess.run(
        [sys.executable, *TORCHRUN, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A reference trained in-process; then train, ldi-train, ensemble-train via torchrun."""
    work = tmp_path_factory.mktemp("torchrun")
    reference_dir = tmp_path_factory.mktemp("reference")
    reference = reference_dir / "reference.safetensors"
    ensemble_train(
        DataConfig(),
        TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu", seed=10),
        reference,
        members=2,
    )

    torchrun(work, "train", *COMMON, "--out", "old.safetensors")
    elodi = [
        "--reference",
        str(reference),
        *"--method elodi --old old.safetensors --seed 1".split(),
    ]
    torchrun(work, "ldi-train", *COMMON, *elodi, "--out", "new.safetensors")
    torchrun(work, "ensemble-train", *COMMON, *"-m 2 --seed 5 --out ensemble.safetensors".split())
    return {
        "work": work,
        "old": work / "old.safetensors",
        "new": work / "new.safetensors",
        "ensemble": work / "ensemble.safetensors",
        "reference": reference,
    }


def single_process_test_predictions(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and targets of the whole test split, in one process."""
    loaded = load_checkpoint(path)
    data = load_dataset(DataConfig.from_dict(loaded.meta.config["data"]))
    logits, targets, ids = predict_logits(
        loaded.model, data.test, data.info, Runtime(torch.device("cpu")), shard=False
    )
    assert torch.equal(ids, torch.arange(len(data.test)))
    return logits.argmax(1), targets


def test_train_checkpoint_matches_a_single_process_evaluation(runs) -> None:
    loaded = load_checkpoint(runs["old"])
    assert loaded.meta.config["train"]["epochs"] == 2
    preds, targets = single_process_test_predictions(runs["old"])
    metrics = loaded.meta.metrics
    assert metrics["test_n"] == len(targets)
    assert metrics["test_correct"] == int((preds == targets).sum())
    assert metrics["epochs_completed"] == 2


def test_ldi_train_flip_counts_match_a_single_process_evaluation(runs) -> None:
    loaded = load_checkpoint(runs["new"])
    update = loaded.meta.update
    assert update["method"] == "elodi" and update["reference_members"] == 2
    assert update["parent_sha256"] == load_checkpoint(runs["old"]).sha256
    assert update["reference_sha256"] == load_checkpoint(runs["reference"]).sha256

    old_preds, targets = single_process_test_predictions(runs["old"])
    new_preds, new_targets = single_process_test_predictions(runs["new"])
    assert torch.equal(targets, new_targets)
    old_ok, new_ok = old_preds == targets, new_preds == targets
    expected = {
        "test_n": len(targets),
        "test_correct": int(new_ok.sum()),
        "test_negative_flips": int((old_ok & ~new_ok).sum()),
        "test_positive_flips": int((~old_ok & new_ok).sum()),
    }
    recorded = {key: loaded.meta.metrics[key] for key in expected}
    assert recorded == expected
    assert loaded.meta.metrics["test_nfr"] == pytest.approx(
        expected["test_negative_flips"] / len(targets)
    )
    assert loaded.meta.metrics["test_old_error_rate"] == pytest.approx(
        1 - float(old_ok.float().mean())
    )


def test_ensemble_train_spreads_members_and_matches_a_single_process_evaluation(runs) -> None:
    loaded = load_checkpoint(runs["ensemble"])
    assert loaded.meta.member_seeds == [105, 106]
    assert len(loaded.members) == 2
    # Different seeds (trained on different ranks) give different members.
    first, second = (dict(m.named_parameters()) for m in loaded.members)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    preds, targets = single_process_test_predictions(runs["ensemble"])
    assert loaded.meta.metrics["test_correct"] == int((preds == targets).sum())
    for seed, member_metrics in zip((105, 106), loaded.meta.member_metrics, strict=True):
        assert member_metrics["seed"] == seed
        assert member_metrics["epochs_completed"] == 2


def test_only_rank_0_writes_files(runs) -> None:
    names = sorted(p.name for p in runs["work"].iterdir())
    # No resumable state, member folder or temp file left; the ensemble keeps no log of its own.
    assert names == [
        "ensemble.safetensors",
        "new.log.jsonl",
        "new.safetensors",
        "old.log.jsonl",
        "old.safetensors",
    ]
    for log in ("old.log.jsonl", "new.log.jsonl"):
        events = [json.loads(line) for line in (runs["work"] / log).read_text().splitlines()]
        events = [e for e in events if e["type"] != "step"]
        # One line per epoch and one "done": a second writer would have doubled them.
        assert [e["type"] for e in events] == ["epoch", "epoch", "done"], log


def test_sync_bn_on_the_cpu_is_refused_before_training() -> None:
    from modelupdate.engine import fit
    from modelupdate.errors import ConfigError
    from modelupdate.models import build_model

    data = load_dataset(DataConfig(synthetic_train=64, synthetic_test=8))
    cfg = TrainConfig(arch="tiny", device="cpu", sync_bn=True)
    model = build_model("tiny", data.info.num_classes, data.info.input_shape)
    two_ranks = Runtime(torch.device("cpu"), rank=0, world=2)  # checked before any collective call
    with pytest.raises(ConfigError, match="--sync-bn: SyncBatchNorm needs CUDA devices, not cpu"):
        fit(model, data, cfg, two_ranks)


def test_sigterm_stops_every_rank_at_one_step_and_resume_finishes(tmp_path) -> None:
    """torchrun passes SIGTERM to both ranks; they agree on one step to stop at, rank 0 saves the state,
    and the same command with --resume finishes. (Before, rank 1 died at once and rank 0 crashed or hung
    in its next all-reduce, leaving no state of that step.)"""
    import signal
    import time

    from modelupdate.checkpoint import read_safetensors

    env = torchrun_env()
    args = [sys.executable, *TORCHRUN, "train", "--data", "synthetic", "--arch", "tiny", "--epochs", "30",
            "--batch-size", "64", "--device", "cpu", "--quiet", "--checkpoint-every", "5", "--out", "m.safetensors"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "m.state.safetensors"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)  # a rank stuck in a collective would hang here
    assert proc.returncode != 0
    # each rank exits 130; torchrun itself exits 1 with its own SignalException traceback
    assert err.count("interrupted: the resumable state was saved; rerun the same command with --resume") == 1, err
    assert state.exists() and not (tmp_path / "m.safetensors").exists()
    progress = json.loads(read_safetensors(state)[1]["progress"])
    assert progress["epoch"] < 29

    resumed = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "m.safetensors").meta.metrics["epochs_completed"] == 30
