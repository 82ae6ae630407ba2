"""compare: several candidate updates against one old model, side by side.

Reads top to bottom: align each candidate with the old predictions, summarise
its flips and evaluate the gates on it (the same gates as flip-report), mark the
error-NFR Pareto front, and test every pair of candidates for a real NFR
difference (McNemar's exact test on their negative-flip indicators over the
same samples).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from modelupdate.atomic import resolved
from modelupdate.config import EvalConfig, GateSpec
from modelupdate.errors import ConfigError
from modelupdate.gates import GateResult, evaluate_gates
from modelupdate.metrics import (
    ClassRow,
    FlipSummary,
    flip_masks,
    flip_summary,
    paired_exact_test,
    pareto_front,
    per_class_table,
)
from modelupdate.predictions import Predictions, align

from .outputs import InputRecord


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's flips against the old model, plus what it costs to run."""

    name: str
    source: str
    summary: FlipSummary
    params: int | None  # number of parameters, when known (checkpoints)
    ms_per_image: float | None  # inference time, when measured (checkpoints)
    pareto: bool  # on the (ER_new, NFR) Pareto front among the candidates
    gates: list[GateResult] = field(default_factory=list)  # the candidate's gates, as flip-report's
    per_class: list[ClassRow] = field(default_factory=list)  # flips by true class, in class order

    @property
    def passed(self) -> bool:
        """True when every gate passes on this candidate (also when there are no gates)."""
        return all(g.passed for g in self.gates)


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
    gate_spec: GateSpec = field(default_factory=GateSpec)  # the gates every candidate is held to
    inputs: tuple[InputRecord, ...] = ()  # old, then the candidates, when read from files (``run_compare``)
    # how the prediction files were read (columns, class list): part of the provenance
    reading: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every candidate passes every gate (also when there are no gates)."""
        return all(row.passed for row in self.rows)


def compare(
    old: Predictions,
    candidates: dict[str, Predictions],
    extra: dict[str, dict] | None = None,
    gates: GateSpec | None = None,
) -> CompareResult:
    """Summarise each candidate against ``old`` (insertion order is kept) and hold it to ``gates``.

    ``extra[name]`` may hold ``params`` (int) and ``ms_per_image`` (float).
    Raises ConfigError when there is no candidate, MismatchError when a candidate
    does not cover the old model's samples.
    """
    if not candidates:
        raise ConfigError("compare needs at least one candidate")
    extra = extra or {}
    gates = gates or GateSpec()
    summaries: dict[str, FlipSummary] = {}
    negative_flips: dict[str, np.ndarray] = {}
    gate_results: dict[str, list[GateResult]] = {}
    per_class: dict[str, list[ClassRow]] = {}
    for name, candidate in candidates.items():
        old_aligned, new_aligned = align(old, candidate)  # new in old's sample order
        summaries[name] = flip_summary(old_aligned.preds, new_aligned.preds, old.targets)
        negative_flips[name], _ = flip_masks(old.preds, new_aligned.preds, old.targets)
        assert old_aligned.num_classes is not None  # align resolves it
        per_class[name] = per_class_table(old_aligned.preds, new_aligned.preds, old.targets,
                                          old_aligned.num_classes, old_aligned.classes)
        gate_results[name] = evaluate_gates(summaries[name], per_class[name], gates)

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
            gates=gate_results[name],
            per_class=per_class[name],
        ))

    pairwise = []
    for a, b in combinations(summaries, 2):
        test = paired_exact_test(negative_flips[a], negative_flips[b])
        pairwise.append(PairwiseNfrTest(a, b, test.only_a, test.only_b, test.p_value))
    return CompareResult(old_source=old.source, n=len(old), rows=rows, pairwise=pairwise, gate_spec=gates)


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
                outputs: dict[str, str | Path | None], formats: dict[str, Callable[[CompareResult], str]],
                gates: GateSpec | None = None) -> CompareRun:
    """`modelupdate compare`: name the candidates, check the outputs, load every input (the candidates'
    inference timed), compare and gate (recording each input's path and sha256), write the requested
    files (``formats``: ``report.COMPARE_FORMATS``)."""
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
    return CompareRun(result, deliver(plan, summary, result, formats))
