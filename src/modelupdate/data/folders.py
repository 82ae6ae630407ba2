"""Image folders on disk (``imagefolder:PATH``): the listing, the fingerprint, the decoder.

Both ways of reading a folder go through here, so they agree sample by sample: the in-memory
loader (sources.py) decodes every image once; the streaming loader (streaming.py) decodes batch
by batch. The listing is torchvision's ``ImageFolder`` order (classes and files sorted by name).

The fingerprint says which files a model was trained on without decoding any of them: a hash of
each file's path under the root, size and modification time, and of the decoded image size. Per
split it is cached in ``.modelupdate-fingerprint.json`` beside the data (in the user cache folder
when the data folder is read-only) and reused while the split folder and its class folders keep
their modification times; so a command lists only the splits it reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

SPLIT_FOLDERS = ("train", "test")
CACHE_NAME = ".modelupdate-fingerprint.json"
CACHE_VERSION = 2  # 2: the digest no longer holds modification times
# formats torchvision.io decodes, by their first bytes; any other (BMP, TIFF, PPM) goes through PIL
_TORCHVISION_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8")


def folder_root(name: str) -> Path:
    """``imagefolder:PATH`` -> PATH."""
    return Path(name.split(":", 1)[1])


def check_layout(root: Path) -> None:
    """Both split folders exist (PATH/train and PATH/test), else a DataError naming the missing one."""
    for sub in SPLIT_FOLDERS:
        if not (root / sub).is_dir():
            raise DataError(f"--data imagefolder:{root}: missing folder {root / sub} (expected train/ and test/)")


def folder_classes(root: Path) -> list[str]:
    """The class names: the folders under PATH/train, sorted; PATH/test must have the same ones."""
    from torchvision.datasets.folder import find_classes

    classes = {sub: _listed(root, sub, lambda d: find_classes(d)[0]) for sub in SPLIT_FOLDERS}
    if classes["train"] != classes["test"]:
        raise DataError(f"--data imagefolder:{root}: train classes {classes['train']} differ from test classes "
                        f"{classes['test']}")
    return classes["train"]


def check_class_count(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(f"--data imagefolder:{root}: {root / 'train'} has {len(classes)} class folder(s); "
                        f"expected at least 2 (one folder per class)")


def list_split(root: Path, sub: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """The samples of PATH/sub in ImageFolder's order: paths relative to PATH (with /) and class indices."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    class_to_idx = {name: i for i, name in enumerate(classes)}
    samples = _listed(root, sub, lambda d: make_dataset(d, class_to_idx, extensions=IMG_EXTENSIONS))
    names = [Path(path).relative_to(root).as_posix() for path, _ in samples]
    return names, [target for _, target in samples]


def _listed(root: Path, sub: str, lister):
    """``lister(PATH/sub)``, torchvision's complaints (no class folder, no image in one) as one DataError line."""
    try:
        return lister(str(root / sub))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"--data imagefolder:{root}: {str(exc).rstrip('.')}; "
                        f"expected {root / sub}/<class>/<image files>") from None


# --------------------------------------------------------------------------- decoding


def read_square(path: str | Path, size: int) -> torch.Tensor:
    """One image file -> uint8 [3, size, size]: RGB, the centred square of its shorter side, resized
    (bilinear, antialiased). JPEG, PNG and GIF are decoded by ``torchvision.io.decode_image``, other
    formats by PIL. A DataError names the file when it cannot be read or decoded."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        image = _decode_rgb(data)
    except (OSError, RuntimeError, ValueError, SyntaxError) as exc:  # missing, no access, corrupt, truncated
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
        reason = text.splitlines()[-1] if text else type(exc).__name__
        raise DataError(f"cannot read image {path} ({reason}); expected a readable image file") from None
    return square(image, size)


def _decode_rgb(data: bytes) -> torch.Tensor:
    """Encoded bytes -> uint8 [3, H, W]."""
    if data.startswith(_TORCHVISION_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        from torchvision.io import ImageReadMode, decode_image

        if data.startswith(b"\x89PNG"):
            check_png_chunks(data)  # libpng would print its own complaint on stderr before failing
        with warnings.catch_warnings():  # torchvision 0.29 announces torchcodec as its successor
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            except RuntimeError as exc:  # "decode_jpeg, /path/decode_jpeg.cpp:171, Image is incomplete ...": the reason
                raise ValueError(re.sub(r"^.*\.cpp:\d+, ", "", str(exc).strip()) or "cannot decode") from None
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = np.array(img.convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


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


def folder_fingerprint(root: Path, classes: list[str], size: int, user_cache: Path) -> tuple[str, dict[str, int]]:
    """``sha256:`` and 16 hex digits over the train and test listings (path, size) and ``size``,
    and the sample count of each split folder. ``user_cache``: the folder for caches of read-only data."""
    summaries = {sub: split_summary(root, sub, classes, user_cache) for sub in SPLIT_FOLDERS}
    h = hashlib.sha256(f"imagefolder:{size}".encode())
    for sub in SPLIT_FOLDERS:
        h.update(f"{sub}:{summaries[sub].count}:{summaries[sub].digest}".encode())
    return "sha256:" + h.hexdigest()[:16], {sub: s.count for sub, s in summaries.items()}


def split_summary(root: Path, sub: str, classes: list[str], user_cache: Path) -> FolderSummary:
    """The split's summary from the cache while its folders are unchanged, else from listing it (then cached)."""
    key = folder_times(root / sub, classes)
    for cache in cache_paths(root, user_cache):
        cached = read_cache(cache).get(sub)
        if isinstance(cached, dict) and cached.get("folders") == key and isinstance(cached.get("count"), int):
            return FolderSummary(cached["count"], str(cached.get("digest")))
    names, _ = list_split(root, sub, classes)
    summary = FolderSummary(len(names), listing_digest(root, names))
    write_cache(root, user_cache, sub, {"folders": key, "count": summary.count, "digest": summary.digest})
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


def cache_paths(root: Path, user_cache: Path) -> list[Path]:
    """Where the fingerprint cache may be: beside the data, then in ``user_cache`` (a file per PATH)."""
    key = hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:16]
    return [root / CACHE_NAME, user_cache / "imagefolder" / f"{key}.json"]


def read_cache(path: Path) -> dict:
    """The summaries by split in one cache file ({} when it is missing, unreadable or of another version)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    ok = isinstance(value, dict) and value.get("version") == CACHE_VERSION and isinstance(value.get("splits"), dict)
    return value["splits"] if ok else {}


def write_cache(root: Path, user_cache: Path, sub: str, entry: dict) -> None:
    """Store one split's summary, beside the data if that folder is writable, else in the user cache.
    The cache only saves time: when neither place can be written, nothing is cached."""
    from ..atomic import atomic_write_bytes
    from ..errors import OutputError

    for path in cache_paths(root, user_cache):
        splits = read_cache(path) | {sub: entry}
        data = json.dumps({"version": CACHE_VERSION, "splits": splits}, sort_keys=True, indent=1).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
            return
        except (OSError, OutputError):
            continue


#: training images the statistics of an image folder are measured on (a seeded sample; all when fewer)
STATS_SAMPLE = 2000


def folder_stats(root: Path, classes: list[str], size: int, user_cache: Path,
                 decoded: torch.Tensor | None = None) -> tuple[tuple[float, ...], ...]:
    """Per-channel (mean, std) of pixels / 255 over a seeded sample of the training images at ``size`` px,
    rounded to 4 decimals; measured once per listing and size, and cached with the listing. ``decoded``:
    the training images already in memory (uint8 [N, 3, size, size], in listing order), read instead of
    the files."""
    key = folder_times(root / "train", classes)
    for cache in cache_paths(root, user_cache):
        entry = read_cache(cache).get("train")
        if isinstance(entry, dict) and entry.get("folders") == key:
            stats = (entry.get("stats") or {}).get(str(size))
            if isinstance(stats, dict) and len(stats.get("mean", [])) == 3 and len(stats.get("std", [])) == 3:
                return tuple(stats["mean"]), tuple(stats["std"])
    names, _ = list_split(root, "train", classes)
    if decoded is not None:
        mean, std = measure_stats(len(names), lambda i: decoded[i])
    else:
        mean, std = measure_stats(len(names), lambda i: _read_for_stats(root, names[i], size))
    for cache in cache_paths(root, user_cache):
        entry = read_cache(cache).get("train")
        if isinstance(entry, dict) and entry.get("folders") == key:
            entry.setdefault("stats", {})[str(size)] = {"mean": list(mean), "std": list(std)}
            write_cache(root, user_cache, "train", entry)
            break
    return mean, std


def stats_sample(count: int, sample: int = STATS_SAMPLE) -> list[int]:
    """Which training images (by listing position) the statistics are measured on: seeded, sorted."""
    if count <= sample:
        return list(range(count))
    return sorted(np.random.default_rng(0).choice(count, size=sample, replace=False).tolist())


def _read_for_stats(root: Path, name: str, size: int) -> torch.Tensor:
    try:
        return read_square(root / name, size)
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
