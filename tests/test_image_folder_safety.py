"""An image folder cannot make a run read the wrong files, hang, or exhaust memory.

Links: a folder link that leads back into the data (a loop such as ``train/cat/loop -> ..``) is refused,
never followed; a link out of the data is followed once. A file that is not a regular file (a link to
/dev/zero named ``x.png``, a FIFO named ``pipe.png``) is refused by name, never read. Image headers are
checked against ``--max-image-pixels`` before anything is decoded: small files declaring 40,000 x 40,000
(PNG), 100,000 x 100,000 (PNG) or 20,000 x 20,000 (BMP) pixels are one line and exit 2, and the CLI's
peak memory stays within 100 MB of a clean run's (decoding them would take 4.8 to 30 GB).
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from modelupdate.config import DataConfig
from modelupdate.data import load_dataset
from modelupdate.errors import ConfigError, DataError

FAST = ("--image-size", "8", "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--quiet", "--batch-size", "8")
COLOURS = {"cat": (200, 40, 40), "dog": (40, 40, 200)}


def image_folder(root: Path, per_class: int = 3, splits=("train", "test")) -> Path:
    for split in splits:
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (10 + i, 9), colour).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Listing caches in this test's folder, not the user's (subprocesses inherit it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def one_line_error(code: int, err: str, *parts: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def train(run_cli, root: Path, out: Path, *extra: str, timeout: float = 120):
    return run_cli("train", "--data", f"imagefolder:{root}", *FAST, "--out", out, *extra, timeout=timeout)


# --------------------------------------------------------------------------- links and special files


def test_a_folder_link_back_into_the_data_is_refused_not_followed(tmp_path, run_cli):
    root = image_folder(tmp_path / "d")
    loop = root / "train" / "cat" / "loop"
    loop.symlink_to("..")  # train/cat/loop -> train: the dog images again, labelled cat, and a loop
    with pytest.raises(DataError, match=r"loop is a link to .*inside the data folder"):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8))
    code, _, err = train(run_cli, root, tmp_path / "m.safetensors")
    one_line_error(code, err, str(loop), "inside the data folder")
    assert not (tmp_path / "m.safetensors").exists()


def test_a_link_to_a_folder_outside_is_followed_once_and_a_loop_out_there_is_refused(tmp_path):
    root = image_folder(tmp_path / "d")
    extra = tmp_path / "elsewhere" / "more"
    extra.mkdir(parents=True)
    Image.new("RGB", (9, 9), COLOURS["cat"]).save(extra / "x.png")
    (root / "train" / "cat" / "more").symlink_to(extra)
    data = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, val_fraction=0.0))
    assert "train/cat/more/x.png" in data.train.sample_ids() and len(data.train) == 7
    (extra / "up").symlink_to(extra.parent)  # a loop outside the data folder
    with pytest.raises(DataError, match=r"more/up/more leads to .*elsewhere/more, already listed as .*cat/more "):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, val_fraction=0.0))


def test_a_second_link_to_the_same_outside_folder_is_refused(tmp_path):
    root = image_folder(tmp_path / "d")
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    Image.new("RGB", (9, 9), COLOURS["cat"]).save(extra / "x.png")
    (root / "train" / "cat" / "a").symlink_to(extra)
    (root / "train" / "cat" / "b").symlink_to(extra)
    with pytest.raises(DataError, match=r"cat/b leads to .*already listed as .*cat/a"):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8))


def test_a_link_to_a_device_named_png_is_refused_by_name(tmp_path, run_cli):
    root = image_folder(tmp_path / "d")
    device = root / "train" / "cat" / "x.png"
    device.symlink_to("/dev/zero")  # read, it would never end
    code, _, err = train(run_cli, root, tmp_path / "m.safetensors", timeout=60)
    one_line_error(code, err, str(device), "is a character device, not a regular file")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_png_is_refused_by_name_without_hanging(tmp_path, run_cli):
    root = image_folder(tmp_path / "d")
    pipe = root / "test" / "dog" / "pipe.png"
    os.mkfifo(pipe)  # opened for reading, it would wait for a writer forever
    code, _, err = train(run_cli, root, tmp_path / "m.safetensors", timeout=60)
    one_line_error(code, err, str(pipe), "is a FIFO, not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_the_decoder_refuses_a_fifo_it_is_handed_without_blocking(tmp_path):
    from modelupdate.data.folders import read_square

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    with pytest.raises(DataError, match="pipe.png is a FIFO, not a regular file"):
        read_square(pipe, 8)  # a blocking open would wait here for a writer


# --------------------------------------------------------------------------- declared image sizes


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and chunk chain whose IHDR declares width x height RGB, with a tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + \
        chunk(b"IEND", b"")


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header (BITMAPINFOHEADER, 24 bit) declaring width x height, with a few bytes of pixels."""
    pixels = b"\0" * 64
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info)) + info + pixels


def png_40000_padded() -> bytes:
    """The 1.5 MB PNG declaring 40,000 x 40,000: the header chain stays valid, an ancillary chunk pads it."""
    data = png_declaring(40_000, 40_000)
    pad = b"tEXt" + b"pad\0" + b"x" * 1_500_000
    chunk = struct.pack(">I", len(pad) - 4) + pad + struct.pack(">I", zlib.crc32(pad))
    return data[:33] + chunk + data[33:]  # after the IHDR chunk (8 + 25 bytes)


HUGE = {  # file name, bytes, declared width x height
    "png-40000": ("big.png", png_40000_padded, "40000 x 40000"),
    "png-100000": ("bigger.png", lambda: png_declaring(100_000, 100_000), "100000 x 100000"),
    "bmp-20000": ("big.bmp", lambda: bmp_declaring(20_000, 20_000), "20000 x 20000"),
}


def peak_rss_mb(args: list[str], timeout: float = 120, env: dict | None = None) -> tuple[int, str, float]:
    """Run ``python -m modelupdate ARGS`` alone in a child; its exit code, stderr and peak RSS in MB."""
    script = ("import resource, subprocess, sys\n"
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "sys.stderr.write(p.stderr)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
              "sys.exit(p.returncode)\n")
    env = dict(os.environ, COLUMNS="200") | (env or {})
    env.pop("MODELUPDATE_DEBUG", None)
    # a wrapper process per run: RUSAGE_CHILDREN of this test process would hold the largest child so far
    proc = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "modelupdate", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stderr, int(proc.stdout.strip().splitlines()[-1]) / 1024


@pytest.fixture(scope="module")
def baseline_mb(tmp_path_factory) -> float:
    """Peak RSS of the same command on a clean folder: importing torch alone peaks near 500 MB here, so the
    bound is on what a refused file adds to that (decoding 40,000 x 40,000 RGB would add 4.8 GB)."""
    work = tmp_path_factory.mktemp("baseline")
    root = image_folder(work / "d")
    args = ["train", "--data", f"imagefolder:{root}", *FAST, "--out", str(work / "m.safetensors")]
    code, err, peak = peak_rss_mb(args, env={"XDG_CACHE_HOME": str(work / "xdg")})
    assert code == 0, err
    return peak


@pytest.mark.parametrize("case", sorted(HUGE))
def test_a_small_file_declaring_a_huge_image_is_refused_before_decoding(tmp_path, case, baseline_mb):
    root = image_folder(tmp_path / "d")
    name, make, declared = HUGE[case]
    bad = root / "train" / "dog" / name
    bad.write_bytes(make())
    assert bad.stat().st_size < 2_000_000
    code, err, peak = peak_rss_mb(["train", "--data", f"imagefolder:{root}", *FAST,
                                   "--out", str(tmp_path / "m.safetensors")])
    print(f"{case}: {bad.stat().st_size:,} bytes, exit {code}, peak RSS {peak:.0f} MB "
          f"(a clean run of the same command: {baseline_mb:.0f} MB)")
    one_line_error(code, err, str(bad), f"declares {declared} pixels", "--max-image-pixels 89478485")
    assert peak < baseline_mb + 100, f"peak RSS {peak:.0f} MB, {baseline_mb:.0f} MB without the file"
    assert not (tmp_path / "m.safetensors").exists()


def test_max_image_pixels_is_the_limit_and_is_checked(tmp_path, run_cli):
    root = image_folder(tmp_path / "d")  # images up to 12 x 9 = 108 pixels
    with pytest.raises(DataError, match=r"0\.png declares 10 x 9 pixels, more than --max-image-pixels 89"):
        load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, max_image_pixels=89))
    assert len(load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=8, max_image_pixels=108)).test) == 6
    with pytest.raises(ConfigError, match="--max-image-pixels: expected a number of pixels >= 1, got 0"):
        DataConfig(max_image_pixels=0)
    code, _, err = train(run_cli, root, tmp_path / "m.safetensors", "--max-image-pixels", "0")
    one_line_error(code, err, "--max-image-pixels", ">= 1")


def test_an_animated_gif_counts_every_frame_and_gives_its_first(tmp_path):
    from modelupdate.data.folders import read_square

    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (30, 20), (40 * i, 0, 0)) for i in range(7)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=r"anim\.gif declares 7 frames of 30 x 20 pixels, more than "
                                        r"--max-image-pixels 4199"):
        read_square(path, 8, 7 * 600 - 1)  # torchvision would decode all 7 frames
    assert read_square(path, 8, 7 * 600).shape == (3, 8, 8)  # the first frame, not a stack of 7


def test_the_header_is_read_for_every_decoded_format(tmp_path):
    from modelupdate.data.folders import declared_size

    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp")):
        path = tmp_path / f"x.{suffix}"
        Image.new("RGB", (37, 21), (1, 2, 3)).save(path, format=fmt)
        assert declared_size(path.read_bytes()) == (37, 21), fmt
    lossless = tmp_path / "l.webp"
    Image.new("RGB", (37, 21), (1, 2, 3)).save(lossless, format="WEBP", lossless=True)
    assert declared_size(lossless.read_bytes()) == (37, 21)
    progressive = tmp_path / "p.jpg"
    Image.new("RGB", (37, 21), (1, 2, 3)).save(progressive, format="JPEG", progressive=True)
    assert declared_size(progressive.read_bytes()) == (37, 21)


def test_rusage_is_available():  # the memory test's measure
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
