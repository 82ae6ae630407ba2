"""The streaming image-folder loader (data/streaming.py) against the in-memory one, on folders the tests write.

Streamed and in memory must be the same data: the same uint8 pixels (one decoder, folders.read_square),
the same sample ids and names, the same train order per (seed, epoch, rank) and the same fingerprint,
so a model trained either way evaluates, resumes and compares the same. Through the CLI: a run with
``--stream --workers 2`` writes a checkpoint that loads; a 2-process torchrun ldi-train streams and its
recorded test counts equal a single-process evaluation; SIGKILL mid-epoch and ``--resume`` give bitwise
the uninterrupted weights; a corrupt image is one ``error:`` line naming the file, exit 2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modelupdate.config import DataConfig, TrainConfig
from modelupdate.data import Split, eval_batches, load_dataset, train_batches, train_order
from modelupdate.data import folders as folders_module
from modelupdate.data import streaming as streaming_module
from modelupdate.data.folders import cache_path, read_square
from modelupdate.data.sources import cache_dir
from modelupdate.data.streaming import StreamSplit, decoded_bytes, default_workers, should_stream
from modelupdate.errors import ConfigError, DataError

CPU = torch.device("cpu")
CLASSES = ("ant", "bee", "cat")


def write_folder(root: Path, per_class: dict[str, int], *, seed: int = 0, size_range=(9, 24)) -> Path:
    """PATH/<split>/<class>/NNN.{png,jpg}: noisy images of random sizes whose mean colour follows the
    class (learnable a little); PNGs in RGB, greyscale and RGBA, so the decoder's conversions are used."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for k, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(*size_range, size=2))
                base = np.array([60, 120, 190])[np.roll(np.arange(3), k)]
                pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                if i % 3 == 0:
                    image.save(folder / f"{i:03d}.jpg", quality=85)
                else:
                    image.convert(("L", "RGBA", "RGB")[i % 4 % 3]).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("images") / "data", {"train": 14, "test": 5})


def both(root: Path, **overrides):
    """The same folder loaded in memory and streamed."""
    cfg = dict(name=f"imagefolder:{root}", image_size=12) | overrides
    return load_dataset(DataConfig(**cfg)), load_dataset(DataConfig(**cfg, stream=True))


# --------------------------------------------------------------------------- pure pieces


def test_the_decoded_size_decides_when_to_stream():
    assert decoded_bytes(1000, 64) == 1000 * 3 * 64 * 64
    gib = 2**30
    assert not should_stream(False, gib // (3 * 64 * 64), 64, 1.0)  # exactly the budget: fits
    assert should_stream(False, gib // (3 * 64 * 64) + 1, 64, 1.0)
    assert should_stream(True, 1, 8, 1.0)  # asked for


@pytest.mark.parametrize(("cpus", "local", "expected"), [(2, 1, 1), (1, 1, 1), (16, 8, 1), (16, 1, 8), (96, 8, 8),
                                                         (12, 2, 5)])
def test_default_workers_share_the_cores_of_the_machine(cpus, local, expected):
    assert default_workers(cpus, local) == expected


@pytest.mark.parametrize(("field", "value", "message"), [("memory_budget", 0.0, "--memory-budget"),
                                                          ("memory_budget", float("nan"), "--memory-budget"),
                                                          ("workers", -1, "--workers")])
def test_bad_streaming_options_name_the_option(field, value, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**{field: value})


def test_stream_is_refused_for_data_held_in_memory():
    with pytest.raises(DataError, match="--stream: only imagefolder:PATH data"):
        load_dataset(DataConfig(stream=True))


# --------------------------------------------------------------------------- streamed == in memory


def test_over_the_budget_the_folder_is_streamed(folder):
    small = load_dataset(DataConfig(name=f"imagefolder:{folder}", image_size=12))
    tight = load_dataset(DataConfig(name=f"imagefolder:{folder}", image_size=12, memory_budget=1e-6))
    assert isinstance(small.train, Split) and isinstance(tight.train, StreamSplit)
    assert isinstance(tight.test, StreamSplit) and isinstance(tight.val, StreamSplit)


@pytest.mark.parametrize("workers", [0, 2])
def test_eval_batches_are_bitwise_the_in_memory_ones(folder, workers):
    memory, streamed = both(folder, workers=workers)
    assert memory.info == streamed.info  # classes, shape, normalisation, fingerprint, augmentation
    for name in ("train", "val", "test"):
        a, b = memory.split(name), streamed.split(name)
        assert len(a) == len(b) and a.sample_ids() == b.sample_ids() and a.id_names == b.id_names
        assert torch.equal(a.targets, b.targets) and torch.equal(a.ids, b.ids)
        for rank in (0, 1):
            pairs = zip(eval_batches(a, memory.info, batch_size=5, device=CPU, rank=rank, world=2),
                        eval_batches(b, streamed.info, batch_size=5, device=CPU, rank=rank, world=2), strict=True)
            for x, y in pairs:
                assert torch.equal(x.images, y.images) and torch.equal(x.ids, y.ids)
                assert torch.equal(x.targets, y.targets)
    # the uint8 pixels themselves, not only their normalised floats
    first = next(streamed.test.image_batches([torch.arange(len(streamed.test))], CPU))
    assert first.dtype == torch.uint8 and torch.equal(first, memory.test.images)


def test_train_batches_follow_train_order_per_seed_epoch_and_rank(folder):
    memory, streamed = both(folder, workers=2, train_subset="30")
    assert len(memory.train) == len(streamed.train) == 30
    for epoch, rank, start in ((0, 0, 0), (1, 0, 2), (1, 1, 1)):
        kwargs = dict(batch_size=4, seed=7, epoch=epoch, start_step=start, device=CPU, rank=rank, world=2)
        a = list(train_batches(memory.train, memory.info, **kwargs))
        b = list(train_batches(streamed.train, streamed.info, **kwargs))
        order = train_order(30, seed=7, epoch=epoch, rank=rank, world=2, batch_size=4)
        assert [s for s, _ in b] == list(range(start, len(order) // 4))
        expected_ids = streamed.train.ids[torch.tensor(order[start * 4:])]
        assert torch.equal(torch.cat([batch.ids for _, batch in b]), expected_ids)
        for (sa, x), (sb, y) in zip(a, b, strict=True):  # augmented from the step's seed: the same too
            assert sa == sb and torch.equal(x.images, y.images) and torch.equal(x.ids, y.ids)


def test_a_resumed_epoch_reads_none_of_the_skipped_batches(folder, monkeypatch):
    decoded = []

    def counting(path, size, *limit):
        decoded.append(path)
        return read_square(path, size, *limit)

    monkeypatch.setattr(streaming_module, "read_square", counting)  # workers=0: in this process
    _, streamed = both(folder, workers=0)
    steps = list(train_batches(streamed.train, streamed.info, batch_size=6, seed=1, epoch=0, start_step=3,
                               device=CPU))
    assert [s for s, _ in steps] == list(range(3, len(streamed.train) // 6))
    assert len(decoded) == 6 * len(steps)


# --------------------------------------------------------------------------- fingerprint and listing


def test_the_fingerprint_comes_from_names_sizes_and_times_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "d", {"train": 4, "test": 2})
    first = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True)).info.fingerprint
    assert cache_path(root, cache_dir()).is_file()
    assert load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8)).info.fingerprint == first
    assert load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=16)).info.fingerprint != first
    (root / "test" / "bee" / "000.jpg").rename(root / "test" / "bee" / "new.jpg")  # the folder's time changes
    renamed = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True)).info.fingerprint
    assert renamed != first


def test_a_valid_cache_lists_only_the_split_a_command_reads(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "d", {"train": 4, "test": 2})
    load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True))  # writes the cache
    listed = []
    real = folders_module.list_split

    def spy(root_, sub, classes):
        listed.append(sub)
        return real(root_, sub, classes)

    monkeypatch.setattr(folders_module, "list_split", spy)
    monkeypatch.setattr(streaming_module, "list_split", spy)
    data = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True))
    assert listed == [] and len(data.train) + len(data.val) == 12
    assert len(data.split("test").sample_ids()) == 6
    assert listed == ["test"]


def test_a_read_only_data_folder_keeps_its_cache_in_the_user_cache(tmp_path, monkeypatch):
    import modelupdate.atomic as atomic
    from modelupdate.errors import OutputError

    root = write_folder(tmp_path / "d", {"train": 3, "test": 2})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = atomic.atomic_write_bytes

    def read_only_root(path, data):
        if Path(path).parent == root:
            raise OutputError(f"{path}: cannot write (Read-only file system)")
        real(path, data)

    monkeypatch.setattr(atomic, "atomic_write_bytes", read_only_root)
    load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True))
    assert not (root / ".modelupdate-fingerprint.json").exists()
    assert len(list((tmp_path / "cache" / "modelupdate" / "imagefolder").glob("*.json"))) == 1


def test_a_folder_changed_behind_a_valid_cache_is_named(tmp_path):
    """The cache trusts the folders' times: a file removed with the time put back (as a copy keeping times
    might) keeps the cached fingerprint, but listing the split then finds the count changed and says so."""
    import os

    root = write_folder(tmp_path / "d", {"train": 3, "test": 2})
    before = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True)).info.fingerprint
    cat = root / "test" / "cat"
    times = cat.stat()
    (cat / "001.png").unlink()
    os.utime(cat, ns=(times.st_atime_ns, times.st_mtime_ns))
    stale = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True))
    assert stale.info.fingerprint == before
    with pytest.raises(DataError, match=r"test now holds 5 images, 6 when its fingerprint was cached"):
        _ = stale.split("test").targets


def test_png_chunks_are_checked_before_libpng_sees_them(tmp_path):
    import io

    from PIL import Image

    from modelupdate.data.folders import check_png_chunks

    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buffer, "PNG")
    good = buffer.getvalue()
    check_png_chunks(good)
    with pytest.raises(ValueError, match="truncated PNG file"):
        check_png_chunks(good[:-6])
    flipped = bytearray(good)
    flipped[40] ^= 1
    with pytest.raises(ValueError, match="corrupt PNG chunk .* \\(CRC mismatch\\)"):
        check_png_chunks(bytes(flipped))
    path = tmp_path / "x.png"
    path.write_bytes(good[:30])
    with pytest.raises(DataError, match=f"cannot read image {path} \\(truncated PNG file\\); expected a readable"):
        read_square(path, 4)
    path.write_bytes(good)  # 5 x 4 of one colour: its centred 4 x 4 square, resized to 2 x 2
    assert torch.equal(read_square(path, 2), torch.tensor([1, 2, 3], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2))
    with pytest.raises(DataError, match=f"cannot read image {tmp_path / 'missing.png'} \\(No such file"):
        read_square(tmp_path / "missing.png", 2)


# --------------------------------------------------------------------------- the CLI


def cli(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    env.pop("MODELUPDATE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "modelupdate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


FAST = ["--arch", "tiny", "--image-size", "8", "--batch-size", "16", "--device", "cpu", "--quiet"]


def test_a_corrupt_image_is_one_line_naming_the_file_and_exit_2(tmp_path):
    root = write_folder(tmp_path / "d", {"train": 6, "test": 2})
    bad = root / "train" / "bee" / "004.png"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the image data
    bad.write_bytes(bytes(data))
    for stream in (["--stream", "--workers", "2"], ["--stream", "--workers", "0"], []):
        proc = cli("train", "--data", f"imagefolder:{root}", *FAST, *stream, "--out", tmp_path / "m.safetensors",
                   cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "libpng" not in proc.stderr, proc.stderr
        # before training either way: a training image is read to measure the folder's statistics
        assert len(lines) == 1 and lines[-1].startswith("error: "), proc.stderr
        assert f"cannot read image {bad} (corrupt PNG chunk" in lines[-1], lines[-1]
        assert lines[-1].endswith("expected a readable image file"), lines[-1]
        assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.slow
def test_a_streamed_training_run_writes_a_checkpoint_that_loads(tmp_path, folder):
    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.engine import predict_logits
    from modelupdate.runtime import Runtime

    proc = cli("train", "--data", f"imagefolder:{folder}", *FAST, "--epochs", "2", "--stream", "--workers", "2",
               "--out", tmp_path / "m.safetensors", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.meta.config["data"]["stream"] is True and loaded.meta.metrics["epochs_completed"] == 2
    memory = load_dataset(DataConfig(name=f"imagefolder:{folder}", image_size=8))  # evaluated in memory
    assert loaded.meta.dataset_fingerprint == memory.info.fingerprint
    logits, targets, _ = predict_logits(loaded.model, memory.test, memory.info, Runtime(CPU), shard=False)
    assert loaded.meta.metrics["test_correct"] == int((logits.argmax(1) == targets).sum())


@pytest.mark.slow
def test_torchrun_ldi_train_streams_and_its_test_counts_match_one_process(tmp_path):
    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.engine import predict_logits
    from modelupdate.runtime import Runtime
    from modelupdate.workflows.ensemble_train import ensemble_train
    from modelupdate.workflows.train import train

    root = write_folder(tmp_path / "d", {"train": 30, "test": 7})
    data_cfg = DataConfig(name=f"imagefolder:{root}", image_size=8)
    quick = dict(arch="tiny", epochs=1, batch_size=16, device="cpu")
    train(data_cfg, TrainConfig(**quick), tmp_path / "old.safetensors")
    ensemble_train(data_cfg, TrainConfig(**quick, seed=10), tmp_path / "ref.safetensors", members=2)

    import os

    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    env.pop("MODELUPDATE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "modelupdate",
         "ldi-train", "--data", f"imagefolder:{root}", *FAST, "--epochs", "2", "--stream", "--workers", "1",
         "--method", "elodi", "--old", "old.safetensors", "--reference", "ref.safetensors", "--seed", "1",
         "--out", "new.safetensors"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new = load_checkpoint(tmp_path / "new.safetensors")
    assert new.meta.config["data"]["stream"] is True
    memory = load_dataset(data_cfg)

    def predictions(model):
        logits, targets, _ = predict_logits(model, memory.test, memory.info, Runtime(CPU), shard=False)
        return logits.argmax(1), targets

    old_preds, targets = predictions(load_checkpoint(tmp_path / "old.safetensors").model)
    new_preds, _ = predictions(new.model)
    old_ok, new_ok = old_preds == targets, new_preds == targets
    expected = {"test_n": len(targets), "test_correct": int(new_ok.sum()),
                "test_negative_flips": int((old_ok & ~new_ok).sum()),
                "test_positive_flips": int((~old_ok & new_ok).sum())}
    assert {key: new.meta.metrics[key] for key in expected} == expected


@pytest.mark.slow
def test_streamed_sigkill_mid_epoch_and_resume_give_the_uninterrupted_weights(tmp_path):
    from test_resume import COMMON, assert_same_weights, kill_and_resume

    # 3 x 150 images less 10% for validation: 6 steps of 64 per epoch, a state saved after step 5
    root = write_folder(tmp_path / "d", {"train": 150, "test": 4}, size_range=(8, 14))
    command = ["train", "--data", f"imagefolder:{root}", "--image-size", "8", "--stream", "--workers", "2",
               "--arch", "cnn-s", "--arch-args", '{"width": 8}', *COMMON]
    work = tmp_path / "runs"
    work.mkdir()
    full, resumed, log = kill_and_resume(work, command, "m.state.safetensors")
    assert_same_weights(full, resumed)


def test_a_copy_without_its_times_is_the_same_data(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "d", {"train": 3, "test": 2})
    before = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, stream=True)).info.fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, copy_function=shutil.copyfile)  # new modification times
    assert load_dataset(DataConfig(name=f"imagefolder:{copy}", image_size=8, stream=True)).info.fingerprint == before
    first = sorted((copy / "test").glob("*/*"))[0]
    first.write_bytes(first.read_bytes() + b"x")  # one more byte: other data
    cache_path(copy, cache_dir()).unlink()
    assert load_dataset(DataConfig(name=f"imagefolder:{copy}", image_size=8, stream=True)).info.fingerprint != before
