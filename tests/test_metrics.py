"""modelupdate.metrics against hand-computed cases (arithmetic in the comments)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from modelupdate.metrics import (
    FlipCounts,
    error_rate_increase,
    flip_counts,
    flip_masks,
    flip_summary,
    logit_change,
    margin_analysis,
    mcnemar_exact_p,
    paired_exact_test,
    pareto_front,
    per_class_table,
    proportion,
    summary_from_counts,
    top1_margin,
    top_flip_pairs,
    wilson_interval,
)

# Ten samples, three classes. Columns: target, old prediction, new prediction.
#   0: 0 0 0  both correct          5: 2 2 0  negative flip (2 -> 0)
#   1: 1 1 1  both correct          6: 0 1 0  positive flip
#   2: 2 2 2  both correct          7: 1 0 2  both wrong
#   3: 0 0 0  both correct          8: 2 0 1  both wrong
#   4: 1 1 2  negative flip (1->2)  9: 0 2 2  both wrong
TARGETS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
OLD = np.array([0, 1, 2, 0, 1, 2, 1, 0, 0, 2])
NEW = np.array([0, 1, 2, 0, 2, 0, 0, 2, 1, 2])


# --------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        # z = 1.959964, z^2 = 3.841459
        # 2/10: z2/n = 0.384146, denom = 1.384146, centre = (0.2 + 0.192073)/denom = 0.283260,
        #       half = z/denom * sqrt(0.2*0.8/10 + z2/400) = 1.416011 * 0.160011 = 0.226578
        (2, 10, 0.056682, 0.509838),
        # 5/10: centre 0.5, half = 1.416011 * sqrt(0.025 + 0.009604) = 1.416010 * 0.186021
        (5, 10, 0.236593, 0.763407),
        # 4/10: centre = (0.4 + 0.192073)/1.384146 = 0.427753,
        #       half = 1.416011 * sqrt(0.024 + 0.009604) = 1.416011 * 0.183313 = 0.259573
        (4, 10, 0.168180, 0.687326),
        # 0/10: lo = 0 exactly, hi = (z2/n) / (1 + z2/n) = 0.384146 / 1.384146 = 0.277533
        (0, 10, 0.0, 0.277533),
        # 10/10: mirror image of 0/10
        (10, 10, 0.722467, 1.0),
        # 2/5: z2/n = 0.768292, denom 1.768292, centre = (0.4 + 0.384146)/denom = 0.443449,
        #      half = 1.108394 * sqrt(0.048 + 0.038415) = 1.108394 * 0.293964 = 0.325828
        (2, 5, 0.117621, 0.769277),
    ],
)
def test_wilson_interval_matches_hand_computed(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=2e-6)


def test_wilson_interval_undefined_and_invalid():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_proportion_zero_denominator_is_undefined_not_zero():
    rate = proportion(0, 0)
    assert rate.value is None and rate.ci95 is None
    assert (rate.numerator, rate.denominator) == (0, 0)


# --------------------------------------------------------------------------- summary


def test_flip_masks_hand_case():
    negative, positive = flip_masks(OLD, NEW, TARGETS)
    assert np.flatnonzero(negative).tolist() == [4, 5]
    assert np.flatnonzero(positive).tolist() == [6]


def test_flip_summary_hand_case():
    s = flip_summary(OLD, NEW, TARGETS)
    # both correct 4 (0-3), negative 2 (4, 5), positive 1 (6), both wrong 3 (7-9)
    assert s.counts == FlipCounts(n=10, old_correct=6, new_correct=5, negative_flips=2,
                                  positive_flips=1)
    assert s.er_old.value == pytest.approx(0.4)  # 4 old errors / 10
    assert s.er_new.value == pytest.approx(0.5)  # 5 new errors / 10
    assert s.nfr.value == pytest.approx(0.2)  # 2 / 10
    assert s.pfr.value == pytest.approx(0.1)  # 1 / 10
    # rel NFR = 0.2 / ((1 - 0.4) * 0.5) = 0.2 / 0.3 = 2/3; as integers 2*10 / (6*5) = 20/30
    assert s.rel_nfr.value == pytest.approx(2 / 3)
    assert (s.rel_nfr.numerator, s.rel_nfr.denominator) == (20, 30)
    # NFI = 0.2 / 0.5 = 2 negative flips / 5 new errors
    assert s.nfi.value == pytest.approx(0.4)
    assert (s.nfi.numerator, s.nfi.denominator) == (2, 5)
    # BTC = both correct / old correct = 4/6; BEC = both wrong / old wrong = 3/4
    assert s.btc.value == pytest.approx(4 / 6)
    assert (s.btc.numerator, s.btc.denominator) == (4, 6)
    assert s.bec.value == pytest.approx(0.75)
    assert (s.bec.numerator, s.bec.denominator) == (3, 4)
    # McNemar b=2, c=1: X ~ Bin(3, 1/2), P(X <= 1) = (1 + 3)/8 = 0.5 -> p = min(1, 1.0) = 1
    assert s.mcnemar_p == 1.0
    # intervals: NFR Wilson(2, 10); NFI Wilson(2, 5); rel NFR = Wilson(2, 5) * 10/6
    assert s.nfr.ci95 == pytest.approx((0.056682, 0.509838), abs=2e-6)
    assert s.nfi.ci95 == pytest.approx((0.117621, 0.769277), abs=2e-6)
    assert s.rel_nfr.ci95 == pytest.approx((0.117621 * 10 / 6, 0.769277 * 10 / 6), abs=5e-6)


def test_old_all_wrong_makes_btc_and_rel_nfr_undefined():
    # old never right: #o = 0 -> BTC = 0/0 undefined; rel NFR has (1 - ER_old) = 0 below
    s = flip_summary(old_preds=np.array([1, 1, 1]), new_preds=np.array([0, 1, 1]),
                     targets=np.array([0, 0, 0]))
    assert s.btc.value is None and s.btc.ci95 is None and s.btc.denominator == 0
    assert s.rel_nfr.value is None and s.rel_nfr.ci95 is None
    assert s.er_old.value == 1.0
    # NFI: 0 negative flips / 2 new errors = 0, defined (a real zero)
    assert s.nfi.value == 0.0
    # BEC: both wrong 2 / old wrong 3
    assert s.bec.value == pytest.approx(2 / 3)


def test_old_all_right_makes_bec_undefined():
    s = flip_summary(np.array([0, 1, 2]), np.array([0, 2, 2]), np.array([0, 1, 2]))
    assert s.bec.value is None and s.bec.ci95 is None and s.bec.denominator == 0
    assert s.btc.value == pytest.approx(2 / 3)  # kept 2 of 3
    assert s.er_old.value == 0.0  # defined, a real zero


def test_new_without_errors_makes_rel_nfr_and_nfi_undefined():
    s = flip_summary(np.array([1, 1, 2]), np.array([0, 1, 2]), np.array([0, 1, 2]))
    assert s.er_new.value == 0.0
    assert s.rel_nfr.value is None and s.rel_nfr.ci95 is None
    assert s.nfi.value is None and s.nfi.ci95 is None
    assert s.nfr.value == 0.0 and s.pfr.value == pytest.approx(1 / 3)


def test_empty_set_has_every_rate_undefined():
    empty = np.array([], dtype=np.int64)
    s = flip_summary(empty, empty, empty)
    assert all(rate.value is None for rate in s.rates().values())
    assert s.mcnemar_p == 1.0


def test_flip_counts_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        flip_counts(np.zeros(3), np.zeros(2), np.zeros(3))


def test_pooled_counts_not_average_of_batches():
    # Two "batches": 1 flip in 1 sample, 0 flips in 9 samples. Averaging per-batch NFR
    # would give (1.0 + 0.0)/2 = 0.5; the pooled NFR is 1/10.
    targets = np.zeros(10, dtype=int)
    old = np.zeros(10, dtype=int)
    new = np.array([1] + [0] * 9)
    assert flip_summary(old, new, targets).nfr.value == pytest.approx(0.1)


# --------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 0, 1.0),  # no discordant pairs: no evidence
        (5, 0, 0.0625),  # 2 * P(X <= 0 | n=5) = 2/32
        (0, 5, 0.0625),  # symmetric
        (10, 2, 158 / 4096),  # 2 * (C(12,0)+C(12,1)+C(12,2))/2^12 = 2*79/4096 = 0.038574
        (3, 3, 1.0),  # 2 * P(X <= 3 | n=6) = 2 * 42/64 > 1 -> 1
        (1, 0, 1.0),  # 2 * P(X <= 0 | n=1) = 2 * 1/2 = 1
        (6, 1, 0.125),  # 2 * (1 + 7)/128 = 16/128
    ],
)
def test_mcnemar_known_binomial_values(b, c, expected):
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_large_counts_against_exact_fractions():
    # b=600, c=400: exact 2 * sum_{k<=400} C(1000, k) / 2^1000 with integer arithmetic
    exact = Fraction(2 * sum(math.comb(1000, k) for k in range(401)), 2**1000)
    assert mcnemar_exact_p(600, 400) == pytest.approx(float(exact), rel=1e-9)
    assert 1e-12 < float(exact) < 1e-9  # a tail that naive float math would lose


def test_mcnemar_stable_for_millions():
    assert mcnemar_exact_p(1_000_000, 1_000_000) == 1.0
    p = mcnemar_exact_p(1_001_000, 1_000_000)
    assert 0.0 < p <= 1.0
    assert mcnemar_exact_p(2_000_000, 0) == 0.0  # 2 * 2^-2e6 underflows to 0, no error


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def test_paired_exact_test_counts_discordant_samples():
    a = np.array([1, 1, 0, 0, 1], dtype=bool)
    b = np.array([0, 1, 1, 1, 1], dtype=bool)
    test = paired_exact_test(a, b)
    # only a: sample 0; only b: samples 2, 3 -> 2 * P(X <= 1 | n=3) = 2 * 4/8 = 1
    assert (test.a_only, test.b_only, test.p_value, test.a, test.b) == (1, 2, 1.0, "a", "b")


# --------------------------------------------------------------------------- ER increase


def test_error_rate_increase_newcombe_hand_case():
    counts = flip_counts(OLD, NEW, TARGETS)
    diff, ci = error_rate_increase(counts)
    # ER_new - ER_old = (2 - 1)/10 = 0.1
    assert diff == pytest.approx(0.1)
    # Wilson(5,10) = [0.236593, 0.763407]; Wilson(4,10) = [0.168180, 0.687326]
    # phi = (a*d - b*c)/sqrt((a+b)(c+d)(a+c)(b+d)), a=3 both wrong, b=2, c=1, d=4 both right
    #     = (12 - 2)/sqrt(5*5*4*6) = 10/24.494897 = 0.408248
    # delta = sqrt(0.263407^2 - 2*phi*0.263407*0.287326 + 0.287326^2)
    #       = sqrt(0.069383 - 0.061794 + 0.082556) = sqrt(0.090145) = 0.300242
    # eps   = sqrt(0.263407^2 - 2*phi*0.263407*0.231820 + 0.231820^2)
    #       = sqrt(0.069383 - 0.049857 + 0.053741) = sqrt(0.073267) = 0.270679
    assert ci == pytest.approx((0.1 - 0.300242, 0.1 + 0.270679), abs=1e-5)


def test_error_rate_increase_undefined_without_samples():
    assert error_rate_increase(FlipCounts(0, 0, 0, 0, 0)) == (None, None)


# --------------------------------------------------------------------------- per class


def test_per_class_table_hand_case_with_an_empty_class():
    rows = per_class_table(OLD, NEW, TARGETS, num_classes=4, classes=["a", "b", "c", "d"])
    # class 0: samples 0,3,6,9; old right 0,3; new right 0,3,6; positive flip 6
    r0 = rows[0]
    assert (r0.n, r0.old_correct, r0.new_correct, r0.negative_flips, r0.positive_flips) == \
        (4, 2, 3, 0, 1)
    assert r0.nfr.value == 0.0 and r0.old_acc.value == 0.5 and r0.new_acc.value == 0.75
    # class 1: samples 1,4,7; old right 1,4; new right 1; negative flip 4 -> NFR 1/3
    r1 = rows[1]
    assert (r1.n, r1.old_correct, r1.new_correct, r1.negative_flips, r1.positive_flips) == \
        (3, 2, 1, 1, 0)
    assert r1.nfr.value == pytest.approx(1 / 3)
    # class 2: samples 2,5,8; negative flip 5
    assert (rows[2].negative_flips, rows[2].nfr.value) == (1, pytest.approx(1 / 3))
    # class 3 has no samples: every rate undefined, never 0
    r3 = rows[3]
    assert r3.n == 0 and r3.name == "d"
    assert r3.old_acc.value is None and r3.new_acc.value is None and r3.nfr.value is None


def test_top_flip_pairs_sorted_by_count_then_classes():
    pairs = top_flip_pairs(OLD, NEW, TARGETS)
    # one flip each: (1 -> 2) then (2 -> 0), ordered by true class on a tie
    assert [(p.true_class, p.new_pred, p.count, p.share) for p in pairs] == \
        [(1, 2, 1, 0.5), (2, 0, 1, 0.5)]
    targets = np.array([3, 3, 3, 1, 1, 0])
    old = targets.copy()
    new = np.array([2, 2, 0, 0, 0, 1])
    pairs = top_flip_pairs(old, new, targets, k=2)
    # (3->2) x2, (1->0) x2, (3->0) x1, (0->1) x1: ties broken by (true, pred) ascending
    assert [(p.true_class, p.new_pred, p.count) for p in pairs] == [(1, 0, 2), (3, 2, 2)]


def test_top_flip_pairs_empty_without_negative_flips():
    assert top_flip_pairs(TARGETS, TARGETS, TARGETS) == []


# --------------------------------------------------------------------------- margins


def test_top1_margin_and_logit_change_by_hand():
    old = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5]], dtype=np.float32)
    new = np.array([[0.0, 1.0, 3.0], [0.0, 2.0, 1.5]], dtype=np.float32)
    # margins: 3 - 1 = 2; 2 - 1.5 = 0.5
    assert top1_margin(old).tolist() == [2.0, 0.5]
    # L2 change: sqrt(3^2 + 0 + 3^2) = sqrt(18); second row unchanged
    assert logit_change(old, new) == pytest.approx([math.sqrt(18), 0.0])
    assert top1_margin(old).dtype == np.float32


def test_margin_functions_chunking_does_not_change_results():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 5)).astype(np.float32)
    b = rng.standard_normal((37, 5)).astype(np.float32)
    assert np.array_equal(top1_margin(a, chunk_rows=4), top1_margin(a))
    assert np.allclose(logit_change(a, b, chunk_rows=3), logit_change(a, b))


def test_margin_analysis_quantiles_for_flips_and_all():
    # 4 samples, 2 classes, all targets 0. old right on 0,1,2; new wrong on 0 and 3.
    old = np.array([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    new = np.array([[0.0, 1.0], [2.0, 0.0], [4.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    targets = np.zeros(4, dtype=np.int64)
    m = margin_analysis(old, new, targets)
    # old margins [1, 2, 4, 1]; the only negative flip is sample 0 (margin 1)
    # median of [1, 1, 2, 4] = 1.5
    assert m.old_margin.all[2] == pytest.approx(1.5)
    assert m.old_margin.negative_flips == pytest.approx((1.0,) * 5)
    # logit change: sample 0 moves by sqrt(1 + 1) = 1.414214, the rest by 0
    assert m.logit_change.negative_flips == pytest.approx((math.sqrt(2),) * 5)
    assert sum(m.old_margin.histogram.all_counts) == 4
    assert sum(m.old_margin.histogram.flip_counts) == 1


def test_margin_analysis_without_negative_flips():
    logits = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    m = margin_analysis(logits, logits, np.array([0, 1]))
    assert m.old_margin.negative_flips is None
    assert m.logit_change.all == (0.0,) * 5


# --------------------------------------------------------------------------- Pareto


def test_pareto_front_minimises_error_and_nfr():
    points = [(0.10, 0.05), (0.20, 0.01), (0.15, 0.06), (0.10, 0.05), (None, 0.0)]
    # (0.15, 0.06) is dominated by (0.10, 0.05); equal points both stay; undefined never on it
    assert pareto_front(points) == [True, True, False, True, False]


def test_summary_from_counts_equals_flip_summary():
    assert summary_from_counts(flip_counts(OLD, NEW, TARGETS)) == flip_summary(OLD, NEW, TARGETS)
