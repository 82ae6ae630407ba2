"""atomic.py: whole-file writes by rename, all-or-none groups of files, safe appends, the output lock, sha256."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from modelupdate.atomic import (
    OutputFiles,
    append_all_or_none,
    atomic_write_bytes,
    atomic_write_many,
    check_output,
    output_lock,
    sha256_file,
)
from modelupdate.errors import ConfigError, OutputError


def test_atomic_write_creates_then_replaces_the_file_by_rename(tmp_path):
    out = tmp_path / "out.bin"
    atomic_write_bytes(out, b"first version")
    assert out.read_bytes() == b"first version"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]  # no temp file left beside it
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # as open() would make it, not mkstemp's 0600

    # a hard link to the old file keeps the old bytes: the new file was renamed over the name, not
    # written into the old file in place (a reader holding the old file never sees half of the new one)
    os.link(out, tmp_path / "old-link")
    atomic_write_bytes(str(out), b"second")
    assert out.read_bytes() == b"second"
    assert (tmp_path / "old-link").read_bytes() == b"first version"
    assert sorted(os.listdir(tmp_path)) == ["old-link", "out.bin"]


def test_atomic_write_refuses_links_folders_and_missing_folders(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    link = tmp_path / "link.bin"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match=r"link\.bin: is a symbolic link; expected a regular file path"):
        atomic_write_bytes(link, b"overwrite")
    assert victim.read_bytes() == b"keep" and link.is_symlink()
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match=r"folder: is a folder; expected a regular file path"):
        atomic_write_bytes(tmp_path / "folder", b"x")
    with pytest.raises(OutputError, match=r"cannot write \(folder .*missing does not exist\)"):
        atomic_write_bytes(tmp_path / "missing" / "out.bin", b"x")
    assert sorted(os.listdir(tmp_path)) == ["folder", "link.bin", "victim.txt"]


def test_atomic_write_many_writes_all_or_none(tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_bytes(b"old report")
    (tmp_path / "taken").mkdir()
    files = {kept: b"new report", tmp_path / "new.md": b"# new", tmp_path / "taken": b"cannot go here"}
    with pytest.raises(OutputError, match="taken: is a folder"):
        atomic_write_many(files)
    # the first two temp files were written before the third target was refused: all are gone again
    assert kept.read_bytes() == b"old report" and not (tmp_path / "new.md").exists()
    assert sorted(os.listdir(tmp_path)) == ["kept.json", "taken"]

    def refuse() -> None:
        raise OutputError("the last write failed")

    with pytest.raises(OutputError, match="the last write failed"):
        atomic_write_many({kept: b"new report", tmp_path / "new.md": b"# new"}, before_rename=refuse)
    assert kept.read_bytes() == b"old report" and sorted(os.listdir(tmp_path)) == ["kept.json", "taken"]

    calls = []
    atomic_write_many({kept: b"new report", tmp_path / "new.md": b"# new"}, before_rename=lambda: calls.append(1))
    assert calls == [1] and kept.read_bytes() == b"new report" and (tmp_path / "new.md").read_bytes() == b"# new"
    assert sorted(os.listdir(tmp_path)) == ["kept.json", "new.md", "taken"]


def test_append_all_or_none(tmp_path):
    log = tmp_path / "summary.md"
    append_all_or_none(log, b"one\n", "summary")  # created when missing
    append_all_or_none(log, b"two\n", "summary")
    assert log.read_bytes() == b"one\ntwo\n"
    link = tmp_path / "link.md"
    link.symlink_to(log)
    with pytest.raises(OutputError, match=r"^my summary: is a symbolic link; expected a regular file path"):
        append_all_or_none(link, b"three\n", "my summary")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"^pipe: is not a regular file"):  # refused at once, no wait for a reader
        append_all_or_none(fifo, b"x", "pipe")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match=r"^folder: is not a regular file"):
        append_all_or_none(tmp_path / "folder", b"x", "folder")
    assert log.read_bytes() == b"one\ntwo\n"


def test_output_lock_refuses_a_second_writer_and_is_removed_after(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)  # rank 0 (or no torchrun) holds the lock
    out = tmp_path / "model.safetensors"
    lock = OutputFiles(out).lock
    assert lock == tmp_path / ".model.safetensors.lock"
    with output_lock(out):
        assert lock.is_file()
        with pytest.raises(OutputError, match="another command is writing it now"), output_lock(out):
            pass
        with output_lock(tmp_path / "other.safetensors"):  # another output: its own lock
            pass
    assert not lock.exists() and not out.exists()
    with output_lock(out):  # free again
        pass
    (tmp_path / "victim").write_text("keep")
    lock.symlink_to(tmp_path / "victim")
    with pytest.raises(OutputError, match=r"its lock path .* is a symbolic link"), output_lock(out):
        pass
    assert (tmp_path / "victim").read_text() == "keep"


def test_sha256_file_matches_hashlib(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: read in two chunks
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    assert sha256_file(str(big)) == hashlib.sha256(data).hexdigest()
    assert sha256_file(big) != sha256_file(empty)


def test_write_many_leaves_no_temp_file_whatever_stops_it(tmp_path):
    def interrupted() -> None:
        raise KeyboardInterrupt

    targets = {tmp_path / "a.json": b"{}", tmp_path / "b.md": b"# b"}
    with pytest.raises(KeyboardInterrupt):
        atomic_write_many(targets, before_rename=interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- output paths


def test_check_output_accepts_a_new_or_regular_file_in_a_folder(tmp_path):
    (tmp_path / "old.npz").write_bytes(b"x")
    assert check_output(tmp_path / "p.NPZ", "--out", suffixes=(".npz", ".safetensors")) == tmp_path / "p.NPZ"
    assert check_output(str(tmp_path / "old.npz"), "--json", probe=True) == tmp_path / "old.npz"


@pytest.mark.parametrize(("name", "expected"), [
    ("p.txt", "--out {path}: expected a path ending in .npz or .safetensors"),
    ("missing/p.npz", "--out {path}: folder {parent} does not exist"),
    ("a_file/p.npz", "--out {path}: {parent} is a file, not a folder; expected a path in a writable folder"),
    ("folder.npz", "--out {path}: is a folder; expected a regular file path to write"),
    ("link.npz", "--out {path}: is a symbolic link; expected a regular file path to write"),
    ("old.npz", "--out {path}: is the --old file; refusing to overwrite an input"),
])
def test_check_output_names_the_option_and_what_was_expected(tmp_path, name, expected):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "old.npz").write_bytes(b"x")
    (tmp_path / "link.npz").symlink_to(tmp_path / "old.npz")
    path = tmp_path / name
    with pytest.raises((ConfigError, OutputError)) as info:
        check_output(path, "--out", suffixes=(".npz", ".safetensors"), inputs={"--old": tmp_path / "old.npz",
                                                                             "--new": None})
    assert str(info.value) == expected.format(path=path, parent=path.parent)


def test_check_output_probes_the_folder_when_asked(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        check_output(folder / "x.json", "--json")  # no probe: the folder exists
        if os.access(folder, os.W_OK) and os.geteuid() == 0:  # root writes anyway: use a file system that refuses
            folder = Path("/proc")
        with pytest.raises(OutputError, match=r"^--json .*x\.json: folder .* is not writable \("):
            check_output(folder / "x.json", "--json", probe=True)
    finally:
        (tmp_path / "ro").chmod(0o700)
