"""Every path a command writes is an output checked before any work: CSV cells a spreadsheet would run,
``$GITHUB_STEP_SUMMARY``, the files beside ``--out`` (log, state, members folder, lock), stale temp files,
and control characters from files reaching Markdown, HTML or the terminal.

CLI cases run ``python -m modelupdate`` in a subprocess (``run_cli``) on real files; a case that could hang
(a FIFO) runs under a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import resource
from pathlib import Path

import numpy as np
import pytest

from modelupdate.atomic import remove_stale_temps
from modelupdate.report.common import safe_text
from modelupdate.report.csv_format import csv_cell

FAST = ["--data", "synthetic", "--arch", "tiny", "--epochs", "1", "--batch-size", "64", "--train-subset", "128",
        "--device", "cpu", "--quiet"]
HANG = 60  # seconds: far more than a refused command needs, far less than a hang


def one_error_line(rc: int, stderr: str, *fragments: str) -> str:
    """The single ``error: ...`` line of a refused command (exit 2), holding every fragment."""
    lines = stderr.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, stderr)
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Each entry's (size, mtime_ns) without following links (None for a FIFO): what 'nothing written' compares."""
    return {p.name: (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.iterdir()}


def cells(row: str) -> int:
    """The number of cells of a Markdown table row (``\\|`` is a pipe inside a cell)."""
    assert row.startswith("|") and row.endswith("|"), row
    return len(re.split(r"(?<!\\)\|", row)) - 2


def write_pair(folder: Path, ids: list[str], classes: list[str] | None = None) -> tuple[Path, Path]:
    """old.npz and new.npz over ``ids`` (strings): the old model is right on every sample, the new one
    wrong on every other, so half the samples are negative flips."""
    n = len(ids)
    targets = np.arange(n, dtype=np.int64) % 2
    new_preds = np.where(np.arange(n) % 2 == 0, 1 - targets, targets)
    extra = {"classes": np.array(classes)} if classes is not None else {"num_classes": np.int64(2)}
    old, new = folder / "old.npz", folder / "new.npz"
    np.savez(old, ids=np.array(ids), targets=targets, preds=targets, **extra)
    np.savez(new, ids=np.array(ids), targets=targets, preds=new_preds, **extra)
    return old, new


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    return write_pair(tmp_path, [f"s{i}" for i in range(8)])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny model trained by the CLI on the same data as ``FAST``."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("model") / "ref.safetensors"
    proc = subprocess.run([sys.executable, "-m", "modelupdate", "train", *FAST, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return out


# --------------------------------------------------------------------------- CSV formula injection

FORMULA_IDS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "@SUM(A1)", '=HYPERLINK("http://x.example","click")',
               "-2+3", "\tSUM(1)", "\rSUM(1)"]


@pytest.mark.parametrize("formula", FORMULA_IDS, ids=["cmd", "plus", "at", "hyperlink", "minus", "tab", "cr"])
def test_flips_csv_prefixes_ids_a_spreadsheet_would_run(run_cli, tmp_path, formula):
    old, new = write_pair(tmp_path, [formula, "plain", "s2", "s3"])
    flips = tmp_path / "flips.csv"
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--flips-csv", flips)
    assert rc == 0, stderr
    rows = list(csv.DictReader(io.StringIO(flips.read_bytes().decode("utf-8"), newline="")))
    assert [r["id"] for r in rows] == ["'" + formula, "s2"]  # samples 0 and 2 flip; a plain id is kept as is


def test_csv_cell_leaves_numbers_and_plain_text_alone():
    assert csv_cell(-5) == -5 and csv_cell(3.5) == 3.5
    assert csv_cell("cat/001.png") == "cat/001.png"
    assert csv_cell("a=b") == "a=b"  # only the first character makes a formula


# --------------------------------------------------------------------------- $GITHUB_STEP_SUMMARY


def test_step_summary_naming_an_input_is_refused(run_cli, tmp_path, monkeypatch):
    _, new = write_pair(tmp_path, [f"s{i}" for i in range(8)])
    old = tmp_path / "old.csv"
    old.write_text("id,target,pred\n" + "".join(f"s{i},{i % 2},{i % 2}\n" for i in range(8)))
    before = snapshot(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(old))
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", tmp_path / "r.md",
                            "--json", tmp_path / "r.json")
    one_error_line(rc, stderr, "$GITHUB_STEP_SUMMARY", str(old), "is one of the inputs")
    assert snapshot(tmp_path) == before


def test_step_summary_that_is_a_fifo_is_refused_without_hanging(run_cli, pair, tmp_path, monkeypatch):
    old, new = pair
    fifo = tmp_path / "summary.md"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(fifo))
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", tmp_path / "r.md",
                            "--flips-csv", tmp_path / "f.csv", timeout=HANG)
    one_error_line(rc, stderr, "$GITHUB_STEP_SUMMARY", "not a regular file")
    assert snapshot(tmp_path) == before


def test_step_summary_at_dev_full_is_refused_before_any_report(run_cli, pair, tmp_path, monkeypatch):
    old, new = pair
    before = snapshot(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", "/dev/full")
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", tmp_path / "r.md",
                            "--html", tmp_path / "r.html", timeout=HANG)
    one_error_line(rc, stderr, "$GITHUB_STEP_SUMMARY /dev/full", "not a regular file")
    assert snapshot(tmp_path) == before


def test_step_summary_that_is_a_symlink_is_not_followed(run_cli, pair, tmp_path, monkeypatch):
    old, new = pair
    victim = tmp_path / "victim.md"
    victim.write_text("keep\n")
    link = tmp_path / "summary.md"
    link.symlink_to(victim)
    before = snapshot(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(link))
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--json", tmp_path / "r.json")
    one_error_line(rc, stderr, "$GITHUB_STEP_SUMMARY", "symbolic link")
    assert victim.read_text() == "keep\n" and snapshot(tmp_path) == before


def test_step_summary_that_is_also_a_report_path_is_refused(run_cli, pair, tmp_path, monkeypatch):
    old, new = pair
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "r.md"))
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", tmp_path / "r.md")
    one_error_line(rc, stderr, "--markdown and $GITHUB_STEP_SUMMARY both write")
    assert not (tmp_path / "r.md").exists()


def test_a_failed_summary_append_writes_no_report_and_leaves_the_summary_as_it_was(run_cli, pair, tmp_path,
                                                                                    monkeypatch):
    """The append fails for real (the file is past the process's file-size limit: EFBIG) after the report
    temp files were written: no report is renamed into place, no temp file is left, the summary keeps its bytes."""
    old, new = pair
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"earlier step\n" * 10_000)  # 130 kB, over the limit below; the reports are under it
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # inherited by the CLI's subprocess
    try:
        rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--json", tmp_path / "r.json",
                                "--flips-csv", tmp_path / "f.csv")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    one_error_line(rc, stderr, f"$GITHUB_STEP_SUMMARY {summary}: cannot append")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no report, no temp file
    assert summary.read_bytes() == b"earlier step\n" * 10_000


def test_step_summary_is_appended_with_the_reports(run_cli, pair, tmp_path, monkeypatch):
    old, new = pair
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--json", tmp_path / "r.json")
    assert rc == 0, stderr
    assert summary.read_text().startswith("earlier step\n## modelupdate flip report") and (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------- files written beside --out


def test_a_log_symlink_beside_out_is_refused_and_its_target_kept(run_cli, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (tmp_path / "m.log.jsonl").symlink_to(victim)
    before = snapshot(tmp_path)
    rc, _, stderr = run_cli("train", *FAST, "--out", tmp_path / "m.safetensors", timeout=HANG)
    one_error_line(rc, stderr, "m.log.jsonl", "symbolic link")
    assert victim.read_text() == "keep\n" and snapshot(tmp_path) == before


def test_a_log_fifo_beside_out_is_refused_without_hanging(run_cli, tmp_path):
    os.mkfifo(tmp_path / "m.log.jsonl")
    before = snapshot(tmp_path)
    rc, _, stderr = run_cli("train", *FAST, "--out", tmp_path / "m.safetensors", timeout=HANG)
    one_error_line(rc, stderr, "m.log.jsonl", "not a regular file")
    assert snapshot(tmp_path) == before


def test_a_state_symlink_beside_out_is_refused(run_cli, tmp_path):
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"keep")
    (tmp_path / "m.state.safetensors").symlink_to(victim)
    before = snapshot(tmp_path)
    rc, _, stderr = run_cli("train", *FAST, "--out", tmp_path / "m.safetensors", "--resume", timeout=HANG)
    one_error_line(rc, stderr, "m.state.safetensors", "symbolic link")
    assert victim.read_bytes() == b"keep" and snapshot(tmp_path) == before


def test_a_members_folder_symlink_is_refused(run_cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "e.members").symlink_to(elsewhere)
    rc, _, stderr = run_cli("ensemble-train", *FAST, "--members", "2", "--out", tmp_path / "e.safetensors",
                            "--resume", timeout=HANG)
    one_error_line(rc, stderr, "e.members", "symbolic link")
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "e.safetensors").exists()


def test_a_folder_at_the_lock_path_is_refused_not_ignored(run_cli, tmp_path):
    (tmp_path / ".m.safetensors.lock").mkdir()
    before = snapshot(tmp_path)
    rc, _, stderr = run_cli("train", *FAST, "--out", tmp_path / "m.safetensors", timeout=HANG)
    one_error_line(rc, stderr, ".m.safetensors.lock", "is a folder")
    assert snapshot(tmp_path) == before


def test_a_symlink_at_the_lock_path_is_refused(run_cli, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (tmp_path / ".m.safetensors.lock").symlink_to(victim)
    rc, _, stderr = run_cli("train", *FAST, "--out", tmp_path / "m.safetensors", timeout=HANG)
    one_error_line(rc, stderr, ".m.safetensors.lock", "symbolic link")
    assert victim.read_text() == "keep\n" and not (tmp_path / "m.safetensors").exists()


def test_predict_takes_the_output_lock_of_a_running_command(run_cli, model, tmp_path):
    """A lock held on the path (as `train --out` of it does while it runs) refuses `predict --out` of it."""
    out = tmp_path / "p.safetensors"
    fd = os.open(tmp_path / ".p.safetensors.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, _, stderr = run_cli("predict", model, "--out", out, "--data", "synthetic", "--device", "cpu")
    finally:
        os.close(fd)
    one_error_line(rc, stderr, f"--out {out}", "another command is writing it now")
    assert not out.exists()
    rc, _, stderr = run_cli("predict", model, "--out", out, "--data", "synthetic", "--device", "cpu")
    assert rc == 0 and out.exists(), stderr
    assert not (tmp_path / ".p.safetensors.lock").exists(), "the lock is removed after the run"


def test_reference_cache_equal_to_out_is_refused_before_work(run_cli, model, tmp_path):
    out = tmp_path / "new.safetensors"
    rc, _, stderr = run_cli("ldi-train", *FAST, "--method", "elodi", "--reference", model, "--reference-cache", out,
                            "--out", out, timeout=HANG)
    one_error_line(rc, stderr, f"--reference-cache {out}", "--out itself")
    assert list(tmp_path.iterdir()) == []


def test_reference_cache_equal_to_the_training_log_is_refused(run_cli, model, tmp_path):
    out = tmp_path / "new.safetensors"
    rc, _, stderr = run_cli("ldi-train", *FAST, "--method", "elodi", "--reference", model, "--reference-cache",
                            tmp_path / "new.log.jsonl", "--out", out, timeout=HANG)
    one_error_line(rc, stderr, "--reference-cache", "training log of --out")
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_equal_to_out_is_refused_before_training(run_cli, tmp_path):
    out = tmp_path / "m.safetensors"
    rc, _, stderr = run_cli("train", *FAST, "--tensorboard", out, "--out", out, timeout=HANG)
    one_error_line(rc, stderr, f"--tensorboard {out}", "--out itself")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- stale temp files


def test_an_out_named_with_a_star_removes_only_its_own_temps(run_cli, tmp_path):
    other = tmp_path / ".other.safetensors.abc123.tmp"
    other.write_bytes(b"another writer's temp")
    own = tmp_path / ".*.safetensors.abc123.tmp"
    own.write_bytes(b"half a checkpoint")
    rc, _, stderr = run_cli("train", *FAST, "--out", "*.safetensors", cwd=tmp_path, timeout=300)
    assert rc == 0, stderr
    assert other.read_bytes() == b"another writer's temp" and not own.exists()
    assert (tmp_path / "*.safetensors").is_file()


def test_an_out_named_with_a_question_mark_removes_only_its_own_temps(run_cli, model, tmp_path):
    other = tmp_path / ".m1.safetensors.abc123.tmp"
    other.write_bytes(b"another writer's temp")
    own = tmp_path / ".m?.safetensors.abc123.tmp"
    own.write_bytes(b"half a file")
    rc, _, stderr = run_cli("predict", model, "--out", "m?.safetensors", "--data", "synthetic", "--device", "cpu",
                            cwd=tmp_path)
    assert rc == 0, stderr
    assert other.exists() and not own.exists()


def test_remove_stale_temps_matches_the_name_literally(tmp_path):
    names = [".[ab].safetensors.x1y2z3.tmp", ".a.safetensors.x1y2z3.tmp", ".[ab].safetensors.b.c.tmp",
             ".[ab].safetensors.lock"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temps(tmp_path / "[ab].safetensors")
    assert [p.name for p in removed] == [".[ab].safetensors.x1y2z3.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_a_killed_reference_cache_write_leaves_no_temp_after_the_next_run(run_cli, model, tmp_path):
    """What a SIGKILL during the cache's atomic write leaves (its temp file) is removed by the next run."""
    cache = tmp_path / "ref_cache.safetensors"
    stale = tmp_path / ".ref_cache.safetensors.k1ll3d.tmp"
    stale.write_bytes(b"half a cache")
    rc, _, stderr = run_cli("ldi-train", *FAST, "--method", "elodi", "--reference", model, "--reference-cache",
                            cache, "--out", tmp_path / "new.safetensors", timeout=300)
    assert rc == 0, stderr
    assert cache.is_file() and not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- control characters from files


def test_a_carriage_return_in_an_id_does_not_cut_a_markdown_row(run_cli, tmp_path):
    old, new = write_pair(tmp_path, ["a\rb", "c\nd", "e\r\nf", "g"])
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", "-")
    assert rc == 0, stderr
    assert "\r" not in stdout
    section = stdout.split("### Negative flips by sample")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2  # header, rule, the two negative flips
    assert all(cells(line) == 4 for line in rows)
    assert "a\\x0db" in section and "e\\x0d\\x0af" in section


def test_a_carriage_return_in_a_class_name_does_not_cut_a_markdown_row(run_cli, tmp_path):
    old, new = write_pair(tmp_path, [f"s{i}" for i in range(4)], classes=["cat\rdog", "bird\n| x |"])
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", "-")
    assert rc == 0, stderr
    section = stdout.split("### Per class")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2 and all(cells(line) == 8 for line in rows)
    assert "0 cat\\x0ddog" in section and "1 bird\\x0a\\| x \\|" in section


ESC_ID = "\x1b[2J\x1b]0;pwned\x07evil"


def test_escape_codes_from_a_file_do_not_reach_markdown(run_cli, tmp_path):
    old, new = write_pair(tmp_path, [ESC_ID, "s1", "s2", "s3"], classes=["\x1b[31mred", "\u202eblue"])
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new, "--markdown", "-")
    assert rc == 0, stderr
    assert "\x1b" not in stdout and "\x07" not in stdout and "\u202e" not in stdout
    assert "\\x1b[2J" in stdout and "\\u202eblue" in stdout


def test_escape_codes_from_a_file_do_not_reach_html(run_cli, tmp_path):
    old, new = write_pair(tmp_path, [ESC_ID, "s1", "s2", "s3"], classes=["\x1b[31mred", "\u202eblue"])
    page = tmp_path / "r.html"
    rc, _, stderr = run_cli("flip-report", "--old", old, "--new", new, "--html", page)
    assert rc == 0, stderr
    text = page.read_text()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[31mred" in text


def test_escape_codes_from_a_file_do_not_reach_the_terminal(run_cli, tmp_path):
    old, new = write_pair(tmp_path, [ESC_ID, "s1", "s2", "s3"], classes=["\x1b[31mred", "\u202eblue"])
    rc, stdout, stderr = run_cli("flip-report", "--old", old, "--new", new)
    assert rc == 0, stderr
    assert "\x1b" not in stdout + stderr and "\u202e" not in stdout
    assert "\\x1b[31mred" in stdout


def test_safe_text_escapes_controls_and_keeps_text():
    assert safe_text("naïve 猫 cat") == "naïve 猫 cat"
    assert safe_text("a\x1bb\rc\nd\te") == "a\\x1bb\\x0dc\nd\te"
    assert safe_text("a\nb", one_line=True) == "a\\x0ab"
    assert safe_text("\u202eabc\U000e0041") == "\\u202eabc\\U000e0041"
