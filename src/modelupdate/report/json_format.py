"""JSON of flip reports and compare results: the stable, machine-read outputs.

Undefined values are ``null``, never 0 or NaN.

JSON of a flip report (``"schema": 1``; documented in docs/ci-gate.md)::

    {"schema": 1,
     "counts": {"n", "old_correct", "new_correct", "negative_flips", "positive_flips"},
     "metrics": {"er_old" | "er_new" | "nfr" | "pfr" | "rel_nfr" | "nfi" | "btc" | "bec":
                 {"value": number|null, "ci95": [lo, hi]|null}},
     "mcnemar_p": number,
     "per_class": [{"class": int, "name": str|null, "n", "old_correct", "new_correct",
                    "negative_flips", "positive_flips",
                    "old_acc" | "new_acc" | "nfr": {"value": number|null, "ci95": [lo, hi]|null}}],
     "gates": [{"name": str, "threshold": number, "value": number|null, "passed": bool}],
     "passed": bool,
     "provenance": {...see below}}

JSON of a compare result (``"schema": 1``)::

    {"schema": 1, "old": str, "n": int,
     "candidates": [{"name", "source", "counts": {...as above}, "metrics": {...as above},
                     "mcnemar_p", "params": int|null, "ms_per_image": number|null,
                     "pareto": bool, "gates": [...as above], "passed": bool,
                     "per_class": [...as above]}],
     "pairwise": [{"a", "b", "a_only_negative_flips", "b_only_negative_flips", "p_value"}],
     "passed": bool,
     "provenance": {...see below}}

``provenance`` says what made the report, and nothing that changes from run to run (no time
stamps), so the same inputs and options give the same JSON, byte for byte::

    {"tool": "modelupdate", "version": str,
     "inputs": [{"role": "old"|"new"|"candidate", "name": str|null, "path": str,
                 "kind": "predictions"|"model"|"ensemble", "sha256": str,
                 "checkpoint_sha256": str|null, "dataset": str|null,
                 "dataset_fingerprint": str|null, "split": str|null}],
     "gates": {"gate_on": "value"|"upper", "max-nfr" | "max-rel-nfr" | "max-er" |
               "max-er-increase" | "min-btc" | "max-class-nfr": number|null},
     "prediction_files": {"id_column", "label_column", "pred_column": str,
                          "classes": [str]|null, "classes_file": str|null}|null}

(``ms_per_image`` of a checkpoint candidate is a measurement, and differs between runs.)
"""

from __future__ import annotations

import json

from modelupdate import __version__
from modelupdate.analysis import CompareResult, FlipReport, InputRecord
from modelupdate.config import GateSpec
from modelupdate.gates import gate_settings
from modelupdate.metrics import ClassRow, FlipSummary, Rate

JSON_SCHEMA_VERSION = 1
TOOL = "modelupdate"


def _rate_dict(rate: Rate) -> dict:
    """Return ``{"value", "ci95"}`` of one rate (None where undefined)."""
    return {"value": rate.value, "ci95": list(rate.ci95) if rate.ci95 is not None else None}


def _summary_dicts(summary: FlipSummary) -> tuple[dict, dict]:
    """Return the ``counts`` and ``metrics`` objects of one old/new comparison."""
    return summary.counts.as_dict(), {k: _rate_dict(r) for k, r in summary.rates().items()}


def provenance_dict(inputs: tuple[InputRecord, ...], gates: GateSpec, reading: dict | None = None) -> dict:
    """Return the ``provenance`` object: tool and version, every input, the gates asked for, and how
    prediction files were read (their columns and class list)."""
    return {"tool": TOOL, "version": __version__, "inputs": [r.as_dict() for r in inputs],
            "gates": gate_settings(gates), "prediction_files": reading or None}


def _dumps(data: dict) -> str:
    """Return ``data`` as indented JSON text ending in a newline."""
    # allow_nan=False: an undefined value must be null, never NaN
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _class_dicts(rows: list[ClassRow]) -> list[dict]:
    """Return the ``per_class`` list: one object per true class, in class order."""
    return [
        {
            "class": row.index,
            "name": row.name,
            "n": row.n,
            "old_correct": row.old_correct,
            "new_correct": row.new_correct,
            "negative_flips": row.negative_flips,
            "positive_flips": row.positive_flips,
            "old_acc": _rate_dict(row.old_acc),
            "new_acc": _rate_dict(row.new_acc),
            "nfr": _rate_dict(row.nfr),
        }
        for row in rows
    ]


def flip_report_to_dict(report: FlipReport) -> dict:
    """Return the stable JSON object of a flip report (see the module docstring)."""
    counts, metrics = _summary_dicts(report.summary)
    return {
        "schema": JSON_SCHEMA_VERSION,
        "counts": counts,
        "metrics": metrics,
        "mcnemar_p": report.summary.mcnemar_p,
        "per_class": _class_dicts(report.per_class),
        "gates": [g.as_dict() for g in report.gates],
        "passed": report.passed,
        "provenance": provenance_dict(report.inputs, report.gate_spec, report.reading),
    }


def flip_report_json(report: FlipReport) -> str:
    """Return the flip report as JSON text (``flip_report_to_dict``), newline-terminated."""
    return _dumps(flip_report_to_dict(report))


def compare_to_dict(result: CompareResult) -> dict:
    """Return the stable JSON object of a compare result (see the module docstring)."""
    candidates = []
    for row in result.rows:
        counts, metrics = _summary_dicts(row.summary)
        candidates.append({
            "name": row.name,
            "source": row.source,
            "counts": counts,
            "metrics": metrics,
            "mcnemar_p": row.summary.mcnemar_p,
            "params": row.params,
            "ms_per_image": row.ms_per_image,
            "pareto": row.pareto,
            "gates": [g.as_dict() for g in row.gates],
            "passed": row.passed,
            "per_class": _class_dicts(row.per_class),
        })
    return {
        "schema": JSON_SCHEMA_VERSION,
        "old": result.old_source,
        "n": result.n,
        "candidates": candidates,
        "pairwise": [
            {"a": t.a, "b": t.b, "a_only_negative_flips": t.a_only,
             "b_only_negative_flips": t.b_only, "p_value": t.p_value}
            for t in result.pairwise
        ],
        "passed": result.passed,
        "provenance": provenance_dict(result.inputs, result.gate_spec, result.reading),
    }


def compare_json(result: CompareResult) -> str:
    """Return the compare result as JSON text (``compare_to_dict``), newline-terminated."""
    return _dumps(compare_to_dict(result))
