"""Image folders on disk (``imagefolder:PATH``): the layout, the listing, the fingerprint, the decoder.

Both ways of reading a folder go through here, so they agree sample by sample: the in-memory
loader (sources.py) decodes every image once; the streaming loader (streaming.py) decodes batch
by batch. The listing is torchvision's ``ImageFolder`` order (classes and files sorted by name).

Layout: ``PATH/train/<class>/...`` and ``PATH/val/`` and/or ``PATH/test/`` with the same class
folders (torchvision's ImageNet layout is ``train/`` + ``val/``). The listing follows a link to a
folder only when it leads out of PATH and to a folder not listed yet; any other folder link (a loop,
a second way into the data) is refused, as is a file that is not a regular file (a FIFO, a device).

The fingerprint says which files a model was trained on without decoding any of them: a hash of
each file's path under the root and size, and of the decoded image size. Per split it is cached in
the user cache folder (``$XDG_CACHE_HOME/modelupdate/imagefolder/``, or ``--cache-dir``; one file
per resolved PATH, never inside PATH) and reused while the split folder and its class folders keep
their modification times; so a command lists only the splits it reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError

#: the split folders an image folder may hold, in listing order: train/ and at least one of val/, test/
SPLIT_NAMES = ("train", "val", "test")
CACHE_VERSION = 3  # 3: kept outside the data folder, val/ listed, folder links checked
#: the --max-image-pixels default (config.py says why this value)
MAX_IMAGE_PIXELS = DataConfig.max_image_pixels
# formats torchvision.io decodes, by their first bytes; any other (BMP, TIFF, PPM) goes through PIL
_TORCHVISION_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8")


def folder_root(name: str) -> Path:
    """``imagefolder:PATH`` -> PATH."""
    return Path(name.split(":", 1)[1])


def split_folders(root: Path) -> tuple[str, ...]:
    """The split folders PATH holds, of ``SPLIT_NAMES``: train/ and val/, test/ or both; else a DataError."""
    if not (root / "train").is_dir():
        raise DataError(f"--data imagefolder:{root}: missing folder {root / 'train'} (expected train/ with test/, "
                        f"val/ or both)")
    present = tuple(sub for sub in SPLIT_NAMES if (root / sub).is_dir())
    if present == ("train",):
        raise DataError(f"--data imagefolder:{root}: missing folder {root / 'test'} (expected train/ with test/, "
                        f"val/ or both)")
    real = {sub: (root / sub).resolve() for sub in present}
    for i, a in enumerate(present):  # a split folder linked to another would put the same images in both
        for b in present[i + 1:]:
            if real[a] == real[b]:
                raise DataError(f"--data imagefolder:{root}: {root / b} and {root / a} are the same folder "
                                f"({real[a]}); expected separate split folders")
            inner, outer = (a, b) if real[a].is_relative_to(real[b]) else (b, a)
            if real[inner].is_relative_to(real[outer]):
                raise DataError(f"--data imagefolder:{root}: {root / inner} is {real[inner]}, inside {root / outer}; "
                                f"expected separate split folders")
    return present


def folder_classes(root: Path, splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    """The class names: the folders under PATH/train, sorted; every other split folder must have the same ones."""
    classes = {sub: find_classes(root, sub) for sub in splits}
    for sub in splits[1:]:
        if classes[sub] != classes["train"]:
            raise DataError(f"--data imagefolder:{root}: train classes {classes['train']} differ from {sub} classes "
                            f"{classes[sub]}")
    return classes["train"]


def check_class_count(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(f"--data imagefolder:{root}: {root / 'train'} has {len(classes)} class folder(s); "
                        f"expected at least 2 (one folder per class)")


def find_classes(root: Path, sub: str) -> list[str]:
    """The folders under PATH/sub, sorted (torchvision's ``find_classes``: links to folders count)."""
    split_dir = root / sub
    try:
        with os.scandir(split_dir) as entries:
            names = sorted(entry.name for entry in entries if entry.is_dir())
    except OSError as exc:
        raise DataError(f"--data imagefolder:{root}: cannot read {split_dir} ({exc.strerror}); "
                        f"expected {split_dir}/<class>/<image files>") from None
    if not names:
        raise DataError(f"--data imagefolder:{root}: Couldn't find any class folder in {split_dir}; "
                        f"expected {split_dir}/<class>/<image files>")
    return names


def list_split(root: Path, sub: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """The samples of PATH/sub in ImageFolder's order: paths relative to PATH (with /) and class indices.

    As torchvision's ``make_dataset`` (files with an image extension, folders sorted by path, files by
    name, any depth), except that a folder link is followed only out of PATH and only to a folder not
    listed yet, and a listed file must be a regular file (behind a link or not): a DataError otherwise."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    split_dir = root / sub
    inside = root.resolve()
    seen = {split_dir.resolve(): str(split_dir)}  # real folder -> the path it was listed by
    names: list[str] = []
    targets: list[int] = []
    empty = []
    for index, cls in enumerate(classes):
        found = 0
        for folder, files in sorted(_walk(root, split_dir, cls, inside, seen)):  # ImageFolder sorts by path
            for name, regular in sorted(files):
                if name.lower().endswith(IMG_EXTENSIONS):
                    path = os.path.join(folder, name)
                    if not regular:
                        check_regular(root, path)
                    names.append(Path(path).relative_to(root).as_posix())
                    targets.append(index)
                    found += 1
        if not found:
            empty.append(cls)
    if empty:
        raise DataError(f"--data imagefolder:{root}: Found no valid file for the classes {', '.join(empty)}. "
                        f"Supported extensions are: {', '.join(IMG_EXTENSIONS)}; expected {split_dir}/<class>/"
                        f"<image files>")
    return names, targets


def _walk(root: Path, split_dir: Path, cls: str, inside: Path, seen: dict[Path, str]
          ) -> Iterator[tuple[str, list[tuple[str, bool]]]]:
    """(folder, [(name, is a regular file)] of the entries that are not folders) for the class folder and
    every folder under it."""
    top = os.path.join(split_dir, cls)
    link = os.path.islink(top)
    stack = [(top, _entered(root, top, split_dir.resolve() / cls, link, False, inside, seen), link)]
    while stack:
        folder, real, via_link = stack.pop()
        files, folders = [], []
        try:
            with os.scandir(folder) as entries:
                for entry in sorted(entries, key=lambda e: e.name):  # by name: the same folder named on every run
                    if entry.is_dir():  # through a link too
                        link = entry.is_symlink()
                        child = _entered(root, entry.path, real / entry.name, link, via_link, inside, seen)
                        folders.append((entry.path, child, via_link or link))
                    else:  # the entry's type from the listing: no stat for a plain file
                        files.append((entry.name, entry.is_file()))
        except OSError as exc:
            raise DataError(f"--data imagefolder:{root}: cannot read {folder} ({exc.strerror})") from None
        stack += reversed(folders)
        yield folder, files


def _entered(root: Path, path: str, plain: Path, link: bool, via_link: bool, inside: Path,
             seen: dict[Path, str]) -> Path:
    """The real path of a folder the listing enters (``plain``: its path when no link is on the way), after
    checking that no link leads back into PATH and that no folder is listed twice (a loop)."""
    real = Path(os.path.realpath(path)) if link else plain
    if (link or via_link) and real.is_relative_to(inside):
        raise DataError(f"--data imagefolder:{root}: {path} is a link to {real}, inside the data folder (a loop or "
                        f"a second way to the same images); expected links only to folders outside {root}")
    if real in seen:
        raise DataError(f"--data imagefolder:{root}: {path} leads to {real}, already listed as {seen[real]} (a loop "
                        f"or a second link to it); expected each folder once")
    seen[real] = path
    return real


def check_regular(root: Path | None, path: str | os.PathLike) -> None:
    """A DataError naming ``path`` unless it is (a link to) a regular file: a FIFO would block a reader,
    a device (/dev/zero) would never end."""
    where = f"--data imagefolder:{root}: " if root is not None else ""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DataError(f"{where}cannot read {path} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{where}{path} is {_kind(mode)}, not a regular file; expected an image file")


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((text for test, text in kinds if test(mode)), "not a file")


# --------------------------------------------------------------------------- decoding


def read_square(path: str | Path, size: int, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """One image file -> uint8 [3, size, size]: RGB, the centred square of its shorter side, resized
    (bilinear, antialiased). JPEG, PNG and GIF are decoded by ``torchvision.io.decode_image``, other
    formats by PIL. A DataError names the file when it cannot be read or decoded, is not a regular file,
    or its header declares more than ``max_pixels`` pixels (checked before anything is decoded)."""
    try:
        data = read_regular(path)
        image = _decode_rgb(data, max_pixels)
    except ImageTooLarge as exc:
        frames = f"{exc.frames} frames of " if exc.frames > 1 else ""
        raise DataError(f"image {path} declares {frames}{exc.width} x {exc.height} pixels, more than "
                        f"--max-image-pixels {max_pixels}; expected a smaller image (or a larger --max-image-pixels)"
                        ) from None
    except (OSError, RuntimeError, ValueError, SyntaxError) as exc:  # missing, no access, corrupt, truncated
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
        reason = text.splitlines()[-1] if text else type(exc).__name__
        raise DataError(f"cannot read image {path} ({reason}); expected a readable image file") from None
    return square(image, size)


def read_regular(path: str | Path) -> bytes:
    """The bytes of ``path``; a DataError if it is not a regular file. Opened without blocking, so a FIFO
    is refused rather than waited on, and checked on the open file, so a swap after a check cannot slip by."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path} is {_kind(mode)}, not a regular file; expected an image file")
        return f.read()


class ImageTooLarge(Exception):
    """An image header declares more pixels than allowed (over all its frames)."""

    def __init__(self, width: int, height: int, frames: int = 1):
        super().__init__(f"{frames} x {width} x {height}")
        self.width, self.height, self.frames = width, height, frames


def _decode_rgb(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Encoded bytes -> uint8 [3, H, W]; ImageTooLarge before decoding when the header declares more than
    ``max_pixels``."""
    if data.startswith(_TORCHVISION_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        from torchvision.io import ImageReadMode, decode_image

        if data.startswith(b"\x89PNG"):
            check_png_chunks(data)  # libpng would print its own complaint on stderr before failing
        frames = gif_frames(data) if data.startswith(b"GIF8") else 1  # torchvision decodes every frame
        _check_pixels(*declared_size(data), max_pixels, frames)
        with warnings.catch_warnings():  # torchvision 0.29 announces torchcodec as its successor
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
                return image[0] if image.ndim == 4 else image  # an animated GIF: its first frame
            except RuntimeError as exc:  # "decode_jpeg, /path/decode_jpeg.cpp:171, Image is incomplete ...": the reason
                raise ValueError(re.sub(r"^.*\.cpp:\d+, ", "", str(exc).strip()) or "cannot decode") from None
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours is checked on the header instead
        try:
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                _check_pixels(*img.size, max_pixels)
                rgb = np.array(img.convert("RGB"))
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _check_pixels(width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    if width * height * frames > max_pixels:
        raise ImageTooLarge(width, height, frames)


def gif_frames(data: bytes) -> int:
    """How many images a GIF file holds, counted from its block structure without decoding any."""
    def skip_sub_blocks(pos: int) -> int:
        while data[pos]:
            pos += data[pos] + 1
        return pos + 1

    def skip_colour_table(pos: int, flags: int) -> int:
        return pos + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)

    frames = 0
    try:
        pos = skip_colour_table(13, data[10])
        while data[pos] != 0x3B:  # the trailer
            if data[pos] == 0x21:  # an extension: label, then sub-blocks
                pos = skip_sub_blocks(pos + 2)
            elif data[pos] == 0x2C:  # an image: descriptor, local colour table, LZW code size, sub-blocks
                frames += 1
                pos = skip_sub_blocks(skip_colour_table(pos + 10, data[pos + 9]) + 1)
            else:
                break
    except IndexError:  # cut short: the decoder says so
        pass
    return max(frames, 1)


def native_side(root: Path, names: list[str], sample: int = 16) -> int | None:
    """The median shorter side of up to ``sample`` images spread over ``names`` (paths under ``root``), read
    from their headers (BMP and other formats through PIL without decoding); None when none can be read."""
    sides = []
    for name in names[:: max(1, len(names) // sample)][:sample]:
        try:
            data = read_regular(root / name)
            try:
                sides.append(min(declared_size(data)))
            except ValueError:
                from PIL import Image

                with Image.open(io.BytesIO(data)) as image:
                    sides.append(min(image.size))
        except Exception:  # noqa: BLE001 (a bad image is reported, with its name, when it is decoded)
            continue
    return sorted(sides)[len(sides) // 2] if sides else None


def declared_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header of a PNG, JPEG, GIF or WebP file, read without decoding; a ValueError
    when the header is cut short or malformed."""
    try:
        if data.startswith(b"\x89PNG"):
            if data[12:16] != b"IHDR":
                raise ValueError("PNG file without IHDR chunk")
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"GIF8"):  # the logical screen every frame is drawn on
            return struct.unpack("<HH", data[6:10])
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        return _webp_size(data)
    except struct.error:
        raise ValueError("image header cut short") from None


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they hold the image size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("corrupt JPEG header")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        elif marker in (0xDA, 0xD9):  # scan data or end of image before any frame header
            break
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        else:
            pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    raise ValueError("JPEG file without a frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    kind = data[12:16]
    if kind == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if kind == b"VP8L":
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise ValueError(f"unknown WebP chunk {kind!r}")


def check_png_chunks(data: bytes) -> None:
    """A ValueError unless ``data`` is a PNG signature and a chain of chunks with matching CRCs ending in IEND."""
    pos = 8
    if data[:pos] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file: bad signature")
    while True:
        if pos + 12 > len(data):
            raise ValueError("truncated PNG file")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError("truncated PNG file")
        if zlib.crc32(data[pos + 4:end]) != struct.unpack(">I", data[end:end + 4])[0]:
            raise ValueError(f"corrupt PNG chunk {kind.decode('latin-1')!r} (CRC mismatch)")
        if kind == b"IEND":
            return
        pos = end + 4


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, size, size]: centre crop to min(H, W), then an antialiased bilinear resize."""
    from torchvision.transforms.v2 import functional as F

    side = min(image.shape[-2:])
    return F.resize(F.center_crop(image, [side, side]), [size, size], antialias=True)


# --------------------------------------------------------------------------- fingerprint


@dataclass(frozen=True)
class FolderSummary:
    """What the fingerprint cache holds per split: the sample count and a digest of the listing."""

    count: int
    digest: str


def folder_fingerprint(root: Path, classes: list[str], size: int, user_cache: Path,
                       splits: tuple[str, ...] = ("train", "test")) -> tuple[str, dict[str, int]]:
    """``sha256:`` and 16 hex digits over the listings (path, size) of the split folders and ``size``, and
    the sample count of each split folder. ``user_cache``: the folder the listing cache is kept in."""
    summaries = {sub: split_summary(root, sub, classes, user_cache) for sub in splits}
    h = hashlib.sha256(f"imagefolder:{size}".encode())
    for sub in splits:  # train/ + test/ alone hash as before val/ folders were read
        h.update(f"{sub}:{summaries[sub].count}:{summaries[sub].digest}".encode())
    return "sha256:" + h.hexdigest()[:16], {sub: s.count for sub, s in summaries.items()}


def split_summary(root: Path, sub: str, classes: list[str], user_cache: Path) -> FolderSummary:
    """The split's summary from the cache while its folders are unchanged, else from listing it (then cached)."""
    key = folder_times(root / sub, classes)
    cache = cache_path(root, user_cache)
    cached = read_cache(cache).get(sub)
    if isinstance(cached, dict) and cached.get("folders") == key and isinstance(cached.get("count"), int):
        return FolderSummary(cached["count"], str(cached.get("digest")))
    names, _ = list_split(root, sub, classes)
    summary = FolderSummary(len(names), listing_digest(root, names))
    write_cache(cache, sub, {"folders": key, "count": summary.count, "digest": summary.digest})
    return summary


def folder_times(split_dir: Path, classes: list[str]) -> dict[str, int]:
    """Modification times (ns) of the split folder and of each class folder: a file added, removed or
    renamed in one of them changes its time."""
    try:
        return {".": split_dir.stat().st_mtime_ns} | {c: (split_dir / c).stat().st_mtime_ns for c in classes}
    except OSError as exc:
        raise DataError(f"--data imagefolder:{split_dir.parent}: cannot read {exc.filename} ({exc.strerror})") from None


def listing_digest(root: Path, names: list[str]) -> str:
    """sha256 over each file's path under ``root`` and size in bytes, in order. Not the modification times:
    a copy of the data on another machine (or after an unpacked archive) is the same data."""
    h = hashlib.sha256()
    for name in names:
        try:
            st = os.stat(root / name)
        except OSError as exc:
            raise DataError(f"--data imagefolder:{root}: cannot read {root / name} ({exc.strerror})") from None
        h.update(f"{name}\0{st.st_size}\n".encode())
    return h.hexdigest()


def cache_path(root: Path, user_cache: Path) -> Path:
    """The listing cache of PATH: a file per resolved PATH in ``user_cache``, so nothing is written into the data."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return user_cache / "imagefolder" / f"{key}.json"


def read_cache(path: Path) -> dict:
    """The summaries by split in one cache file ({} when it is missing, unreadable or of another version)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    ok = isinstance(value, dict) and value.get("version") == CACHE_VERSION and isinstance(value.get("splits"), dict)
    return value["splits"] if ok else {}


def write_cache(path: Path, sub: str, entry: dict) -> None:
    """Store one split's summary. The cache only saves time: when it cannot be written, nothing is cached."""
    from ..atomic import atomic_write_bytes
    from ..errors import OutputError

    splits = read_cache(path) | {sub: entry}
    data = json.dumps({"version": CACHE_VERSION, "splits": splits}, sort_keys=True, indent=1).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except (OSError, OutputError):
        pass


#: training images the statistics of an image folder are measured on (a seeded sample; all when fewer)
STATS_SAMPLE = 2000


def folder_stats(root: Path, classes: list[str], size: int, user_cache: Path,
                 decoded: torch.Tensor | None = None, max_pixels: int = MAX_IMAGE_PIXELS
                 ) -> tuple[tuple[float, ...], ...]:
    """Per-channel (mean, std) of pixels / 255 over a seeded sample of the training images at ``size`` px,
    rounded to 4 decimals; measured once per listing and size, and cached with the listing. ``decoded``:
    the training images already in memory (uint8 [N, 3, size, size], in listing order), read instead of
    the files."""
    key = folder_times(root / "train", classes)
    cache = cache_path(root, user_cache)
    entry = read_cache(cache).get("train")
    if isinstance(entry, dict) and entry.get("folders") == key:
        stats = (entry.get("stats") or {}).get(str(size))
        if isinstance(stats, dict) and len(stats.get("mean", [])) == 3 and len(stats.get("std", [])) == 3:
            return tuple(stats["mean"]), tuple(stats["std"])
    names, _ = list_split(root, "train", classes)
    if decoded is not None:
        mean, std = measure_stats(len(names), lambda i: decoded[i])
    else:
        mean, std = measure_stats(len(names), lambda i: _read_for_stats(root, names[i], size, max_pixels))
    entry = read_cache(cache).get("train")
    if isinstance(entry, dict) and entry.get("folders") == key:
        entry.setdefault("stats", {})[str(size)] = {"mean": list(mean), "std": list(std)}
        write_cache(cache, "train", entry)
    return mean, std


def stats_sample(count: int, sample: int = STATS_SAMPLE) -> list[int]:
    """Which training images (by listing position) the statistics are measured on: seeded, sorted."""
    if count <= sample:
        return list(range(count))
    return sorted(np.random.default_rng(0).choice(count, size=sample, replace=False).tolist())


def _read_for_stats(root: Path, name: str, size: int, max_pixels: int) -> torch.Tensor:
    try:
        return read_square(root / name, size, max_pixels)
    except DataError as exc:
        raise DataError(f"--data imagefolder:{root}: {exc}") from None


def measure_stats(count: int, image: Callable[[int], torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel over ``stats_sample(count)``, ``image(i)`` giving uint8 [3, H, W]."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for i in stats_sample(count):
        x = image(i).to(torch.float64).div_(255).flatten(1)
        total += x.sum(1)
        squares += (x * x).sum(1)
        pixels += x.shape[1]
    mean = total / pixels
    std = (squares / pixels - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)  # a flat channel: no division by 0
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
