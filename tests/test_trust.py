"""Untrusted files: a checkpoint never makes the tool import code, and gates cannot be misread.

Real subprocesses (`python -m modelupdate`), run from a folder holding the very module a crafted
checkpoint names, with that folder on PYTHONPATH too: importing it would succeed, and would write a
marker file. It must never be written unless the user allows the module.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from modelupdate.checkpoint import read_safetensors

FAST = ["--arch", "tiny", "--epochs", "1", "--batch-size", "64", "--train-subset", "128", "--device", "cpu",
        "--quiet"]
CPU_SYNTHETIC = ["--device", "cpu", "--data", "synthetic"]
EVIL_MODULE = '''
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("code from a checkpoint ran")

from modelupdate.models import tiny

def factory(num_classes, input_shape, **kw):
    return tiny(num_classes, input_shape, **kw)
'''


def cli(*args, cwd: Path, extra_env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("MODELUPDATE_DEBUG", None)
    env.pop("MODELUPDATE_ARCH_MODULES", None)
    env["COLUMNS"] = "300"
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env |= extra_env or {}
    proc = subprocess.run([sys.executable, "-m", "modelupdate", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env, umask=0o022)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> dict[str, Path]:
    """A real trained model, and a copy of it whose metadata names ``evil_arch:factory``."""
    work = tmp_path_factory.mktemp("trust")
    (work / "evil_arch.py").write_text(EVIL_MODULE)
    good = work / "good.safetensors"
    code, _, err = cli("train", *FAST, "--out", good, cwd=work)
    assert code == 0, err
    _, meta = read_safetensors(good)
    bad = work / "evil.safetensors"
    save_file(load_file(str(good)), str(bad), metadata=meta | {"arch": "evil_arch:factory"})
    return {"work": work, "good": good, "evil": bad, "marker": work / "MARKER"}


@pytest.mark.parametrize("command", [
    ["predict", "{evil}", "--out", "{work}/p.npz", "--device", "cpu", "--data", "synthetic"],
    ["flip-report", "--old", "{evil}", "--new", "{good}", "--device", "cpu", "--data", "synthetic"],
    ["flip-report", "--old", "{good}", "--new", "{evil}", "--device", "cpu", "--data", "synthetic"],
    ["compare", "--old", "{good}", "{evil}", "--device", "cpu", "--data", "synthetic"],
    ["ldi-train", "--method", "ldi-old", "--old", "{evil}", *FAST, "--out", "{work}/new.safetensors"],
], ids=["predict", "flip-report-old", "flip-report-new", "compare", "ldi-train-old"])
def test_a_checkpoint_naming_code_is_refused_and_the_code_never_runs(evil, command):
    before = sorted(p.name for p in evil["work"].iterdir())
    args = [c.format(**evil) for c in command]
    code, out, err = cli(*args, cwd=evil["work"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "names code module 'evil_arch'" in lines[0] and "--allow-arch-module evil_arch" in lines[0]
    assert str(evil["evil"]) in lines[0]
    assert not evil["marker"].exists(), "the module named by the file was imported"
    assert sorted(p.name for p in evil["work"].iterdir()) == before, "nothing is written"


def test_info_shows_the_metadata_without_importing(evil):
    code, out, err = cli("info", evil["evil"], "--json", cwd=evil["work"])
    assert code == 0, err
    assert json.loads(out)["arch"] == "evil_arch:factory"
    assert not evil["marker"].exists()


def test_the_user_can_allow_a_module_on_the_command_line_or_in_the_environment(evil, tmp_path):
    work = evil["work"]
    try:
        code, _, err = cli("--allow-arch-module", "evil_arch", "predict", evil["evil"], "--out", tmp_path / "a.npz",
                           *CPU_SYNTHETIC, cwd=work)
        assert code == 0, err
        assert evil["marker"].exists()
        evil["marker"].unlink()
        code, _, err = cli("predict", evil["evil"], "--out", tmp_path / "b.npz", *CPU_SYNTHETIC, cwd=work,
                           extra_env={"MODELUPDATE_ARCH_MODULES": "other,evil_arch"})
        assert code == 0, err
        # a module that only starts with the allowed name is not inside it
        evil["marker"].unlink()
        code, _, err = cli("predict", evil["evil"], "--out", tmp_path / "c.npz", *CPU_SYNTHETIC, cwd=work,
                           extra_env={"MODELUPDATE_ARCH_MODULES": "evil"})
        assert code == 2 and not evil["marker"].exists(), err
    finally:
        evil["marker"].unlink(missing_ok=True)


@pytest.fixture(scope="module")
def predictions(evil) -> dict[str, Path]:
    """The good model's predictions, as old and new (0 flips): a gate reads a known value."""
    out = evil["work"] / "good.npz"
    code, _, err = cli("predict", evil["good"], "--out", out, *CPU_SYNTHETIC, cwd=evil["work"])
    assert code == 0, err
    return {"preds": out}


@pytest.mark.parametrize("value", ["2", "1.5", "-0.01", "nan", "inf", "two", "150%"])
def test_a_rate_threshold_that_could_be_misread_is_refused(evil, predictions, value):
    code, out, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"],
                         "--max-nfr", value, cwd=evil["work"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--max-nfr" in lines[0], err
    if value == "2":
        assert "did you mean 2% or 0.02?" in lines[0]


def test_two_percent_and_0_02_gate_identically(evil, predictions, tmp_path):
    reports = []
    for value in ("2%", "0.02"):
        report = tmp_path / f"r{value}.json"
        code, _, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"],
                           "--max-nfr", value, "--json", report, cwd=evil["work"])
        assert code == 0, err
        gates = json.loads(report.read_text())["gates"]
        reports.append(gates)
    assert reports[0] == reports[1]
    assert reports[0][0]["threshold"] == pytest.approx(0.02)


def test_outputs_honour_the_umask(evil, predictions, tmp_path):
    """Checkpoints and reports: 0644 under umask 022 (a temp file's 0600 must not leak through); 0640
    under umask 027."""
    code, _, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"],
                       "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--html", tmp_path / "r.html",
                       cwd=evil["work"])
    assert code == 0, err
    for name in ("r.json", "r.md", "r.html"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    assert stat.S_IMODE(os.stat(evil["good"]).st_mode) == 0o644
    from modelupdate.atomic import atomic_write_bytes

    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "x.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "x.bin").st_mode) == 0o640


# --------------------------------------------------------------------------- bad image folders


def write_image_folder(root: Path, per_class: int = 6) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for k, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (10 + i, 12), colour).save(folder / f"img{i}.png")


def corrupt_jpeg(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (1, 2, 3)).save(path, format="JPEG")
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:20]) + b"\x00" * 40)  # the header survives, the image data does not


BAD_IMAGES = {
    "corrupt-jpeg": ("bad.jpg", corrupt_jpeg),
    "truncated-png": ("bad.png", lambda p: (write_image_folder_png(p), p.write_bytes(p.read_bytes()[:30]))),
    "text-as-png": ("bad.png", lambda p: p.write_text("not an image")),
    "empty-file": ("bad.jpeg", lambda p: p.write_bytes(b"")),
}


def write_image_folder_png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), (9, 9, 9)).save(path)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("images")
    write_image_folder(work / "data")
    model = work / "m.safetensors"
    code, _, err = cli("train", "--data", f"imagefolder:{work / 'data'}", "--image-size", "8", "--arch", "tiny",
                       "--epochs", "1", "--device", "cpu", "--quiet", "--val-fraction", "0", "--out", model, cwd=work)
    assert code == 0, err
    return {"work": work, "model": model}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_a_bad_image_in_the_test_folder_is_one_line_exit_2(image_model, tmp_path, case):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(image_model["work"] / "data", data)
    name, make = BAD_IMAGES[case]
    bad = data / "test" / "class1" / name
    make(bad)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli("flip-report", "--old", image_model["model"], "--new", image_model["model"], "--data",
                         f"imagefolder:{data}", "--image-size", "8", "--device", "cpu", "--json", tmp_path / "r.json",
                         cwd=tmp_path)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing is written"


# --------------------------------------------------------------------------- options checked before any work


BAD_OPTIONS = [
    (["--arch-args", '{"width": -3}'], "--arch-args"),
    (["--arch-args", "2.5"], "--arch-args"),
    (["--arch-args", "not json"], "--arch-args"),
    (["--arch-args", '{"width": {"nested": 1}}'], "--arch-args"),
    (["--warmup-epochs", "nan"], "--warmup-epochs"),
    (["--warmup-epochs", "inf"], "--warmup-epochs"),
    (["--label-smoothing", "2"], "--label-smoothing"),
    (["--label-smoothing", "nan"], "--label-smoothing"),
    (["--seed", "99999999999999999999"], "--seed"),
    (["--train-subset", "inf"], "--train-subset"),
    (["--train-subset", "1e400"], "--train-subset"),
    (["--image-size", "0"], "--image-size"),
    (["--image-size", "-4"], "--image-size"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--weight-decay", "nan"], "--weight-decay"),
    (["--dropout", "1.5"], "--dropout"),
    (["--mixup", "-1"], "--mixup"),
    (["--mix-prob", "2"], "--mix-prob"),
    (["--epochs", "x"], "--epochs"),
    (["--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize("args, option", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_a_bad_training_option_is_one_line_exit_2_and_nothing_is_written(tmp_path, args, option):
    code, out, err = cli("train", *FAST, *args, "--out", tmp_path / "m.safetensors", cwd=tmp_path)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, option", [
    (["--tau", "0"], "--tau"), (["--tau", "-1"], "--tau"), (["--xi", "nan"], "--xi"), (["--p", "nan"], "--p"),
    (["--weighting", "max"], "--weighting"),
], ids=["tau-0", "tau-neg", "xi-nan", "p-nan", "weighting"])
def test_a_bad_method_option_is_one_line_exit_2(tmp_path, args, option):
    code, out, err = cli("ldi-train", "--method", "kd", "--old", tmp_path / "missing.safetensors", *FAST, *args,
                         "--out", tmp_path / "m.safetensors", cwd=tmp_path)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_ldi_train_refuses_to_overwrite_its_old_model(evil, tmp_path):
    import shutil

    old = tmp_path / "old.safetensors"
    shutil.copyfile(evil["good"], old)
    before = old.read_bytes()
    code, _, err = cli("ldi-train", "--method", "ldi-old", "--old", old, *FAST, "--out", old, cwd=tmp_path)
    assert code == 2 and "is the --old file" in err, err
    assert old.read_bytes() == before


def test_resume_on_a_finished_output_changes_nothing(evil, tmp_path):
    import shutil

    out = tmp_path / "m.safetensors"
    shutil.copyfile(evil["good"], out)
    mtime = out.stat().st_mtime_ns
    code, _, err = cli("train", *FAST, "--out", out, "--resume", cwd=tmp_path)
    assert code == 0 and "already complete" in err, err
    assert out.stat().st_mtime_ns == mtime and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_second_writer_of_the_same_out_is_refused(evil, tmp_path):
    import fcntl

    out = tmp_path / "m.safetensors"
    lock = tmp_path / ".m.safetensors.lock"
    with open(lock, "w") as held:  # as a running command holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = cli("train", *FAST, "--out", out, cwd=tmp_path)
    assert code == 2 and "another command is writing it now" in err, err
    assert not out.exists()


def test_stale_temp_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path):
    stale = tmp_path / ".m.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, _, err = cli("train", *FAST, "--out", tmp_path / "m.safetensors", cwd=tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.log.jsonl", "m.safetensors"]


@pytest.mark.parametrize("kind", ["symlink", "device", "fifo"])
def test_report_outputs_never_replace_something_that_is_not_a_regular_file(evil, predictions, tmp_path, kind):
    target = tmp_path / "r.json"
    if kind == "symlink":
        (tmp_path / "real.json").write_text("keep")
        target.symlink_to(tmp_path / "real.json")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = Path("/dev/null")
    code, _, err = cli("flip-report", "--old", predictions["preds"], "--new", predictions["preds"], "--json", target,
                       "--markdown", tmp_path / "r.md", cwd=tmp_path)
    assert code == 2 and str(target) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.md").exists(), "all outputs or none"
    if kind == "symlink":
        assert target.is_symlink() and (tmp_path / "real.json").read_text() == "keep"
    if kind == "device":
        assert Path("/dev/null").is_char_device()


def test_markup_and_escape_codes_in_a_file_are_shown_as_text(evil, tmp_path):
    _, meta = read_safetensors(evil["good"])
    classes = json.loads(meta["classes"])
    classes[0] = "[/bold]cat\x1b[2J"
    crafted = tmp_path / "crafted.safetensors"
    save_file(load_file(str(evil["good"])), str(crafted),
              metadata=meta | {"classes": json.dumps(classes), "dataset": "synthetic\x1b[2J[/red]"})
    code, out, err = cli("info", crafted, cwd=tmp_path, extra_env={"TERM": "xterm"})
    assert code == 0, err
    assert "[/bold]cat" in out and "synthetic\\x1b[2J[/red]" in out and "\x1b" not in out
    preds = tmp_path / "crafted.npz"
    code, out, err = cli("predict", crafted, "--out", preds, *CPU_SYNTHETIC, cwd=tmp_path)
    assert code == 2 and "class names differ" in err, err  # the data's class names are not the file's


# --------------------------------------------------------------------------- resume and compatibility guards


def test_resume_refuses_a_state_written_on_other_data(tmp_path):
    out = tmp_path / "m.safetensors"
    state = tmp_path / "m.state.safetensors"
    code, _, err = cli("train", *FAST, "--out", out, "--checkpoint-every", "1", "--epochs", "2", cwd=tmp_path)
    assert code == 0, err
    # a state as a killed run leaves it: from the uninterrupted run's own files
    from modelupdate.checkpoint import load_checkpoint
    from modelupdate.engine import make_optimizer
    from modelupdate.train_state import save_train_state
    from modelupdate.workflows.common import data_recipe

    loaded = load_checkpoint(out)
    from modelupdate.config import DataConfig, TrainConfig
    from modelupdate.data import load_dataset

    data_cfg = DataConfig(train_subset="128")
    cfg = TrainConfig(**loaded.meta.config["train"])
    recipe = data_recipe(data_cfg, load_dataset(data_cfg).info)
    save_train_state(state, loaded.model, make_optimizer(loaded.model, cfg),
                     {"epoch": 1, "step": 0, "history": [], "config": cfg.to_dict(), "data": recipe})
    out.unlink()
    code, _, err = cli("train", *FAST, "--out", out, "--checkpoint-every", "1", "--epochs", "2", "--resume",
                       "--train-subset", "256", cwd=tmp_path)
    assert code == 2 and "written with --train-subset = '128'" in err and "'256'" in err, err
    assert state.exists() and not out.exists()


def test_old_model_from_another_validation_split_is_refused_unless_allowed(evil, tmp_path):
    args = ["ldi-train", "--method", "ldi-old", "--old", evil["good"], *FAST, "--out", tmp_path / "n.safetensors"]
    code, _, err = cli(*args, "--split-seed", "7", cwd=tmp_path)
    assert code == 2 and "split_seed = 0" in err and "--allow-other-data" in err, err
    assert list(tmp_path.iterdir()) == []
    code, _, err = cli(*args, "--split-seed", "7", "--allow-other-data", cwd=tmp_path)
    assert code == 0, err


def test_ensemble_resume_refuses_a_finished_member_of_another_recipe(evil, tmp_path):
    import shutil

    members = tmp_path / "e.members"
    members.mkdir()
    shutil.copyfile(evil["good"], members / "member0.safetensors")  # trained as `tiny`, seed 0
    code, _, err = cli("ensemble-train", "-m", "2", *FAST, "--arch-args", '{"width": 4}', "--out",
                       tmp_path / "e.safetensors", "--resume", cwd=tmp_path)
    assert code == 2 and "finished member" in err and "arch_args" in err, err
    assert not (tmp_path / "e.safetensors").exists()


def test_a_reference_cache_computed_at_another_precision_is_refused(evil, tmp_path):
    ref = tmp_path / "ref.safetensors"
    code, _, err = cli("ensemble-train", "-m", "2", *FAST, "--out", ref, cwd=tmp_path)
    assert code == 0, err
    common = ["ldi-train", "--method", "elodi", "--reference", ref, "--reference-cache", tmp_path / "cache.safetensors",
              *FAST]
    code, _, err = cli(*common, "--out", tmp_path / "a.safetensors", cwd=tmp_path)
    assert code == 0, err
    code, _, err = cli(*common, "--amp", "bf16", "--out", tmp_path / "b.safetensors", cwd=tmp_path)
    assert code == 2 and "computed at float32" in err and "bfloat16" in err, err
    code, _, err = cli(*common[:6], ref, *FAST, "--out", tmp_path / "c.safetensors", cwd=tmp_path)
    assert code == 2 and "is the --reference file" in err, err


def test_a_one_class_image_folder_is_refused(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / "d" / split / "only").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / "d" / split / "only" / f"{i}.png")
    code, _, err = cli("train", "--data", f"imagefolder:{tmp_path / 'd'}", *FAST[:-3], "--out",
                       tmp_path / "m.safetensors", cwd=tmp_path)
    assert code == 2 and "expected at least 2" in err, err


def test_a_symlink_loop_as_a_prediction_file_is_one_line_exit_2(predictions, tmp_path):
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    code, _, err = cli("flip-report", "--old", loop, "--new", predictions["preds"], cwd=tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "symbolic link" in err, err


def test_a_safetensors_file_named_pt_is_not_called_a_pickle(evil, tmp_path):
    import shutil

    renamed = tmp_path / "model.pt"
    shutil.copyfile(evil["good"], renamed)
    code, out, err = cli("info", renamed, "--json", cwd=tmp_path)
    assert code == 0 and "pickle" not in err, err
    assert json.loads(out)["arch"] == "tiny"


def test_resuming_a_run_saved_after_its_last_epoch_says_so(tmp_path):
    from modelupdate.events.progress import _resume_line

    line = _resume_line("train", {"epoch": 2, "epochs": 2, "step": 0, "path": "m.state.safetensors"})
    assert "every epoch is trained" in line and "epoch 3" not in line
    assert "resuming from epoch 2, step 5" in _resume_line("train", {"epoch": 1, "epochs": 2, "step": 5,
                                                                     "path": "m.state.safetensors"})
