"""PNG plots of a sweep: one per (task, metric), value against strength with the paired CI, one
KL plot per task that measured it, and the run's summary figure
(``saeval.analysis.summary_figure``); each titled with the task's alias and n. How a panel is
drawn: ``saeval.analysis.sweep_panels``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from saeval.analysis.dose_plots import plot_dose_axis
from saeval.analysis.figure_style import TaskFacts
from saeval.analysis.summary_figure import plot_summary
from saeval.analysis.sweep import Sweep, SweepSeries
from saeval.analysis.sweep_panels import (
    DPI,
    draw_kl,
    draw_series,
    kl_tasks,
    legend_entries,
    pyplot,
    short_text_measures,
)


def plot_path(directory: Path, series: SweepSeries) -> Path:
    """Where `plot_sweep` writes one series: `sweep_<task>_<metric>.png`."""
    return _png(directory, f"sweep_{series.task}_{series.metric}")


def _png(directory: Path, stem: str) -> Path:
    """``directory/<stem>.png`` with every character a file name cannot hold made ``_``."""
    name = re.sub(r"[^\w.-]+", "_", stem)
    return directory / f"{name}.png"


def plot_sweep(result: Sweep, directory: Path, facts: TaskFacts | None = None) -> list[Path]:
    """Write one PNG per plotted (task, metric) (and one against the dose where it was measured),
    one KL PNG per task with KL, and summary.png."""
    facts = facts or TaskFacts()
    plt = pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    skipped = {(task, metric) for task, metric, _ in short_text_measures(result)}
    written = []
    plotted: dict[tuple[str, str], Path] = {}
    for series in result.series:
        if (series.task, series.metric) in skipped:
            continue
        figure, axes = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
        draw_series(axes, series, result, facts)
        axes.set_title(facts.titled(series.task), fontsize="medium")
        figure.legend(*legend_entries([axes]), loc="outside lower center", ncols=2,
                      fontsize="x-small", frameon=False)  # fmt: skip
        written.append(_save(figure, plot_path(directory, series), plt))
        plotted[(series.task, series.metric)] = written[-1]
    written += plot_dose_axis(result, directory, facts, plotted)  # the same, against the dose
    for task in kl_tasks(result):
        figure, axes = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
        draw_kl(axes, result, [task], facts)
        axes.set_title(f"{facts.titled(task)}: KL to the unsteered model", fontsize="medium")
        written.append(_save(figure, _png(directory, f"sweep_{task}_kl"), plt))
    return [*written, plot_summary(result, directory, facts)]


def _save(figure: Any, path: Path, plt: Any) -> Path:
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
