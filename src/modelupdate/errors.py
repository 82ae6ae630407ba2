"""Exceptions a user can act on.

Library code raises these; only the CLI turns them into a one-line message on
stderr and an exit code (2 for bad input or usage, see ``exit_code``).
"""

from __future__ import annotations


class ModelUpdateError(Exception):
    """Base class: the message is one line that names what is wrong and what was expected."""

    exit_code = 2


class CheckpointError(ModelUpdateError):
    """A checkpoint file is missing, unreadable, truncated, foreign or a pickle."""


class UntrustedCodeError(CheckpointError):
    """A file names code (an architecture module) that the user has not allowed."""


class MismatchError(ModelUpdateError):
    """Two inputs that must agree (classes, input shape, normalisation, sample ids) do not."""


class DataError(ModelUpdateError):
    """A dataset is unknown, missing, empty, or a split is malformed."""


class PredictionFileError(ModelUpdateError):
    """A prediction file is malformed: bad ids, NaN logits, labels out of range, ..."""


class ConfigError(ModelUpdateError):
    """An option has a value outside what is accepted."""


class TrainingDiverged(ModelUpdateError):
    """The loss became NaN or Inf; the last good state was kept."""

    exit_code = 3


class OutputComplete(ModelUpdateError):
    """``--resume`` on an output that an earlier run already finished: nothing to do (exit 0)."""

    exit_code = 0


class OutputError(ModelUpdateError):
    """An output path cannot be written."""


class ModelUpdateWarning(UserWarning):
    """Legal but suspicious input (e.g. images resized far from their size): the CLI shows it as one line."""
