"""Regression metrics between an old and a new classifier: pure functions over arrays.

Definitions follow docs/ci-gate.md (metrics glossary) exactly. Per sample, ``o`` = old correct and
``n`` = new correct; over N samples:

- ER (old/new): share of samples wrong
- NFR: ``#(o and not n) / N``           (negative flips, regressions)
- PFR: ``#(not o and n) / N``           (positive flips, fixes)
- relative NFR: ``NFR / ((1 - ER_old) * ER_new)``
- NFI: ``NFR / ER_new`` = ``#negative flips / #new wrong``
- BTC: ``#(o and n) / #o``
- BEC: ``#(not o and not n) / #(not o)``

Rules: counts are pooled over the whole set; a rate whose denominator is zero is
*undefined* (``value=None``), never 0.

Intervals (``Rate.ci95``), all at 95 %:

- plain proportions (ER, NFR, PFR, BTC, BEC, NFI, per-class rates): Wilson score
  interval of ``numerator / denominator``. NFI is a plain proportion: the share
  of the new model's errors that are negative flips.
- relative NFR is a ratio of rates, not a proportion. Its interval is NFI's
  Wilson interval divided by ``1 - ER_old``, since
  ``rel_nfr = NFI * N / #old_correct``; like NFI's interval it is conditional on
  the number of new errors and of old-correct samples (they are held fixed).
  ``Rate.numerator / Rate.denominator`` for relative NFR are the exact integers
  ``negative_flips * N`` and ``old_correct * new_wrong``.

Everything is vectorised; the only loops are over fixed-size chunks of rows of
a ``[N, C]`` logits array, so that no full-size temporary is ever made
(1,000,000 x 100 float32 logits = 400 MB; see ``bench/bench_flip_report.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: two-sided 95 % standard normal quantile, used by every interval here
Z95 = 1.959963984540054

#: quantile levels of the margin analysis
MARGIN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

#: rows of logits processed at a time: 65,536 x 100 float32 = 26 MB of temporaries
CHUNK_ROWS = 65_536


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rate:
    """A rate with the counts behind it.

    ``value`` is ``numerator / denominator``, or ``None`` when the denominator is
    zero (undefined, never reported as 0). ``ci95`` is the 95 % interval
    ``(lo, hi)``, ``None`` where undefined.
    """

    value: float | None
    numerator: int
    denominator: int
    ci95: tuple[float, float] | None


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``successes / trials``; ``None`` when ``trials == 0``.

    ``centre = (p + z²/2n) / (1 + z²/n)``, ``half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)``.
    """
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} outside [0, trials={trials}]")
    n = float(trials)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # Exact ends at p = 0 or 1 (the formula gives them up to rounding).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return (lo, hi)


def proportion(successes: int, trials: int) -> Rate:
    """``successes / trials`` with its Wilson interval; undefined when ``trials == 0``."""
    successes, trials = int(successes), int(trials)
    if trials == 0:
        return Rate(None, successes, 0, None)
    return Rate(successes / trials, successes, trials, wilson_interval(successes, trials))


# --------------------------------------------------------------------------- masks


def correct_mask(preds: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``preds == targets`` as bool ``[N]``."""
    return np.asarray(preds) == np.asarray(targets)


def flip_masks(
    old_preds: np.ndarray, new_preds: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(negative, positive)`` flip masks, bool ``[N]`` each.

    negative: old correct and new wrong; positive: old wrong and new correct.
    """
    old_ok = correct_mask(old_preds, targets)
    new_ok = correct_mask(new_preds, targets)
    return old_ok & ~new_ok, ~old_ok & new_ok


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class FlipCounts:
    """Pooled counts of the 2x2 table (old correct?) x (new correct?)."""

    n: int
    old_correct: int
    new_correct: int
    negative_flips: int
    positive_flips: int

    @property
    def both_correct(self) -> int:
        return self.old_correct - self.negative_flips

    @property
    def both_wrong(self) -> int:
        return self.n - self.old_correct - self.positive_flips

    @property
    def old_wrong(self) -> int:
        return self.n - self.old_correct

    @property
    def new_wrong(self) -> int:
        return self.n - self.new_correct

    def as_dict(self) -> dict[str, int]:
        return {
            "n": self.n,
            "old_correct": self.old_correct,
            "new_correct": self.new_correct,
            "negative_flips": self.negative_flips,
            "positive_flips": self.positive_flips,
        }


@dataclass(frozen=True)
class FlipSummary:
    """Every rate of the metrics glossary (docs/ci-gate.md) with counts and intervals, plus McNemar's p."""

    counts: FlipCounts
    er_old: Rate
    er_new: Rate
    nfr: Rate
    pfr: Rate
    rel_nfr: Rate
    nfi: Rate
    btc: Rate
    bec: Rate
    mcnemar_p: float

    #: names of the rates, in report order (also the JSON keys)
    RATE_NAMES = ("er_old", "er_new", "nfr", "pfr", "rel_nfr", "nfi", "btc", "bec")

    def rates(self) -> dict[str, Rate]:
        return {name: getattr(self, name) for name in self.RATE_NAMES}


def flip_counts(old_preds: np.ndarray, new_preds: np.ndarray, targets: np.ndarray) -> FlipCounts:
    """Pooled 2x2 counts from label arrays ``[N]`` (all the same length)."""
    old_preds, new_preds, targets = (np.asarray(a) for a in (old_preds, new_preds, targets))
    if not (old_preds.shape == new_preds.shape == targets.shape) or targets.ndim != 1:
        raise ValueError(
            f"shapes differ: old {old_preds.shape}, new {new_preds.shape}, "
            f"targets {targets.shape}; expected three equal [N] arrays"
        )
    old_ok = old_preds == targets
    new_ok = new_preds == targets
    return FlipCounts(
        n=int(targets.size),
        old_correct=int(np.count_nonzero(old_ok)),
        new_correct=int(np.count_nonzero(new_ok)),
        negative_flips=int(np.count_nonzero(old_ok & ~new_ok)),
        positive_flips=int(np.count_nonzero(~old_ok & new_ok)),
    )


def relative_nfr(counts: FlipCounts) -> Rate:
    """``NFR / ((1 - ER_old) * ER_new)`` = ``nf * N / (old_correct * new_wrong)``.

    Undefined when nothing was right before or nothing is wrong now. Interval:
    NFI's Wilson interval scaled by ``N / old_correct`` (see module docstring).
    """
    numerator = counts.negative_flips * counts.n
    denominator = counts.old_correct * counts.new_wrong
    if denominator == 0:
        return Rate(None, numerator, 0, None)
    nfi_ci = wilson_interval(counts.negative_flips, counts.new_wrong)
    assert nfi_ci is not None  # new_wrong > 0 here
    scale = counts.n / counts.old_correct
    return Rate(numerator / denominator, numerator, denominator,
                (nfi_ci[0] * scale, nfi_ci[1] * scale))


def summary_from_counts(counts: FlipCounts) -> FlipSummary:
    """All rates of the metrics glossary (docs/ci-gate.md) from pooled counts."""
    c = counts
    return FlipSummary(
        counts=c,
        er_old=proportion(c.old_wrong, c.n),
        er_new=proportion(c.new_wrong, c.n),
        nfr=proportion(c.negative_flips, c.n),
        pfr=proportion(c.positive_flips, c.n),
        rel_nfr=relative_nfr(c),
        nfi=proportion(c.negative_flips, c.new_wrong),
        btc=proportion(c.both_correct, c.old_correct),
        bec=proportion(c.both_wrong, c.old_wrong),
        mcnemar_p=mcnemar_exact_p(c.negative_flips, c.positive_flips),
    )


def flip_summary(old_preds: np.ndarray, new_preds: np.ndarray, targets: np.ndarray) -> FlipSummary:
    """Counts, rates with Wilson intervals and McNemar's p for one old/new pair.

    ``old_preds``, ``new_preds``, ``targets``: integer ``[N]``, aligned by sample.
    """
    return summary_from_counts(flip_counts(old_preds, new_preds, targets))


# --------------------------------------------------------------------------- tests


def _log_binom_cdf_half(k: int, n: int) -> float:
    """``log P(X <= k)`` for ``X ~ Bin(n, 1/2)``, summed in log space.

    ``log C(n, j)`` is built as a cumulative sum of ``log((n - j + 1) / j)``, so
    nothing over- or underflows even for n in the millions.
    """
    if k >= n:
        return 0.0
    j = np.arange(1, k + 1, dtype=np.float64)
    log_choose = np.concatenate(([0.0], np.cumsum(np.log(n - j + 1.0) - np.log(j))))
    top = log_choose.max()
    return float(top + np.log(np.exp(log_choose - top).sum()) - n * math.log(2.0))


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value on the discordant counts ``b`` and ``c``.

    ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Bin(b + c, 1/2)``; ``b + c = 0``
    gives 1.0 (no evidence of any difference).
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    log_p = math.log(2.0) + _log_binom_cdf_half(min(b, c), n)
    return 1.0 if log_p >= 0.0 else math.exp(log_p)


@dataclass(frozen=True)
class PairedTest:
    """Exact paired test of two indicator vectors, e.g. do candidates ``a`` and ``b`` differ in negative flips
    on the same samples?

    ``a_only``: samples where only ``a`` is set (only candidate ``a`` flips); ``b_only`` likewise.
    """

    a_only: int
    b_only: int
    p_value: float
    a: str = "a"  # what the indicators belong to, for a report
    b: str = "b"


def paired_exact_test(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> PairedTest:
    """McNemar's exact test on bool ``[N]`` indicators ``a`` and ``b`` of the same samples (``names``: theirs)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"indicator shapes differ: {a.shape} vs {b.shape}")
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    return PairedTest(only_a, only_b, mcnemar_exact_p(only_a, only_b), *names)


def error_rate_increase(counts: FlipCounts) -> tuple[float | None, tuple[float, float] | None]:
    """``ER_new - ER_old`` and its 95 % interval for paired data.

    The difference is ``(negative_flips - positive_flips) / N``. Interval:
    Newcombe's (1998) hybrid score interval for paired proportions (method 10:
    Wilson intervals of the two marginals combined with the phi correlation of
    the 2x2 table, no continuity correction). ``(None, None)`` when ``N == 0``.
    """
    c = counts
    if c.n == 0:
        return None, None
    # 2x2 table of "wrong": a = both wrong, b = only new wrong, cc = only old wrong.
    a, b, cc, d = c.both_wrong, c.negative_flips, c.positive_flips, c.both_correct
    p1, p2 = c.new_wrong / c.n, c.old_wrong / c.n
    l1, u1 = wilson_interval(c.new_wrong, c.n)  # type: ignore[misc]  # n > 0 here: an interval exists
    l2, u2 = wilson_interval(c.old_wrong, c.n)  # type: ignore[misc]  # n > 0 here: an interval exists
    margins = float(a + b) * float(cc + d) * float(a + cc) * float(b + d)
    phi = 0.0 if margins == 0 else (a * d - b * cc) / math.sqrt(margins)
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return diff, (max(-1.0, diff - delta), min(1.0, diff + eps))


# --------------------------------------------------------------------------- per class


@dataclass(frozen=True)
class ClassRow:
    """Flip counts and rates of the samples whose *true* class is ``index``."""

    index: int
    name: str | None
    n: int
    old_correct: int
    new_correct: int
    negative_flips: int
    positive_flips: int
    old_acc: Rate
    new_acc: Rate
    nfr: Rate  # negative flips / samples of this class


def per_class_table(
    old_preds: np.ndarray,
    new_preds: np.ndarray,
    targets: np.ndarray,
    num_classes: int,
    classes: list[str] | None = None,
) -> list[ClassRow]:
    """One row per class ``0..num_classes-1`` (grouped by true class), in class order.

    A class with no samples has all rates undefined.
    """
    targets = np.asarray(targets)
    old_ok = np.asarray(old_preds) == targets
    new_ok = np.asarray(new_preds) == targets

    def count(mask: np.ndarray | None) -> np.ndarray:
        chosen = targets if mask is None else targets[mask]
        return np.bincount(chosen, minlength=num_classes)[:num_classes]

    n_k = count(None)
    old_k = count(old_ok)
    new_k = count(new_ok)
    neg_k = count(old_ok & ~new_ok)
    pos_k = count(~old_ok & new_ok)
    rows = []
    for k in range(num_classes):  # loop over classes, not samples
        n, o, w, nf, pf = (int(v[k]) for v in (n_k, old_k, new_k, neg_k, pos_k))
        rows.append(ClassRow(
            index=k,
            name=classes[k] if classes is not None else None,
            n=n, old_correct=o, new_correct=w, negative_flips=nf, positive_flips=pf,
            old_acc=proportion(o, n), new_acc=proportion(w, n), nfr=proportion(nf, n),
        ))
    return rows


@dataclass(frozen=True)
class FlipPair:
    """``count`` negative flips with true class ``true_class`` and new prediction ``new_pred``."""

    true_class: int
    new_pred: int
    count: int
    share: float  # of all negative flips


def top_flip_pairs(
    old_preds: np.ndarray, new_preds: np.ndarray, targets: np.ndarray, k: int = 10
) -> list[FlipPair]:
    """The ``k`` most frequent (true class -> new prediction) pairs among negative flips.

    Sorted by count (descending), then true class, then new prediction.
    """
    targets = np.asarray(targets)
    new_preds = np.asarray(new_preds)
    negative, _ = flip_masks(old_preds, new_preds, targets)
    total = int(np.count_nonzero(negative))
    if total == 0:
        return []
    true_class = targets[negative].astype(np.int64)
    new_pred = new_preds[negative].astype(np.int64)
    width = int(new_pred.max()) + 1
    # one integer key per pair; np.unique sorts keys, i.e. by (true class, new prediction)
    keys, counts = np.unique(true_class * width + new_pred, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:k]
    return [
        FlipPair(int(keys[i] // width), int(keys[i] % width), int(counts[i]),
                 int(counts[i]) / total)
        for i in order
    ]


# --------------------------------------------------------------------------- margins


def top1_margin(logits: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """``top1 - top2`` of each row of float ``[N, C]`` logits (C >= 2) -> float32 ``[N]``.

    Works on row chunks in the logits' own dtype, so no [N, C] temporary is made.
    """
    n, c = logits.shape
    if c < 2:
        raise ValueError(f"a top-1 margin needs at least 2 classes, got {c}")
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, chunk_rows):
        top2 = np.partition(logits[start:start + chunk_rows], c - 2, axis=1)[:, c - 2:]
        out[start:start + chunk_rows] = top2[:, 1] - top2[:, 0]
    return out


def logit_change(old_logits: np.ndarray, new_logits: np.ndarray,
                 chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Euclidean (L2) norm of ``new - old`` per row of two ``[N, C]`` arrays -> float32 ``[N]``.

    L2 rather than max-abs: it counts every class that moved, which is what the
    LDI loss penalises (a sum over classes of per-class differences).
    """
    if old_logits.shape != new_logits.shape:
        raise ValueError(f"logit shapes differ: {old_logits.shape} vs {new_logits.shape}")
    out = np.empty(old_logits.shape[0], dtype=np.float32)
    for start in range(0, old_logits.shape[0], chunk_rows):
        diff = new_logits[start:start + chunk_rows] - old_logits[start:start + chunk_rows]
        out[start:start + chunk_rows] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


@dataclass(frozen=True)
class Histogram:
    """Counts of one quantity over shared ``edges`` (``len(edges) == bins + 1``).

    The last bin also holds every value above the last edge (edges stop at the
    99th percentile of all samples so that a long tail does not squash the plot).
    """

    edges: tuple[float, ...]
    all_counts: tuple[int, ...]
    flip_counts: tuple[int, ...]


@dataclass(frozen=True)
class QuantityAnalysis:
    """Quantiles (levels ``MARGIN_QUANTILES``) over all samples and over negative flips."""

    quantiles: tuple[float, ...]
    all: tuple[float, ...]
    negative_flips: tuple[float, ...] | None  # None when there are no negative flips
    histogram: Histogram


@dataclass(frozen=True)
class MarginAnalysis:
    """Whether negative flips sit near the old model's decision boundary.

    ``old_margin``: old model's top-1 minus top-2 logit. ``logit_change``: L2 norm
    of new minus old logits.
    """

    old_margin: QuantityAnalysis
    logit_change: QuantityAnalysis


def _quantity_analysis(values: np.ndarray, negative: np.ndarray, bins: int) -> QuantityAnalysis:
    levels = np.asarray(MARGIN_QUANTILES)
    flips = values[negative]
    lo = float(values.min())
    hi = float(np.quantile(values, 0.99))
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)

    def hist(v: np.ndarray) -> tuple[int, ...]:
        counts, _ = np.histogram(np.minimum(v, hi), bins=edges)
        return tuple(int(x) for x in counts)

    return QuantityAnalysis(
        quantiles=tuple(float(q) for q in levels),
        all=tuple(float(x) for x in np.quantile(values, levels)),
        negative_flips=tuple(float(x) for x in np.quantile(flips, levels)) if flips.size else None,
        histogram=Histogram(tuple(float(e) for e in edges), hist(values), hist(flips)),
    )


def margin_analysis(
    old_logits: np.ndarray,
    new_logits: np.ndarray,
    targets: np.ndarray,
    old_preds: np.ndarray | None = None,
    new_preds: np.ndarray | None = None,
    bins: int = 30,
) -> MarginAnalysis:
    """Old top-1 margin and L2 logit change, for negative flips vs all samples.

    ``old_logits``, ``new_logits``: float ``[N, C]``; ``targets``: int ``[N]``;
    predictions default to the logits' argmax.
    """
    if old_preds is None:
        old_preds = old_logits.argmax(axis=1)
    if new_preds is None:
        new_preds = new_logits.argmax(axis=1)
    negative, _ = flip_masks(old_preds, new_preds, targets)
    return MarginAnalysis(
        old_margin=_quantity_analysis(top1_margin(old_logits), negative, bins),
        logit_change=_quantity_analysis(logit_change(old_logits, new_logits), negative, bins),
    )


# --------------------------------------------------------------------------- Pareto


def pareto_front(points: list[tuple[float | None, float | None]]) -> list[bool]:
    """Which (error rate, NFR) points no other point dominates (both to be minimised).

    A point is dominated when another is <= on both and < on one. Points with an
    undefined coordinate are never on the front. Equal points are all on it.
    """
    result = []
    for i, (e_i, f_i) in enumerate(points):
        if e_i is None or f_i is None:
            result.append(False)
            continue
        dominated = any(
            e_j is not None and f_j is not None
            and e_j <= e_i and f_j <= f_i and (e_j < e_i or f_j < f_i)
            for j, (e_j, f_j) in enumerate(points) if j != i
        )
        result.append(not dominated)
    return result
