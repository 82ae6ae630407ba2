"""CI gates on flip metrics: parse thresholds, evaluate, say what passed.

A gate compares one number to a threshold. With ``gate_on="value"`` the number is
the point estimate; with ``gate_on="upper"`` it is the pessimistic end of the 95 %
interval, for teams that want statistical confidence: the *upper* end for every
``max-*`` gate, and the *lower* end for ``min-btc`` (a lower bound on BTC is the
pessimistic one). A gate whose number is undefined (zero denominator, or no
interval) fails, and its ``detail`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from modelupdate.config import GATE_ON_CHOICES, GateSpec
from modelupdate.errors import ConfigError
from modelupdate.metrics import ClassRow, FlipSummary, Rate, error_rate_increase

__all__ = ["GATES", "GATE_ON_CHOICES", "Gate", "GateResult", "GateSpec", "evaluate_gates", "failed_gates",
           "gate_settings", "gate_spec", "gates_set", "parse_threshold"]


def parse_threshold(text: str | float, name: str = "threshold",
                    allow_negative: bool = False, rate: bool = True) -> float:
    """``"2%"`` -> 0.02, ``"0.02"`` -> 0.02; raises ConfigError with a one-line reason.

    ``allow_negative`` is for ``--max-er-increase`` (e.g. ``-0.5%``: require a gain). A ``rate`` is a
    share: a bare number above 1 is refused, since ``2`` read as 200% would make a gate always pass.
    """
    raw = str(text).strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(
            f"{name}: cannot read {raw!r} as a number; expected e.g. 0.02 or 2%"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {raw!r} is not finite; expected e.g. 0.02 or 2%")
    if percent:
        value /= 100.0
    if value < 0 and not allow_negative:
        raise ConfigError(f"{name}: {raw!r} is negative; expected a value >= 0")
    if rate and abs(value) > 1:
        if percent:
            sign = "below -100%" if value < 0 else "above 100%"
            raise ConfigError(f"{name}: {raw!r} is {sign}; expected a share such as 2% or 0.02")
        raise ConfigError(f"{name} {raw}: did you mean {raw}% or {value / 100:g}? A bare number is a share "
                          f"(0.02 = 2%)")
    if rate and not percent and abs(value) == 1:  # the typo of 1%: a gate at 100% could never fail
        raise ConfigError(f"{name} {raw}: did you mean {raw}% or {value / 100:g}? A bare 1 is 100%, a gate that "
                          f"never fails; write 100% if that is meant")
    return value


# --------------------------------------------------------------------------- the gates


# (summary, per-class rows, gate_on) -> (the number compared or None, how it was read, what it is of)
Measure = Callable[[FlipSummary, list[ClassRow], str], tuple[float | None, str, str]]


@dataclass(frozen=True)
class Gate:
    """One CI gate: everything else (GateSpec's field, parsing, the report's settings, evaluation, the CLI
    option and the API keyword) is derived from this entry and its ``GateSpec`` field."""

    name: str  # the option without dashes, and the name in reports: "max-nfr"
    help: str  # --help: what makes it fail
    measure: Measure
    maximum: bool = True  # a max- gate passes at value <= threshold, a min- gate at value >= threshold
    is_rate: bool = True  # a share: shown in percent, and a bare number above 1 is refused as a typo
    allows_negative: bool = False

    @property
    def field(self) -> str:
        """Its GateSpec field and keyword: "max_nfr"."""
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"


def _rate(metric: str, end: int = 1) -> Measure:
    """A gate on one of the summary's rates; ``gate_on="upper"`` reads its pessimistic ``end`` of the interval
    (1: the upper end, for a max- gate; 0: the lower, for a min- gate)."""
    def measure(summary: FlipSummary, per_class: list[ClassRow], on: str) -> tuple[float | None, str, str]:
        return (*_pick(getattr(summary, metric), on, end), "")

    return measure


def _er_increase(summary: FlipSummary, per_class: list[ClassRow], on: str) -> tuple[float | None, str, str]:
    diff, ci = error_rate_increase(summary.counts)
    if diff is None:
        return None, "undefined (no samples)", ""
    if on == "value" or ci is None:
        return diff, "value", ""
    return ci[1], "95% CI upper end", ""


def _worst_class_nfr(summary: FlipSummary, per_class: list[ClassRow], on: str) -> tuple[float | None, str, str]:
    # classes without samples have no NFR and cannot regress: they are skipped
    worst: tuple[float, ClassRow] | None = None
    for row in per_class:
        value, _ = _pick(row.nfr, on, 1)
        if value is not None and (worst is None or value > worst[0]):
            worst = (value, row)
    if worst is None:
        return None, "undefined (no class has samples)", ""
    value, row = worst
    label = f"class {row.index}" + (f" ({row.name})" if row.name else "")
    return value, "value" if on == "value" else "95% CI upper end", f"worst {label}"


GATES: tuple[Gate, ...] = (
    Gate("max-nfr", "Gate: fail when NFR is above this.", _rate("nfr")),
    Gate("max-rel-nfr", "Gate: fail when relative NFR (a ratio; 1.0 = as many flips as independent errors) is "
         "above this.", _rate("rel_nfr"), is_rate=False),
    Gate("max-er", "Gate: fail when the new error rate is above this.", _rate("er_new")),
    Gate("max-er-increase", "Gate: fail when ER new - ER old is above this (negative: require a gain, e.g. "
         "-0.5%).", _er_increase, allows_negative=True),
    Gate("min-btc", "Gate: fail when BTC (share of old-correct samples still correct) is below this.",
         _rate("btc", end=0), maximum=False),
    Gate("max-class-nfr", "Gate: fail when the NFR within any class is above this.", _worst_class_nfr),
    Gate("max-nfi", "Gate: fail when NFI (the share of the new model's errors that are regressions) is above "
         "this.", _rate("nfi")),
)
GATES_BY_FIELD = {g.field: g for g in GATES}


def gate_spec(gate_on: str = "value", **thresholds: str | float | None) -> GateSpec:
    """The gates of flip-report and compare from the thresholds as the user typed them (``"2%"``, ``"0.02"``),
    by GateSpec field (``max_nfr="2%"``)."""
    unknown = sorted(set(thresholds) - set(GATES_BY_FIELD))
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a gate; expected one of {', '.join(GATES_BY_FIELD)}")
    return GateSpec(gate_on=gate_on, **{
        g.field: parse_threshold(text, g.flag, g.allows_negative, g.is_rate)
        for g in GATES if (text := thresholds.get(g.field)) is not None})


def gate_settings(spec: GateSpec) -> dict[str, str | float | None]:
    """Return what ``spec`` asks for, as a report records it: ``gate_on``, then every gate by its
    option name without dashes (the names of ``GateResult``), its threshold or None when not set."""
    return {"gate_on": spec.gate_on} | {g.name: getattr(spec, g.field) for g in GATES}


def gates_set(spec: GateSpec) -> bool:
    """True when ``spec`` sets at least one gate."""
    return any(getattr(spec, g.field) is not None for g in GATES)


@dataclass(frozen=True)
class GateResult:
    """One evaluated gate. ``value`` is what was compared (``None`` if undefined)."""

    name: str  # as the CLI option, e.g. "max-nfr"
    threshold: float
    value: float | None
    passed: bool
    detail: str  # one line for people: what was compared and why it failed

    def as_dict(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "value": self.value,
                "passed": self.passed}


def failed_gates(results: list[GateResult]) -> list[str]:
    """Return the names of the gates in ``results`` that failed, in order."""
    return [g.name for g in results if not g.passed]


def _pick(rate: Rate, gate_on: str, end: int) -> tuple[float | None, str]:
    """The number a gate compares, and how it is described. ``end``: 0 lower, 1 upper."""
    if rate.value is None:
        return None, "undefined (zero denominator)"
    if gate_on == "value":
        return rate.value, "value"
    if rate.ci95 is None:
        return None, "no 95% interval"
    return rate.ci95[end], "95% CI " + ("lower" if end == 0 else "upper") + " end"


def _result(name: str, threshold: float, value: float | None, how: str, maximum: bool,
            what: str = "", percent: bool = True) -> GateResult:
    subject = f"{what} " if what else ""
    if value is None:
        return GateResult(name, threshold, None, False, f"{subject}{how}: the gate fails")
    passed = value <= threshold if maximum else value >= threshold
    if maximum:
        sign = "<=" if passed else "> allowed"
    else:
        sign = ">=" if passed else "< required"
    fmt = "{:.3%}" if percent else "{:.4f}"
    shown = f"{fmt.format(value)} {sign} {fmt.format(threshold)}"
    return GateResult(name, threshold, value, passed, f"{subject}{how} {shown}")


def evaluate_gates(summary: FlipSummary, per_class: list[ClassRow],
                   spec: GateSpec) -> list[GateResult]:
    """Evaluate every gate set in ``spec``, in the order of ``GATES``."""
    results = []
    for gate in GATES:
        threshold = getattr(spec, gate.field)
        if threshold is not None:
            value, how, what = gate.measure(summary, list(per_class), spec.gate_on)
            results.append(_result(gate.name, threshold, value, how, gate.maximum, what, percent=gate.is_rate))
    return results
