"""Paired and unpaired tests for comparing two evaluations of the same documents (scipy).

Differences are always `b - a` (steered minus baseline). 0/1 metrics get an exact McNemar test
on the discordant pairs and the interval that inverts it; continuous ones a paired t-test and its
t interval (a sign test when every difference is the same, where t has no variance to work
with); Holm's step-down adjusts p-values. Every interval is unadjusted (1 - alpha per row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

MCNEMAR = "McNemar"
PAIRED_T = "paired t"
SIGN = "sign"
EXACT_INTERVAL = "exact McNemar"  # Clopper-Pearson on the discordant pairs, see mcnemar_interval
T_INTERVAL = "t"


@dataclass(frozen=True)
class PairedSummary:
    """Mean of per-document differences d = b - a, its standard error sd(d)/sqrt(n) and t CI."""

    n: int
    mean: float
    se: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: a binomial test on the discordant pairs, with the flip counts."""

    right_to_wrong: int
    wrong_to_right: int
    p: float


@dataclass(frozen=True)
class UnpairedZ:
    """A z test on two independent estimates: delta / sqrt(se_a^2 + se_b^2)."""

    delta: float
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples need equal 1-d shapes, got {x.shape} and {y.shape}")
    return x, y


def is_binary(values: ArrayLike) -> bool:
    """Whether every value is 0 or 1 (accuracy-like metrics)."""
    array = np.asarray(values, dtype=float)
    return bool(np.isin(array, (0.0, 1.0)).all())


def paired_summary(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> PairedSummary:
    """Mean difference b - a with sd(d)/sqrt(n) and a t-distribution confidence interval."""
    x, y = _pair(a, b)
    d = y - x
    n = int(d.size)
    if n == 0:
        raise ValueError("no paired documents")
    mean = float(d.mean())
    if n < 2:
        return PairedSummary(n=n, mean=mean, se=None, ci_low=None, ci_high=None)
    se = float(stats.sem(d))
    if se == 0.0:
        return PairedSummary(n=n, mean=mean, se=0.0, ci_low=mean, ci_high=mean)
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=se)
    return PairedSummary(n=n, mean=mean, se=se, ci_low=float(low), ci_high=float(high))


def mcnemar_exact(a: ArrayLike, b: ArrayLike) -> McNemar:
    """Exact two-sided McNemar test of paired 0/1 outcomes (scipy binomtest on discordant pairs)."""
    x, y = _pair(a, b)
    if not (is_binary(x) and is_binary(y)):
        raise ValueError("McNemar's test needs 0/1 outcomes")
    right_to_wrong = int(np.sum((x == 1) & (y == 0)))
    wrong_to_right = int(np.sum((x == 0) & (y == 1)))
    discordant = right_to_wrong + wrong_to_right
    p = 1.0 if discordant == 0 else float(stats.binomtest(wrong_to_right, discordant).pvalue)
    return McNemar(right_to_wrong=right_to_wrong, wrong_to_right=wrong_to_right, p=p)


def paired_t(a: ArrayLike, b: ArrayLike) -> float | None:
    """Two-sided p of a paired t-test (scipy ttest_rel); with no variance (every difference the
    same) the exact sign test instead: 1 for all zero, 2 / 2^n for n equal non-zero differences."""
    x, y = _pair(a, b)
    if x.size < 2:
        return None
    d = y - x
    if np.all(d == d[0]):  # ttest_rel would return nan (all zero) or an infinite t
        return 1.0 if d[0] == 0 else float(stats.binomtest(int(d.size), int(d.size)).pvalue)
    return float(stats.ttest_rel(y, x).pvalue)


def rate_upper(count: int, n: int, confidence: float = 0.95) -> float:
    """Clopper-Pearson upper limit of a rate with ``count`` of ``n`` (two-sided ``confidence``)."""
    return float(stats.binomtest(count, n).proportion_ci(confidence, method="exact").high)


def mcnemar_interval(
    right_to_wrong: int, wrong_to_right: int, n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """The interval of delta = (wrong_to_right - right_to_wrong) / n that inverts the exact
    McNemar test, so it excludes 0 exactly when that test's p < 1 - confidence.

    Conditional on the m discordant documents, wrong_to_right ~ Binomial(m, pi) and
    delta = (m / n)(2 pi - 1); a Clopper-Pearson interval for pi maps into [-m/n, m/n]. Where
    the data put the conditional bound at its extreme (no flip one way: pi's limit is 0 or 1),
    that side takes the Clopper-Pearson upper limit of the discordance rate m / n instead (the
    most delta could be), so m = 0 gives [-u, u] rather than a certain [0, 0]. Within [-1, 1].
    """
    m = right_to_wrong + wrong_to_right
    outer = rate_upper(m, n, confidence)
    if m == 0:
        return -outer, outer
    pi = stats.binomtest(wrong_to_right, m).proportion_ci(confidence, method="exact")
    low = -outer if wrong_to_right == 0 else m / n * (2 * pi.low - 1)
    high = outer if right_to_wrong == 0 else m / n * (2 * pi.high - 1)
    return float(low), float(high)


def mcnemar_margin_p(right_to_wrong: int, wrong_to_right: int, n: int, margin: float) -> float:
    """One-sided exact p of H0 "delta <= -margin" for paired 0/1 outcomes (delta as in
    ``mcnemar_interval``; for "delta >= +margin" swap the two counts).

    Conditional on the m discordant documents this is the binomial test of
    pi <= (1 - margin n / m) / 2 (the dual of ``mcnemar_interval``'s lower limit). When the
    flips cannot reach the margin (m <= margin n) or none went the good way, the conditional
    test has nothing to say, so the test is of the right->wrong rate: delta <= -margin needs a
    rate of at least margin, so p = P(Binomial(n, margin) <= right_to_wrong).
    """
    m = right_to_wrong + wrong_to_right
    if margin <= 0:
        return 1.0
    if m <= margin * n or wrong_to_right == 0:
        return float(stats.binom.cdf(right_to_wrong, n, min(margin, 1.0)))
    pi0 = (1 - margin * n / m) / 2
    return float(stats.binom.sf(wrong_to_right - 1, m, pi0))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(value) for value in adjusted]


@dataclass(frozen=True)
class PairedTest:
    """Everything one paired comparison reports: the mean difference b - a over n documents,
    its standard error, an interval that agrees with the test (``interval`` names it: exact
    McNemar or t; None where none is honest), the test, its two-sided p and the flip counts."""

    summary: PairedSummary
    ci_low: float | None
    ci_high: float | None
    interval: str
    test: str
    p: float | None
    right_to_wrong: int | None = None
    wrong_to_right: int | None = None


def paired_test(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> PairedTest:
    """Exact McNemar with its inverted interval for 0/1 outcomes; otherwise the paired t-test
    with its t interval, or, when every difference is the same, the sign test and no interval."""
    summary = paired_summary(a, b, confidence)
    if is_binary(a) and is_binary(b):
        test = mcnemar_exact(a, b)
        low, high = mcnemar_interval(
            test.right_to_wrong, test.wrong_to_right, summary.n, confidence
        )
        return PairedTest(
            summary, low, high, EXACT_INTERVAL, MCNEMAR, test.p,
            test.right_to_wrong, test.wrong_to_right,
        )  # fmt: skip
    if summary.se == 0.0:
        return PairedTest(summary, None, None, "", SIGN, paired_t(a, b))
    name = T_INTERVAL if summary.ci_low is not None else ""
    return PairedTest(summary, summary.ci_low, summary.ci_high, name, PAIRED_T, paired_t(a, b))


def unpaired_z(a: float, se_a: float, b: float, se_b: float, confidence: float = 0.95) -> UnpairedZ:
    """Two-sided z test of b - a for independent estimates with standard errors se_a, se_b."""
    delta = b - a
    se = float(np.hypot(se_a, se_b))
    if se == 0.0:
        z = 0.0 if delta == 0 else math.copysign(math.inf, delta)
        p = 1.0 if delta == 0 else 0.0
        return UnpairedZ(delta=delta, se=0.0, z=z, p=p, ci_low=delta, ci_high=delta)
    z = delta / se
    p = float(2 * stats.norm.sf(abs(z)))
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * se
    return UnpairedZ(delta=delta, se=se, z=z, p=p, ci_low=delta - half, ci_high=delta + half)
