"""Gates: threshold parsing and evaluation on value / interval ends."""

from __future__ import annotations

import numpy as np
import pytest

from modelupdate.errors import ConfigError
from modelupdate.gates import GateSpec, evaluate_gates, parse_threshold
from modelupdate.metrics import flip_summary, per_class_table

# Same ten samples as test_metrics: N=10, old correct 6, new correct 5, 2 negative flips,
# 1 positive flip. NFR = 0.2 (Wilson [0.056682, 0.509838]); BTC = 4/6 (Wilson
# [0.299993, 0.903229]); per-class NFR: class 0 0/4, class 1 1/3, class 2 1/3.
TARGETS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
OLD = np.array([0, 1, 2, 0, 1, 2, 1, 0, 0, 2])
NEW = np.array([0, 1, 2, 0, 2, 0, 0, 2, 1, 2])
SUMMARY = flip_summary(OLD, NEW, TARGETS)
PER_CLASS = per_class_table(OLD, NEW, TARGETS, 3, ["a", "b", "c"])


@pytest.mark.parametrize(
    ("text", "value"),
    [("2%", 0.02), ("0.02", 0.02), (" 2.5 % ", 0.025), ("0", 0.0), ("100%", 1.0), (0.1, 0.1)],
)
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("two", "cannot read 'two'"), ("", "cannot read ''"), ("nan", "not finite"),
     ("-1%", "is negative"), ("%", "cannot read")],
)
def test_parse_threshold_errors_are_one_line(text, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_threshold(text, name="max-nfr")
    assert str(info.value).startswith("max-nfr: ")


def test_parse_threshold_negative_allowed_for_er_increase():
    assert parse_threshold("-0.5%", allow_negative=True) == pytest.approx(-0.005)


def test_gate_on_must_be_value_or_upper():
    with pytest.raises(ConfigError, match="gate-on"):
        GateSpec(gate_on="lower")


def test_gates_on_value():
    gates = evaluate_gates(SUMMARY, PER_CLASS, GateSpec(
        max_nfr=0.2, max_rel_nfr=0.6, max_er=0.5, max_er_increase=0.1, min_btc=0.7,
        max_class_nfr=0.34))
    got = {g.name: (g.value, g.passed) for g in gates}
    assert got["max-nfr"] == (pytest.approx(0.2), True)  # 0.2 <= 0.2
    assert got["max-rel-nfr"] == (pytest.approx(2 / 3), False)  # 0.667 > 0.6
    assert got["max-er"] == (pytest.approx(0.5), True)
    assert got["max-er-increase"] == (pytest.approx(0.1), True)  # 0.5 - 0.4
    assert got["min-btc"] == (pytest.approx(4 / 6), False)  # 0.667 < 0.7
    assert got["max-class-nfr"] == (pytest.approx(1 / 3), True)  # worst class 1/3
    assert [g.name for g in gates] == ["max-nfr", "max-rel-nfr", "max-er", "max-er-increase",
                                       "min-btc", "max-class-nfr"]
    worst = next(g for g in gates if g.name == "max-class-nfr")
    assert "worst class 1 (b)" in worst.detail
    assert gates[0].as_dict() == {"name": "max-nfr", "threshold": 0.2,
                                  "value": pytest.approx(0.2), "passed": True}


def test_gates_on_upper_use_pessimistic_interval_end():
    gates = evaluate_gates(SUMMARY, PER_CLASS, GateSpec(
        max_nfr=0.5, min_btc=0.3, max_er_increase=0.3, gate_on="upper"))
    got = {g.name: g for g in gates}
    # NFR upper end 0.509838 > 0.5 fails although the value 0.2 passes
    assert got["max-nfr"].value == pytest.approx(0.509838, abs=1e-6)
    assert not got["max-nfr"].passed
    assert "95% CI upper end" in got["max-nfr"].detail
    # BTC uses the *lower* end: Wilson(4, 6) lower = 0.299993 < 0.3
    assert got["min-btc"].value == pytest.approx(SUMMARY.btc.ci95[0])
    assert got["min-btc"].value < 0.3 and not got["min-btc"].passed
    assert "lower end" in got["min-btc"].detail
    # ER increase upper end: 0.1 + 0.270679 (Newcombe, see test_metrics) > 0.3
    assert got["max-er-increase"].value == pytest.approx(0.370679, abs=1e-5)
    assert not got["max-er-increase"].passed


def test_gate_on_undefined_value_fails_and_says_so():
    # new model makes no errors: relative NFR undefined; old model always right: BEC n/a
    summary = flip_summary(np.array([1, 1]), np.array([0, 1]), np.array([0, 1]))
    per_class = per_class_table(np.array([1, 1]), np.array([0, 1]), np.array([0, 1]), 2)
    [gate] = evaluate_gates(summary, per_class, GateSpec(max_rel_nfr=10.0))
    assert gate.value is None and not gate.passed
    assert "undefined" in gate.detail and "fails" in gate.detail
    # old never right: BTC undefined
    summary = flip_summary(np.array([1, 1]), np.array([0, 1]), np.array([0, 0]))
    [gate] = evaluate_gates(summary, per_class, GateSpec(min_btc=0.0, gate_on="upper"))
    assert gate.value is None and not gate.passed


def test_class_nfr_skips_classes_without_samples():
    per_class = per_class_table(OLD, NEW, TARGETS, 5)  # classes 3, 4 have no samples
    [gate] = evaluate_gates(SUMMARY, per_class, GateSpec(max_class_nfr=0.5))
    assert gate.passed and gate.value == pytest.approx(1 / 3)


def test_no_gates():
    assert evaluate_gates(SUMMARY, PER_CLASS, GateSpec()) == []


def test_gate_spec_from_the_thresholds_as_typed():
    from modelupdate.gates import gate_spec

    spec = gate_spec(max_nfr="2%", max_rel_nfr="1.5", max_er_increase="-0.5%", min_btc="0.9", gate_on="upper")
    assert spec == GateSpec(max_nfr=0.02, max_rel_nfr=1.5, max_er_increase=-0.005, min_btc=0.9, gate_on="upper")
    with pytest.raises(ConfigError, match="--max-er 2: did you mean 2% or 0.02"):
        gate_spec(max_er="2")


def test_gate_settings_name_every_gate_as_its_option():
    from modelupdate.gates import gate_settings, gates_set

    spec = GateSpec(max_nfr=0.02, min_btc=0.9, gate_on="upper")
    assert gate_settings(spec) == {"gate_on": "upper", "max-nfr": 0.02, "max-rel-nfr": None, "max-er": None,
                                   "max-er-increase": None, "min-btc": 0.9, "max-class-nfr": None, "max-nfi": None}
    # the names are those of the evaluated gates, in the same order
    every = GateSpec(max_nfr=1, max_rel_nfr=9, max_er=1, max_er_increase=1, min_btc=0, max_class_nfr=1, max_nfi=1)
    assert [k for k in gate_settings(every) if k != "gate_on"] == \
        [g.name for g in evaluate_gates(SUMMARY, PER_CLASS, every)]
    assert gates_set(spec) and not gates_set(GateSpec(gate_on="upper"))
    assert gates_set(GateSpec(max_er_increase=0.0))  # a zero threshold is still a gate


def test_failed_gates_in_order():
    from modelupdate.gates import failed_gates

    gates = evaluate_gates(SUMMARY, PER_CLASS, GateSpec(max_nfr=0.1, max_er=0.5, min_btc=0.7))
    assert failed_gates(gates) == ["max-nfr", "min-btc"]  # 0.2 > 0.1; 0.5 <= 0.5; 0.667 < 0.7
    assert failed_gates([]) == []


@pytest.mark.parametrize("text", ["1", "1.0", " 1 "])
def test_a_bare_one_is_refused_as_the_typo_of_one_percent(text):
    with pytest.raises(ConfigError, match="did you mean .*% or 0.01"):
        parse_threshold(text, name="--max-nfr")
    assert parse_threshold("100%") == 1.0 and parse_threshold("1", rate=False) == 1.0  # relative NFR: a ratio
    with pytest.raises(ConfigError, match="below -100%"):
        parse_threshold("-150%", name="--max-er-increase", allow_negative=True)


def test_max_nfi_gates_the_share_of_new_errors_that_are_regressions():
    # 2 negative flips among the new model's 5 errors: NFI = 0.4; Wilson's upper end
    # (0.4 + z²/10 + z·sqrt(0.048 + z²/100)) / (1 + z²/5) = 0.769276
    [gate] = evaluate_gates(SUMMARY, PER_CLASS, GateSpec(max_nfi=0.4))
    assert (gate.name, gate.value, gate.passed) == ("max-nfi", pytest.approx(0.4), True)
    assert "40.000% <= 40.000%" in gate.detail
    [gate] = evaluate_gates(SUMMARY, PER_CLASS, GateSpec(max_nfi=0.5, gate_on="upper"))
    assert gate.value == pytest.approx(0.769276, abs=1e-6) and not gate.passed


def test_every_gate_of_the_table_is_a_spec_field_an_option_and_an_api_keyword():
    import dataclasses

    from modelupdate import api
    from modelupdate.cli.options import GATE_OPTIONS
    from modelupdate.gates import GATES, gate_spec

    fields = [f.name for f in dataclasses.fields(GateSpec) if f.name != "gate_on"]
    assert fields == [g.field for g in GATES]
    assert [o.param for o in GATE_OPTIONS.options] == fields + ["gate_on"]
    assert [o.flag.name for o in GATE_OPTIONS.options] == [g.flag for g in GATES] + ["--gate-on"]
    for gate in GATES:  # every gate parses as the API's keyword, and its option's error names the flag
        assert getattr(gate_spec(**{gate.field: "0.5"}), gate.field) == 0.5
        with pytest.raises(ConfigError, match=f"^{gate.flag}: cannot read 'x'"):
            api.check_gates(SUMMARY, PER_CLASS, **{gate.field: "x"})
    with pytest.raises(ConfigError, match="^max_nrf: not a gate; expected one of max_nfr, "):
        gate_spec(max_nrf="2%")
