"""compare: several candidate updates against one old model, side by side.

Reads top to bottom: align each candidate with the old predictions, summarise
its flips, mark the error-NFR Pareto front, and test every pair of candidates
for a real NFR difference (McNemar's exact test on their negative-flip
indicators over the same samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from modelupdate.atomic import resolved
from modelupdate.config import EvalConfig
from modelupdate.errors import ConfigError
from modelupdate.metrics import (
    FlipSummary,
    flip_masks,
    flip_summary,
    paired_exact_test,
    pareto_front,
)
from modelupdate.predictions import Predictions, align


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's flips against the old model, plus what it costs to run."""

    name: str
    source: str
    summary: FlipSummary
    params: int | None  # number of parameters, when known (checkpoints)
    ms_per_image: float | None  # inference time, when measured (checkpoints)
    pareto: bool  # on the (ER_new, NFR) Pareto front among the candidates


@dataclass(frozen=True)
class PairwiseNfrTest:
    """Do candidates ``a`` and ``b`` differ in negative flips on the same samples?

    ``a_only``: samples that only ``a`` flips negatively; ``b_only`` likewise.
    """

    a: str
    b: str
    a_only: int
    b_only: int
    p_value: float


@dataclass(frozen=True)
class CompareResult:
    old_source: str
    n: int
    rows: list[CandidateRow]
    pairwise: list[PairwiseNfrTest]


def compare(
    old: Predictions,
    candidates: dict[str, Predictions],
    extra: dict[str, dict] | None = None,
) -> CompareResult:
    """Summarise each candidate against ``old`` (insertion order is kept).

    ``extra[name]`` may hold ``params`` (int) and ``ms_per_image`` (float).
    Raises ConfigError when there is no candidate, MismatchError when a candidate
    does not cover the old model's samples.
    """
    if not candidates:
        raise ConfigError("compare needs at least one candidate")
    extra = extra or {}
    summaries: dict[str, FlipSummary] = {}
    negative_flips: dict[str, np.ndarray] = {}
    for name, candidate in candidates.items():
        old_aligned, new_aligned = align(old, candidate)  # new in old's sample order
        summaries[name] = flip_summary(old_aligned.preds, new_aligned.preds, old.targets)
        negative_flips[name], _ = flip_masks(old.preds, new_aligned.preds, old.targets)

    on_front = pareto_front([(s.er_new.value, s.nfr.value) for s in summaries.values()])
    rows = []
    for (name, summary), pareto in zip(summaries.items(), on_front, strict=True):
        info = extra.get(name, {})
        params = info.get("params")
        ms = info.get("ms_per_image")
        rows.append(CandidateRow(
            name=name,
            source=candidates[name].source,
            summary=summary,
            params=int(params) if params is not None else None,
            ms_per_image=float(ms) if ms is not None else None,
            pareto=pareto,
        ))

    pairwise = []
    for a, b in combinations(summaries, 2):
        test = paired_exact_test(negative_flips[a], negative_flips[b])
        pairwise.append(PairwiseNfrTest(a, b, test.only_a, test.only_b, test.p_value))
    return CompareResult(old_source=old.source, n=len(old), rows=rows, pairwise=pairwise)


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
                outputs: dict[str, str | Path | None], formats: dict[str, Callable[[CompareResult], str]]
                ) -> CompareRun:
    """`modelupdate compare`: name the candidates, check the outputs, load every input (the candidates'
    inference timed), compare, write the requested files (``formats``: ``report.COMPARE_FORMATS``)."""
    from .inputs import cost_columns, load_inputs
    from .outputs import Outputs, deliver, step_summary_path

    labels = candidate_names(candidates, names)
    plan = Outputs([old, *candidates], outputs)
    summary = step_summary_path()
    loaded = load_inputs([old, *candidates], eval_cfg, timed=[False] + [True] * len(candidates))
    old_p, candidate_p = loaded[0], dict(zip(labels, loaded[1:], strict=True))
    result = compare(old_p, candidate_p, {name: cost_columns(p) for name, p in candidate_p.items()})
    return CompareRun(result, deliver(plan, summary, result, formats))
