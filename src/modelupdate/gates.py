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
from dataclasses import dataclass

from modelupdate.config import GATE_ON_CHOICES, GateSpec
from modelupdate.errors import ConfigError
from modelupdate.metrics import ClassRow, FlipSummary, Rate, error_rate_increase

__all__ = ["GATE_ON_CHOICES", "GateResult", "GateSpec", "evaluate_gates", "failed_gates", "gate_settings",
           "gate_spec", "gates_set", "parse_threshold"]


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


def gate_spec(*, max_nfr: str | None = None, max_rel_nfr: str | None = None, max_er: str | None = None,
              max_er_increase: str | None = None, min_btc: str | None = None, max_class_nfr: str | None = None,
              gate_on: str = "value") -> GateSpec:
    """The gates of flip-report and compare from the thresholds as the user typed them (``"2%"``, ``"0.02"``)."""

    def value(flag: str, text: str | None, allow_negative: bool = False, rate: bool = True) -> float | None:
        return None if text is None else parse_threshold(text, flag, allow_negative, rate)

    return GateSpec(max_nfr=value("--max-nfr", max_nfr), max_rel_nfr=value("--max-rel-nfr", max_rel_nfr, rate=False),
                    max_er=value("--max-er", max_er), max_er_increase=value("--max-er-increase", max_er_increase, True),
                    min_btc=value("--min-btc", min_btc), max_class_nfr=value("--max-class-nfr", max_class_nfr),
                    gate_on=gate_on)


def gate_settings(spec: GateSpec) -> dict[str, str | float | None]:
    """Return what ``spec`` asks for, as a report records it: ``gate_on``, then every gate by its
    option name without dashes (the names of ``GateResult``), its threshold or None when not set."""
    return {"gate_on": spec.gate_on, "max-nfr": spec.max_nfr, "max-rel-nfr": spec.max_rel_nfr,
            "max-er": spec.max_er, "max-er-increase": spec.max_er_increase, "min-btc": spec.min_btc,
            "max-class-nfr": spec.max_class_nfr}


def gates_set(spec: GateSpec) -> bool:
    """True when ``spec`` sets at least one gate."""
    return any(v is not None for k, v in gate_settings(spec).items() if k != "gate_on")


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
    """Evaluate every gate set in ``spec``, in a fixed order."""
    on = spec.gate_on
    results: list[GateResult] = []
    for name, threshold, rate in (
        ("max-nfr", spec.max_nfr, summary.nfr),
        ("max-rel-nfr", spec.max_rel_nfr, summary.rel_nfr),
        ("max-er", spec.max_er, summary.er_new),
    ):
        if threshold is not None:
            value, how = _pick(rate, on, 1)
            results.append(_result(name, threshold, value, how, maximum=True,
                                   percent=name != "max-rel-nfr"))

    if spec.max_er_increase is not None:
        diff, ci = error_rate_increase(summary.counts)
        if on == "value" or diff is None:
            value, how = diff, "value" if diff is not None else "undefined (no samples)"
        else:
            value, how = ci[1], "95% CI upper end"  # type: ignore[index]
        results.append(_result("max-er-increase", spec.max_er_increase, value, how, maximum=True))

    if spec.min_btc is not None:
        value, how = _pick(summary.btc, on, 0)
        results.append(_result("min-btc", spec.min_btc, value, how, maximum=False))

    if spec.max_class_nfr is not None:
        # classes without samples have no NFR and cannot regress: they are skipped
        worst: tuple[float, ClassRow] | None = None
        for row in per_class:
            value, _ = _pick(row.nfr, on, 1)
            if value is not None and (worst is None or value > worst[0]):
                worst = (value, row)
        if worst is None:
            results.append(_result("max-class-nfr", spec.max_class_nfr, None,
                                   "undefined (no class has samples)", maximum=True))
        else:
            value, row = worst
            label = f"class {row.index}" + (f" ({row.name})" if row.name else "")
            how = "value" if on == "value" else "95% CI upper end"
            results.append(_result("max-class-nfr", spec.max_class_nfr, value, how,
                                   maximum=True, what=f"worst {label}"))
    return results
