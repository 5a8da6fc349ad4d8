"""Paired and unpaired tests for comparing two evaluations of the same documents (scipy).

Differences are always `b - a` (steered minus baseline). 0/1 metrics get an exact McNemar test
on the discordant pairs, continuous ones a paired t-test; Holm's step-down adjusts p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats


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
    """Two-sided p of a paired t-test (scipy ttest_rel); 1 when every difference is zero."""
    x, y = _pair(a, b)
    if x.size < 2:
        return None
    d = y - x
    if np.all(d == d[0]):  # no variance: ttest_rel would return nan (all zero) or warn
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_rel(y, x).pvalue)


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
