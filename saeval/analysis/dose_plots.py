"""Sweep plots against the measured dose instead of the strength: the same panel as
``sweep_<task>_<metric>.png`` (``saeval.analysis.sweep_panels.draw_series``), each strength placed
at its measured mean ``||h' - h|| / ||h||`` on the task's prompts (``saeval.analysis.dose``), so
that sweeps of different latents, actions or layers share one axis. Written as
``sweep_<task>_<metric>_dose.png`` for every series whose strengths all have a dose.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from saeval.analysis.figure_style import TaskFacts
from saeval.analysis.sweep import Sweep, SweepSeries
from saeval.analysis.sweep_panels import DPI, draw_series, legend_entries, pyplot

DOSE_AXIS = "dose: mean ||h' - h|| / ||h|| at the steered positions"


def dosed(series: SweepSeries) -> SweepSeries | None:
    """``series`` with each point's strength replaced by its measured dose (None unless every
    non-zero strength has one; a zero strength has dose 0)."""
    points = []
    for point in series.points:
        if point.scale == 0:
            points.append(replace(point, scale=0.0))
        elif point.dose is None:
            return None
        else:
            points.append(replace(point, scale=point.dose))
    return replace(series, points=tuple(points))


def plot_dose_axis(
    result: Sweep, directory: Path, facts: TaskFacts, paths: dict[tuple[str, str], Path]
) -> list[Path]:
    """One ``..._dose.png`` beside each per-series plot in ``paths`` ((task, metric) -> PNG)."""
    plt = pyplot()
    written = []
    for series in result.series:
        path = paths.get((series.task, series.metric))
        moved = dosed(series)
        if path is None or moved is None:
            continue
        figure, axes = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
        draw_series(axes, moved, result, facts)
        _dose_ticks(axes)
        axes.set_title(f"{facts.titled(series.task)} against the dose", fontsize="medium")
        figure.legend(*legend_entries([axes]), loc="outside lower center", ncols=2,
                      fontsize="x-small", frameon=False)  # fmt: skip
        target = path.with_name(f"{path.stem}_dose.png")
        figure.savefig(target, dpi=DPI)
        plt.close(figure)
        written.append(target)
    return written


def _dose_ticks(axes: Any) -> None:
    """The dose axis's label, and its tick labels (the doses, on a log axis) to 3 digits."""
    axes.set_xlabel(DOSE_AXIS)
    if axes.get_xscale() == "log":
        axes.set_xticklabels([f"{tick:.3g}" for tick in axes.get_xticks()])
