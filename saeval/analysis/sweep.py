"""Dose-response over steering strengths: one paired comparison per scale, Holm's correction over
every point of the sweep, and the largest strength that passes the margin test (non-inferiority
or equivalence, ``saeval.analysis.margins``) against the baseline (plots:
``saeval.analysis.plots``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from saeval.analysis import stats
from saeval.analysis.compare import Comparison, ComparisonRow, Side, compare
from saeval.analysis.defaults import DEFAULT_MARGIN, DEFAULT_RELATIVE_MARGIN
from saeval.analysis.margins import NONINFERIORITY, Margin, MarginTest
from saeval.analysis.results import ResultSet
from saeval.analysis.steerability import Steerability, steerability
from saeval.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SweepPoint:
    """One steering strength of one (task, metric): the value, its paired delta vs baseline with
    the (unadjusted) interval, the raw and the sweep-wide Holm p, and the margin test's verdict."""

    scale: float
    value: float
    stderr: float | None
    delta: float
    ci_low: float | None
    ci_high: float | None
    p: float | None
    test: str
    safe: bool | None  # the delta's interval passes the margin test
    p_holm: float | None = None  # Holm-adjusted over every point of the sweep
    interval: str = ""  # which interval (exact McNemar, t, z)
    kl: float | None = None  # KL(unsteered || steered) per token on the task's prompts
    kl_ci_low: float | None = None
    kl_ci_high: float | None = None
    dose: float | None = None  # mean ||h' - h|| / ||h|| at the steered positions of those prompts
    dose_p95: float | None = None


@dataclass(frozen=True)
class SweepSeries:
    """A (task, metric) across strengths, its margin and the largest strength passing the test.

    `largest_safe` is over the scales >= 0 and `largest_safe_negative` over the scales <= 0
    (the most negative safe one): a loss in one direction says nothing about the other.
    """

    task: str
    metric: str
    higher_is_better: bool | None
    baseline: float
    baseline_stderr: float | None
    points: tuple[SweepPoint, ...]
    largest_safe: float | None
    largest_safe_negative: float | None
    margin: Margin


@dataclass(frozen=True)
class Sweep:
    """A dose-response report: one series per (task, metric) in the baseline and every scale."""

    baseline: Side
    series: tuple[SweepSeries, ...]
    margins: MarginTest
    alpha: float
    notes: tuple[str, ...]
    steerability: tuple[Steerability, ...] = ()  # per multiple-choice task and sign of strength

    @property
    def margin(self) -> float:
        """The absolute margin of metrics bounded in [0, 1]."""
        return self.margins.absolute

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per (task, metric, scale), with the series' fields repeated."""
        records = []
        for series in self.series:
            head = {
                "task": series.task,
                "metric": series.metric,
                "higher_is_better": series.higher_is_better,
                "baseline": series.baseline,
                "baseline_stderr": series.baseline_stderr,
                "largest_safe": series.largest_safe,
                "largest_safe_negative": series.largest_safe_negative,
                "margin": series.margin.value,
                "margin_relative": series.margin.relative,
                "margin_test": self.margins.test,
            }
            records += [{**head, **asdict(point)} for point in series.points]
        return records

    def to_frame(self) -> pd.DataFrame:
        """The flat records as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.to_records())


def largest_safe(points: Sequence[SweepPoint], *, negative: bool = False) -> float | None:
    """The strongest scale of one sign such that it and every weaker one of that sign is safe.

    Safe means passing the margin test. Only scales >= 0 count (<= 0 with `negative`), so a failure
    at -2 does not stop +1.
    """
    same_sign = [point for point in points if (point.scale <= 0 if negative else point.scale >= 0)]
    safe = None
    for point in sorted(same_sign, key=lambda point: abs(point.scale)):
        if not point.safe:
            break
        safe = point.scale
    return safe


def sweep(
    baseline: ResultSet,
    steered: Mapping[float, ResultSet],
    *,
    metrics: Sequence[str] | None = None,
    margin: float = DEFAULT_MARGIN,
    relative_margin: float = DEFAULT_RELATIVE_MARGIN,
    margin_test: str = NONINFERIORITY,
    alpha: float = 0.05,
    any_model: bool = False,
) -> Sweep:
    """Compare the baseline with each steered scale and collect the dose-response series."""
    if not steered:
        raise UsageError("a sweep needs at least one steered configuration")
    margins = MarginTest(margin, relative_margin, margin_test)
    comparisons = {
        scale: compare(baseline, steered[scale], metrics=metrics, alpha=alpha, any_model=any_model)
        for scale in sorted(steered)
    }
    notes = list(dict.fromkeys(note for c in comparisons.values() for note in c.notes))
    series = _with_holm([_series(rows, margins) for rows in _rows_by_series(comparisons).values()])
    first = next(iter(comparisons.values()))
    return Sweep(
        baseline=first.a,
        series=tuple(series),
        margins=margins,
        alpha=alpha,
        notes=tuple(notes),
        steerability=tuple(steerability(baseline, steered, confidence=1.0 - alpha)),
    )


def _rows_by_series(
    comparisons: Mapping[float, Comparison],
) -> dict[tuple[str, str], list[tuple[float, ComparisonRow]]]:
    grouped: dict[tuple[str, str], list[tuple[float, ComparisonRow]]] = {}
    for scale, comparison in comparisons.items():
        for row in comparison.rows:
            grouped.setdefault((row.task, row.metric), []).append((scale, row))
    return grouped


def _series(rows: list[tuple[float, ComparisonRow]], margins: MarginTest) -> SweepSeries:
    first = rows[0][1]
    margin = margins.for_metric(first.key, first.a, (row.b for _, row in rows))
    points = tuple(
        SweepPoint(
            scale=scale,
            value=row.b,
            stderr=row.b_stderr,
            delta=row.delta,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            p=row.p,
            test=row.test,
            safe=margins.passes(row.ci_low, row.ci_high, row.higher_is_better, margin.value),
            interval=row.interval,
            kl=row.kl,
            kl_ci_low=row.kl_ci_low,
            kl_ci_high=row.kl_ci_high,
            dose=row.dose,
            dose_p95=row.dose_p95,
        )
        for scale, row in rows
    )
    return SweepSeries(
        task=first.task,
        metric=first.metric,
        higher_is_better=first.higher_is_better,
        baseline=first.a,
        baseline_stderr=first.a_stderr,
        points=points,
        largest_safe=largest_safe(points),
        largest_safe_negative=largest_safe(points, negative=True),
        margin=margin,
    )


def _with_holm(series: list[SweepSeries]) -> list[SweepSeries]:
    """Holm-adjust the p-values of every point of every series together (one family)."""
    found = [
        (i, j)
        for i, s in enumerate(series)
        for j, point in enumerate(s.points)
        if point.p is not None
    ]
    adjusted = stats.holm([series[i].points[j].p or 0.0 for i, j in found])
    points = [list(s.points) for s in series]
    for (i, j), p_holm in zip(found, adjusted, strict=True):
        points[i][j] = replace(points[i][j], p_holm=p_holm)
    return [replace(s, points=tuple(p)) for s, p in zip(series, points, strict=True)]
