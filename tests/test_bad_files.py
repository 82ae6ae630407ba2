"""Model and prediction files that are not what they claim, through the command line in a subprocess.

Every case exits 2 with one ``error:`` line naming the file and what was expected, writes nothing, and
grouped by the mechanism that refuses it:

- a checkpoint's weights (``checkpoint.load_checkpoint``, which every command loads models through,
  and ``import``): NaN / Inf, bool or int32 where the model holds floats; logits that overflow on the
  first batch the model is run on;
- declared sizes checked before anything is allocated: an .npz bomb, an .npy header declaring a huge
  shape, a checkpoint whose ``arch_args`` imply billions of parameters beside kilobytes of weights
  (peak memory measured and printed: run with ``-s`` to see it);
- a FIFO (or any non-regular file) as an input: refused by one helper, never opened (a timeout fails);
- input at fault that used to end in exit 3, and values that used to pass silently.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelupdate.checkpoint import load_checkpoint
from modelupdate.config import DataConfig, TrainConfig
from modelupdate.models import build_model

BAD_PREDICTIONS = Path(__file__).parent / "data" / "bad_predictions"
BAD_CHECKPOINTS = Path(__file__).parent / "data" / "bad_checkpoints"
# ldi-train on the CLI's default synthetic data (4 classes, 1x12x12): one quick epoch
FAST = ["--arch", "tiny", "--epochs", "1", "--batch-size", "64", "--train-subset", "128", "--device", "cpu", "--quiet"]
EVAL = ["--data", "synthetic", "--device", "cpu"]
# what a small bad file may cost a run beyond what the same command costs on good files (importing torch
# alone takes about 650 MB of RSS, so the limit is on the difference; each test prints both peaks)
MEMORY_LIMIT_MB = 500


@pytest.fixture(scope="module")
def files(tmp_path_factory, single_thread, write_unchecked) -> dict[str, Path]:
    """A good tiny checkpoint on the CLI's default synthetic data, bad variants of it (the same
    metadata), the plain state dicts `import` reads, and a FIFO."""
    from modelupdate.workflows.train import train

    d = tmp_path_factory.mktemp("bad_files")
    good = d / "good.safetensors"
    with single_thread():
        train(DataConfig(train_subset="128"), TrainConfig(arch="tiny", epochs=1, batch_size=64, device="cpu"), good)
    loaded = load_checkpoint(good)
    paths = {"good": good}
    header = loaded.meta.to_header()

    def weights(name: str, change) -> None:
        model = copy.deepcopy(loaded.model)
        with torch.no_grad():
            change(model.head[-1])
        paths[name] = d / f"{name}.safetensors"
        write_unchecked(paths[name], model, loaded.meta)
        paths[f"{name}_plain"] = d / f"{name}_plain.safetensors"  # what `import --weights` reads
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths[f"{name}_plain"]))

    weights("nan", lambda head: head.weight.__setitem__((0, 0), float("nan")))
    weights("inf", lambda head: head.bias.__setitem__(1, float("inf")))
    # every weight finite, the logits not: 3e38 summed over 8 features overflows float32
    weights("overflow", lambda head: (head.weight.fill_(3e38), head.bias.fill_(3e38)))
    for dtype in ("int32", "bool"):
        state = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v).contiguous()
                 for k, v in loaded.model.state_dict().items()}
        paths[dtype] = d / f"{dtype}.safetensors"
        save_file(state, str(paths[dtype]), metadata=header)
        paths[f"{dtype}_plain"] = d / f"{dtype}_plain.safetensors"
        save_file(state, str(paths[f"{dtype}_plain"]))
    # 9 KB of cnn-s weights (hidden 16) whose metadata says hidden 4,000,000: 308M numbers, 1.2 GB
    torch.manual_seed(0)
    small = build_model("cnn-s", 4, (1, 12, 12), {"width": 4, "hidden": 16})
    paths["hidden"] = d / "hidden.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(paths["hidden"]),
              metadata=header | {"arch": "cnn-s", "arch_args": json.dumps({"hidden": 4_000_000, "width": 4})})
    paths["nul_class"] = d / "nul_class.safetensors"
    write_unchecked(paths["nul_class"], loaded.model,
                    dataclasses.replace(loaded.meta, classes=["class0", "class\0one", "class2", "class3"]))
    for suffix in (".safetensors", ".npz", ".csv", ".txt"):
        paths[f"fifo{suffix}"] = d / f"fifo{suffix}"
        os.mkfifo(paths[f"fifo{suffix}"])
    return paths


@pytest.fixture
def out(tmp_path) -> Path:
    """An empty folder for the outputs a failed command must not write."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def one_line_error(code: int, stderr: str, *fragments: str) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and stderr.strip().splitlines()[-1] == lines[0], stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def command(name: str, bad: Path, files: dict[str, Path], out: Path) -> list:
    """The command line of ``name`` with ``bad`` as the model it loads."""
    good = files["good"]
    return {
        "predict": ["predict", bad, *EVAL, "--out", out / "p.npz"],
        "flip-report": ["flip-report", "--old", good, "--new", bad, *EVAL, "--json", out / "r.json"],
        "compare": ["compare", "--old", good, bad, *EVAL, "--json", out / "r.json"],
        "ldi-train --reference": ["ldi-train", "--method", "elodi", "--old", good, "--reference", bad,
                                  "--out", out / "n.safetensors", *FAST],
        "ldi-train --old": ["ldi-train", "--method", "ldi-old", "--old", bad, "--out", out / "n.safetensors", *FAST],
        "import": ["import", "--arch", "tiny", "--weights", bad, "--like", good, "--out", out / "i.safetensors"],
    }[name]


COMMANDS = ["predict", "flip-report", "compare", "ldi-train --reference", "ldi-train --old", "import"]


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", COMMANDS)
def test_nan_weights_are_refused_by_every_command_that_loads_a_model(run_cli, files, out, name):
    bad = files["nan_plain" if name == "import" else "nan"]
    code, _, err = run_cli(*command(name, bad, files, out))
    one_line_error(code, err, bad.name, "tensor 'head.3.weight' holds NaN or Inf; expected finite weights")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["predict", "ldi-train --reference"])
def test_inf_weights_are_refused(run_cli, files, out, name):
    code, _, err = run_cli(*command(name, files["inf"], files, out))
    one_line_error(code, err, "inf.safetensors", "tensor 'head.3.bias' holds NaN or Inf")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["predict", "ldi-train --reference", "ldi-train --old"])
def test_logits_that_overflow_on_the_first_batch_are_refused(run_cli, files, out, name):
    code, _, err = run_cli(*command(name, files["overflow"], files, out))
    one_line_error(code, err, "overflow.safetensors", "gives NaN or Inf logits on the first batch")
    assert list(out.iterdir()) == []


def test_a_kept_ensemble_member_with_nan_weights_is_refused(run_cli, files, tmp_path, write_unchecked):
    """ensemble-train --resume keeps a finished member only when its weights load: a NaN member file
    (its metadata that of a real member, so the recipe check passes) fails, naming the member."""
    args = ["ensemble-train", "--members", "1", "--out", tmp_path / "e.safetensors", *FAST]
    code, _, err = run_cli(*args)
    assert code == 0, err
    ensemble = load_checkpoint(tmp_path / "e.safetensors")
    member = copy.deepcopy(ensemble.members[0])
    with torch.no_grad():
        member.head[-1].weight[0, 0] = float("nan")
    config = copy.deepcopy(ensemble.meta.config)
    config["train"]["seed"] = ensemble.meta.member_seeds[0]  # what the member was trained with
    meta = dataclasses.replace(ensemble.meta, format="modelupdate-model/1", member_seeds=[], member_metrics=[],
                               metrics=ensemble.meta.member_metrics[0], config=config)
    members = tmp_path / "f.members"
    members.mkdir()
    write_unchecked(members / "member0.safetensors", member, meta)
    code, _, err = run_cli(*args[:4], tmp_path / "f.safetensors", *args[5:], "--resume")
    one_line_error(code, err, "member0.safetensors", "holds NaN or Inf; expected finite weights")
    assert not (tmp_path / "f.safetensors").exists()


@pytest.mark.parametrize("dtype", ["int32", "bool"])
@pytest.mark.parametrize("name", ["predict", "flip-report", "compare", "ldi-train --old", "import"])
def test_weights_that_are_not_floats_are_refused(run_cli, files, out, name, dtype):
    bad = files[f"{dtype}_plain" if name == "import" else dtype]
    code, _, err = run_cli(*command(name, bad, files, out))
    one_line_error(code, err, bad.name, f"tensor 'features.0.weight' has dtype {dtype}; expected floating-point "
                   "weights")
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- declared sizes


# Runs the command given as its arguments and writes the child's peak RSS (KB) to $PEAK_RSS_FILE. The
# measured command is a grandchild of pytest: a child started straight from pytest reports pytest's own
# peak RSS (the parent's memory counts until exec), torch and all.
MEASURE = """
import os, resource, subprocess, sys
code = subprocess.call(sys.argv[2:], timeout=float(sys.argv[1]))
with open(os.environ["PEAK_RSS_FILE"], "w") as fh:
    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def run_measured(*args, timeout: float = 180) -> tuple[int, str, str, float]:
    """(returncode, stdout, stderr, peak RSS in MB) of ``python -m modelupdate ARGS``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1", PEAK_RSS_FILE=str(Path(tmp) / "peak"))
        env.pop("MODELUPDATE_DEBUG", None)
        proc = subprocess.run([sys.executable, "-c", MEASURE, str(timeout), sys.executable, "-m", "modelupdate",
                               *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout + 30)
        peak_kb = int((Path(tmp) / "peak").read_text())  # KB on Linux
    return proc.returncode, proc.stdout, proc.stderr, peak_kb / 1024


def clean_flip_report_peak(out: Path) -> float:
    """Peak RSS (MB) of flip-report on two good prediction files: what the command costs before any file
    is at fault (the report it writes is removed)."""
    code, _, err, peak = run_measured("flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new",
                                      BAD_PREDICTIONS / "pair_old.npz", "--json", out / "clean.json")
    assert code == 0, err
    (out / "clean.json").unlink()
    return peak


def write_npz_bomb(path: Path, mib: int) -> None:
    """An .npz whose 'logits' member inflates to ``mib`` MiB of zeros (float32 [N, 16]) from about 1 KB per
    MiB: one raw-deflate block of a MiB of zeros after a full flush, repeated, in a zip written by hand."""
    rows = mib * (1 << 20) // 64
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 16), }" % rows
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    npy_header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    head = deflate.compress(npy_header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)  # a full flush: the same bytes each MiB
    data = head + block * mib + deflate.flush(zlib.Z_FINISH)
    crc = zlib.crc32(npy_header)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    size = len(npy_header) + mib * (1 << 20)
    name = b"logits.npy"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)


def test_an_npz_bomb_is_refused_before_it_inflates(tmp_path, out):
    bomb = tmp_path / "bomb.npz"
    write_npz_bomb(bomb, 2400)
    assert bomb.stat().st_size < 3_000_000
    baseline = clean_flip_report_peak(out)
    code, _, err, peak = run_measured("flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new", bomb,
                                      "--json", out / "r.json")
    print(f"\n.npz bomb ({bomb.stat().st_size:,} bytes declaring 2.5 GB): peak RSS {peak:.0f} MB, the same command "
          f"on good files {baseline:.0f} MB")
    one_line_error(code, err, "bomb.npz", "its arrays inflate to 2,516,582,528 bytes from a", "a zip bomb?")
    assert peak - baseline < MEMORY_LIMIT_MB
    assert list(out.iterdir()) == []


def test_an_npy_header_declaring_a_huge_shape_is_refused_before_allocating(out):
    baseline = clean_flip_report_peak(out)
    code, _, err, peak = run_measured("flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz",
                                      "--new", BAD_PREDICTIONS / "huge_shape.npz", "--json", out / "r.json")
    print(f"\n.npy header declaring (10^9, 10^6) float32: peak RSS {peak:.0f} MB, the same command on good files "
          f"{baseline:.0f} MB")
    one_line_error(code, err, "huge_shape.npz", "field 'logits' declares shape (1000000000, 1000000) of float32",
                   "but its archive member holds 48 bytes")
    assert peak - baseline < MEMORY_LIMIT_MB
    assert list(out.iterdir()) == []


def test_arch_args_implying_billions_of_parameters_are_refused_before_building(files, out):
    """The model a checkpoint's metadata describes is built on torch's "meta" device and compared with the
    weights present before it is built for real: 9 KB of weights never allocate 1.2 GB. Importing torch
    alone takes hundreds of MB, so the bad file's peak is held against the same command on a good file."""
    code, _, err, baseline = run_measured("predict", files["good"], *EVAL, "--out", out / "good.npz")
    assert code == 0, err
    (out / "good.npz").unlink()
    assert files["hidden"].stat().st_size < 100_000
    code, _, err, peak = run_measured("predict", files["hidden"], *EVAL, "--out", out / "p.npz")
    print(f"\ncheckpoint with arch_args hidden=4,000,000: peak RSS {peak:.0f} MB, the same command on a good "
          f"checkpoint {baseline:.0f} MB")
    one_line_error(code, err, "hidden.safetensors", "weights do not fit architecture 'cnn-s'",
                   "size mismatch for head.1.weight: [16, 72] in the file, [4000000, 72] in the architecture",
                   "its metadata implies 308,000,378 numbers, the file holds 1,610")
    assert peak - baseline < MEMORY_LIMIT_MB
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- FIFOs


FIFO_CASES = {
    "info": lambda f, out: ["info", f["fifo.safetensors"]],
    "predict": lambda f, out: ["predict", f["fifo.safetensors"], *EVAL, "--out", out / "p.npz"],
    "ldi-train --old": lambda f, out: ["ldi-train", "--method", "ldi-old", "--old", f["fifo.safetensors"],
                                       "--out", out / "n.safetensors", *FAST],
    "ldi-train --reference": lambda f, out: ["ldi-train", "--method", "elodi", "--old", f["good"], "--reference",
                                             f["fifo.safetensors"], "--out", out / "n.safetensors", *FAST],
    "flip-report --new .npz": lambda f, out: ["flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new",
                                              f["fifo.npz"], "--json", out / "r.json"],
    "compare .csv": lambda f, out: ["compare", "--old", BAD_PREDICTIONS / "pair_old.npz", f["fifo.csv"],
                                    "--json", out / "r.json"],
    "import --weights": lambda f, out: ["import", "--arch", "tiny", "--weights", f["fifo.safetensors"], "--like",
                                        f["good"], "--out", out / "i.safetensors"],
    "import --like": lambda f, out: ["import", "--arch", "tiny", "--weights", f["good"], "--like",
                                     f["fifo.safetensors"], "--out", out / "i.safetensors"],
    "--classes": lambda f, out: ["flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new",
                                 BAD_PREDICTIONS / "pair_old.npz", "--classes", f["fifo.txt"], "--json",
                                 out / "r.json"],
}


@pytest.mark.parametrize("name", sorted(FIFO_CASES))
def test_a_fifo_as_an_input_is_refused_not_opened(run_cli, files, out, name):
    """Opening a FIFO for reading waits for a writer: a hang fails the test through its timeout."""
    code, _, err = run_cli(*FIFO_CASES[name](files, out), timeout=60)
    line = one_line_error(code, err, "not a regular file (a FIFO); expected a file")
    assert "fifo." in line
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- exit 2, not 3


def test_info_on_a_parent_sha256_that_is_a_number(run_cli):
    code, out, err = run_cli("info", BAD_CHECKPOINTS / "update_parent_a_number.safetensors")
    one_line_error(code, err, "update_parent_a_number.safetensors", "'parent_sha256' is 5; expected a sha256")
    assert out == ""


def test_bf16_logits_in_a_prediction_file(run_cli, out):
    code, _, err = run_cli("flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new",
                           BAD_PREDICTIONS / "bf16_logits.safetensors", "--json", out / "r.json")
    one_line_error(code, err, "bf16_logits.safetensors", "field 'logits' has dtype BF16; expected F16, F32 or F64")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("arch", [":", "pkg:", ":factory", "pkg..mod:f", "pkg:f:g"])
def test_import_with_an_arch_that_is_no_factory_path(run_cli, files, out, arch):
    code, _, err = run_cli("import", "--arch", arch, "--weights", files["good"], "--like", files["good"],
                           "--out", out / "i.safetensors")
    one_line_error(code, err, f"--arch {arch!r}: expected a registered name", "package.module:factory")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("arch", ["resnet18", "torchvision.models:resnet18"])
def test_import_with_weights_that_are_not_a_name(run_cli, files, out, arch):
    code, _, err = run_cli("import", "--arch", arch, "--arch-args", '{"weights": 1}', "--weights", files["good"],
                           "--like", files["good"], "--out", out / "i.safetensors")
    one_line_error(code, err, "--arch-args: weights 1 for resnet18: expected the name of torchvision weights")
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- accepted silently before


def test_compare_refuses_a_negative_parameter_count(run_cli, out):
    code, _, err = run_cli("compare", "--old", BAD_PREDICTIONS / "pair_old.npz",
                           BAD_PREDICTIONS / "params_negative.safetensors", "--json", out / "r.json")
    one_line_error(code, err, "params_negative.safetensors", "metadata 'params' is '-5'; expected a count")
    assert list(out.iterdir()) == []


def test_class_name_with_a_nul_in_a_checkpoint(run_cli, files, out):
    code, _, err = run_cli("predict", files["nul_class"], *EVAL, "--out", out / "p.npz")
    one_line_error(code, err, "nul_class.safetensors", "metadata field 'classes': class 1 ('class\\x00one') holds "
                   "a NUL byte")
    assert list(out.iterdir()) == []


def test_class_name_with_a_nul_in_a_prediction_file(run_cli, out):
    code, _, err = run_cli("flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new",
                           BAD_PREDICTIONS / "class_name_nul.npz", "--json", out / "r.json")
    one_line_error(code, err, "class_name_nul.npz", "field 'classes': class 1 ('b\\x00x') holds a NUL byte")
    assert list(out.iterdir()) == []


def test_class_name_with_a_nul_in_a_classes_file(run_cli, tmp_path, out):
    classes = tmp_path / "classes.txt"
    classes.write_bytes(b"a\nb\x00x\nc\n")
    code, _, err = run_cli("flip-report", "--old", BAD_PREDICTIONS / "pair_old.npz", "--new",
                           BAD_PREDICTIONS / "pair_old.npz", "--classes", classes, "--json", out / "r.json")
    one_line_error(code, err, "--classes", "class 1 ('b\\x00x') holds a NUL byte")
    assert list(out.iterdir()) == []


def test_class_name_with_a_nul_given_to_import(run_cli, files, tmp_path, out):
    classes = tmp_path / "classes.txt"
    classes.write_bytes(b"a\nb\x00x\nc\nd\n")
    code, _, err = run_cli("import", "--arch", "tiny", "--weights", files["good"], "--like", files["good"],
                           "--classes", classes, "--out", out / "i.safetensors")
    one_line_error(code, err, "--classes", "class 1 ('b\\x00x') holds a NUL byte")
    assert list(out.iterdir()) == []


def test_good_files_still_load(files, tmp_path):
    """The checks refuse only what is wrong: the good checkpoint loads and runs, a half-precision copy of it
    (floats of another width) loads too."""
    loaded = load_checkpoint(files["good"])
    assert torch.isfinite(loaded.model(torch.zeros(2, 1, 12, 12))).all()
    half = tmp_path / "half.safetensors"
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in loaded.model.state_dict().items()}
    save_file(state, str(half), metadata=loaded.meta.to_header())
    assert load_checkpoint(half).meta.classes == loaded.meta.classes
    shutil.rmtree(tmp_path, ignore_errors=True)
