"""The report files an analysis command writes: checked before any work, rendered in memory after it,
written all or none, and the Markdown appended to ``$GITHUB_STEP_SUMMARY`` when it is set (an output like
the others: checked with them, and appended only once every report file is ready to be renamed). Also what
the reports record of their inputs (``InputRecord``: path, sha256, dataset and split), so that a report
names exactly the files it was made from."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..analysis import InputRecord
from ..atomic import append_all_or_none, atomic_write_many, check_output, probe_folder, resolved, sha256_file
from ..errors import ConfigError, OutputError, PredictionFileError
from ..predictions import Predictions
from ..report import ReportFormat
from .inputs import checkpoint_kind

# --------------------------------------------------------------------------- provenance


def input_record(role: str, path: str | Path, predictions: Predictions, name: str | None = None) -> InputRecord:
    """Return what a report records of the input at ``path``, read as ``predictions``.

    A checkpoint's sha256 is the one its loader computed (``meta["checkpoint_sha256"]``); a prediction
    file is hashed here. Raises PredictionFileError when a prediction file cannot be read again.
    """
    meta = predictions.meta
    kind = checkpoint_kind(path)
    if kind is not None and meta.get("checkpoint_sha256"):
        sha256 = meta["checkpoint_sha256"]
    else:
        kind = "predictions"
        try:
            sha256 = sha256_file(path)
        except OSError as exc:
            raise PredictionFileError(f"{path}: cannot read it again to record its sha256 ({exc.strerror})") from None
    return InputRecord(role=role, name=name, path=str(path), kind=kind, sha256=sha256,
                       checkpoint_sha256=meta.get("checkpoint_sha256"), dataset=meta.get("dataset"),
                       dataset_fingerprint=meta.get("dataset_fingerprint"), split=meta.get("split"))


# --------------------------------------------------------------------------- report files

STDOUT = "-"  # an output option given '-' prints that report instead of the tables
SUMMARY = "$GITHUB_STEP_SUMMARY"  # how messages name the step summary (GitHub Actions sets the variable)


class Outputs:
    """Where each rendered report goes (option -> path, or stdout), and the step summary, if any."""

    def __init__(self, inputs: list[Path], requested: Mapping[ReportFormat, str | Path | None],
                 extra_inputs: list[str] | None = None) -> None:
        self.files: dict[ReportFormat, Path] = {}
        self.stdout: ReportFormat | None = None  # the report that goes to stdout
        paths: list[str | Path] = [*inputs, *(extra_inputs or [])]
        self._inputs = {resolved(Path(p)) for p in paths}
        for option, value in requested.items():
            self.add(option, value)
        self.summary = self._step_summary()

    def _step_summary(self) -> Path | None:
        """``$GITHUB_STEP_SUMMARY``, checked as an output: never an input, nor another report's path."""
        path = step_summary_path()
        if path is None:
            return None
        if resolved(path) in self._inputs:
            raise ConfigError(f"{SUMMARY} {path}: is one of the inputs; refusing to append to it")
        for option, taken in self.files.items():
            if resolved(taken) == resolved(path):
                raise ConfigError(f"{option} and {SUMMARY} both write {path}")
        return path

    def add(self, option: ReportFormat, value: str | Path | None) -> None:
        if value is None:
            return
        if str(value) == STDOUT:
            if self.stdout is not None:
                raise ConfigError(f"{self.stdout} and {option} cannot both write to stdout ('-')")
            self.stdout = option
            return
        path = check_output(value, option)
        if resolved(path) in self._inputs:
            raise ConfigError(f"{option} {path}: is one of the inputs; refusing to overwrite it")
        for other, taken in self.files.items():
            if resolved(taken) == resolved(path):
                raise ConfigError(f"{other} and {option} both write {path}")
        self.files[option] = path

    def wanted(self, option: ReportFormat) -> bool:
        return option in self.files or self.stdout == option


def step_summary_path() -> Path | None:
    """``$GITHUB_STEP_SUMMARY`` when set (GitHub Actions), checked like an output path: in an existing
    folder, a regular file or nothing (not a symbolic link, FIFO, device or folder), and writable."""
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    if not value:
        return None
    path = check_output(value, SUMMARY)
    try:  # a real open or probe, not os.access: root passes os.access, and /proc or read-only mounts lie
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC))
        else:
            probe_folder(path)
    except OSError as exc:
        raise OutputError(f"{SUMMARY} {path}: cannot append ({exc.strerror})") from None
    return path


def append_step_summary(path: Path | None, markdown: str) -> None:
    """Append ``markdown`` to the step summary at ``path``: all of it or, when the write fails, none."""
    if path is None:
        return
    append_all_or_none(path, (markdown + "\n").encode("utf-8"), f"{SUMMARY} {path}")


def deliver(outputs: Outputs, summary: Path | None, result: Any,
            renderers: Mapping[ReportFormat, Callable[[Any], str]]) -> str | None:
    """Render the requested reports, write the files and append the Markdown to the step summary, all or
    none (the summary is appended once every report's temp file is written, before they are renamed);
    returns the text to print on stdout instead of the tables, if one was asked for."""
    texts = {option: render(result) for option, render in renderers.items()
             if outputs.wanted(option) or (option == ReportFormat.MARKDOWN and summary is not None)}
    files = {path: texts[option].encode("utf-8") for option, path in outputs.files.items()}
    atomic_write_many(files, before_rename=lambda: append_step_summary(summary, texts.get(ReportFormat.MARKDOWN, "")))
    return texts[outputs.stdout] if outputs.stdout is not None else None
