"""compare: several candidate updates against one old model, side by side.

Reads top to bottom: check the report files can be written, read the old predictions and every candidate's
(prediction files, or checkpoints run on a split, timed), analyse them (``analysis.compare``: flips, gates,
Pareto front, pairwise tests), and write every report asked for or none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelupdate.analysis import CompareResult, compare
from modelupdate.atomic import resolved
from modelupdate.config import EvalConfig, GateSpec
from modelupdate.errors import ConfigError
from modelupdate.report import COMPARE_FORMATS, ReportFormat


def candidate_names(paths: list[Path], names: list[str]) -> list[str]:
    """One unique name per candidate: the --name values, else file names (paths on a clash)."""
    if names:
        if len(names) != len(paths):
            raise ConfigError(f"--name given {len(names)} times for {len(paths)} candidates; "
                              "give one per candidate, in order")
        if len(set(names)) != len(names):
            raise ConfigError("--name: candidate names must be unique")
        return list(names)
    if len({resolved(p) for p in paths}) != len(paths):
        raise ConfigError("a candidate is given twice")
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


@dataclass(frozen=True)
class CompareRun:
    result: CompareResult
    stdout: str | None  # the report asked for on stdout ('-'), printed instead of the tables


def run_compare(old: Path, candidates: list[Path], names: list[str], eval_cfg: EvalConfig,
                outputs: Mapping[ReportFormat, str | Path | None], gates: GateSpec | None = None) -> CompareRun:
    """`modelupdate compare`: name the candidates, check the outputs, load every input (the candidates'
    inference timed), compare and gate (recording each input's path and sha256), write the requested
    report files (``outputs``: each format asked for -> a path, ``'-'`` or None)."""
    from .inputs import cost_columns, load_inputs
    from .outputs import Outputs, deliver, input_record, step_summary_path

    labels = candidate_names(candidates, names)
    plan = Outputs([old, *candidates], outputs, extra_inputs=eval_cfg.input_files())
    summary = step_summary_path()
    loaded = load_inputs([old, *candidates], eval_cfg, timed=[False] + [True] * len(candidates))
    old_p, candidate_p = loaded[0], dict(zip(labels, loaded[1:], strict=True))
    result = compare(old_p, candidate_p, {name: cost_columns(p) for name, p in candidate_p.items()}, gates)
    records = [input_record("old", old, old_p)]
    records += [input_record("candidate", path, candidate_p[name], name)
                for name, path in zip(labels, candidates, strict=True)]
    result = dataclasses.replace(result, inputs=tuple(records), reading=eval_cfg.reading())
    return CompareRun(result, deliver(plan, summary, result, COMPARE_FORMATS))
