"""The report of a run: one steered configuration gives a Comparison, several give a Sweep.

This is the one place that makes that choice (``saeval run`` and ``saeval compare`` both call
it); ``saeval.analysis.report_files`` writes a report into its run folder.
"""

from __future__ import annotations

from collections.abc import Sequence

from saeval.analysis.compare import Comparison, compare
from saeval.analysis.defaults import DEFAULT_ALPHA, DEFAULT_RELATIVE_MARGIN, NONINFERIORITY
from saeval.analysis.results import RunSides
from saeval.analysis.sweep import Sweep, sweep

Report = Comparison | Sweep


def build_report(
    sides: RunSides,
    *,
    margin: float,
    relative_margin: float = DEFAULT_RELATIVE_MARGIN,
    margin_test: str = NONINFERIORITY,
    metrics: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    any_model: bool = False,
) -> Report:
    """Baseline vs the steered configuration, or the sweep over every strength."""
    if len(sides.steered) == 1:
        (steered,) = sides.steered.values()
        return compare(sides.baseline, steered, metrics=metrics, alpha=alpha, any_model=any_model)
    return sweep(
        sides.baseline,
        sides.steered,
        metrics=metrics,
        margin=margin,
        relative_margin=relative_margin,
        margin_test=margin_test,
        alpha=alpha,
        any_model=any_model,
    )


def sweep_of(report: Report) -> Sweep | None:
    """The report as a sweep, or None for a single comparison."""
    return report if isinstance(report, Sweep) else None
