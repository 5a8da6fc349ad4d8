"""Margins of "is this strength safe": which test, and how big a change counts, per metric.

Two tests on a delta's (unadjusted, 1 - alpha) interval, each a level alpha/2 test:

- non-inferiority (the default): no drop beyond the margin, one-sided: the interval's lower
  limit lies above -margin (where lower is better: its upper limit below +margin);
- equivalence (two one-sided tests, TOST): no change beyond the margin either way: the whole
  interval lies inside (-margin, +margin).

Metrics bounded in [0, 1] (acc, exact_match, distinct_2, ...) take an absolute margin; unbounded
ones (perplexities, bits per byte, gen_ppl) take a relative one, a fraction of the baseline's
value, so 0.02 is never applied to a perplexity in the thousands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats as sps

from saeval.analysis import stats
from saeval.analysis.compare import ComparisonRow
from saeval.analysis.defaults import (
    DEFAULT_MARGIN,
    DEFAULT_RELATIVE_MARGIN,
    EQUIVALENCE,
    NONINFERIORITY,
    check_margin,
    check_margin_test,
    check_relative_margin,
)

UNBOUNDED = frozenset(
    {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "gen_ppl"}
)


@dataclass(frozen=True)
class Margin:
    """The margin one (task, metric) gets: its absolute size and how it was set."""

    value: float
    relative: bool  # a fraction of the baseline's value (unbounded metrics)
    fraction: float | None = None  # the fraction, when relative


@dataclass(frozen=True)
class MarginTest:
    """The settings: the test and the margins for bounded and unbounded metrics."""

    absolute: float = DEFAULT_MARGIN
    relative: float = DEFAULT_RELATIVE_MARGIN
    test: str = NONINFERIORITY

    def __post_init__(self) -> None:
        check_margin(self.absolute)
        check_relative_margin(self.relative)
        check_margin_test(self.test)

    def for_metric(self, metric: str, baseline: float, values: Iterable[float]) -> Margin:
        """Absolute for a metric whose values all lie in [0, 1], else relative to ``baseline``."""
        name = metric.partition(",")[0]
        if name not in UNBOUNDED and all(0.0 <= v <= 1.0 for v in (baseline, *values)):
            return Margin(self.absolute, relative=False)
        return Margin(self.relative * abs(baseline), relative=True, fraction=self.relative)

    def passes(
        self,
        ci_low: float | None,
        ci_high: float | None,
        higher_is_better: bool | None,
        margin: float,
    ) -> bool | None:
        """Whether an interval of the delta passes the test (None without an interval); with the
        direction unknown, non-inferiority needs both sides, as equivalence does."""
        if ci_low is None or ci_high is None:
            return None
        if self.test == EQUIVALENCE or higher_is_better is None:
            return -margin < ci_low and ci_high < margin
        return ci_low > -margin if higher_is_better else ci_high < margin

    def phrase(self, margin: Margin, higher_is_better: bool | None) -> str:
        """``with no drop beyond 0.02``, ``with no rise beyond 5% of baseline (52.1)`` or
        ``equivalent within ±0.02``, for "largest scale ..." in reports."""
        size = f"{margin.value:.4g}"
        if margin.relative:
            size = f"{margin.fraction:.0%} of baseline ({margin.value:.4g})"
        if self.test == EQUIVALENCE:
            return f"equivalent within ±{size}"
        if higher_is_better is None:
            return f"within ±{size} (direction unknown)"
        return f"with no {'drop' if higher_is_better else 'rise'} beyond {size}"


def non_inferiority_p(row: ComparisonRow, margin: float) -> float | None:
    """One-sided p of H0 "the metric got worse by ``margin`` or more": exact for 0/1 metrics
    (``stats.mcnemar_margin_p``), else a paired t on the documents (None when every difference
    is the same: no variance to test with); both directions, the larger p, when the metric's
    direction is unknown."""
    sides = [True, False] if row.higher_is_better is None else [row.higher_is_better]
    worse, better, n = row.right_to_wrong, row.wrong_to_right, row.n_paired
    if worse is not None and better is not None and n is not None:
        found = [
            stats.mcnemar_margin_p(worse, better, n, margin)
            if higher
            else stats.mcnemar_margin_p(better, worse, n, margin)
            for higher in sides
        ]
        return max(found)
    if not row.se or n is None or row.ci_low is None or row.ci_high is None:
        return None
    mean = (row.ci_low + row.ci_high) / 2  # the paired mean difference (t interval's centre)
    distances = [mean + margin if higher else margin - mean for higher in sides]
    return max(float(sps.t.sf(distance / row.se, df=n - 1)) for distance in distances)
