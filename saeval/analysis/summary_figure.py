"""The one figure of a sweep a paper can use as it is: target tasks first, then capability tasks,
one panel each with its main metric against strength, and KL to the unsteered model in the last
panel; a footnote says what the intervals are and what was left out.

The main metric of a task is the first of ``MAIN_METRICS`` it has (else its first metric);
every other metric keeps its own plot (``saeval.analysis.plots``).
"""

from __future__ import annotations

import math
from pathlib import Path

from saeval.analysis.figure_style import TaskFacts, base_metric, model_title
from saeval.analysis.sweep import Sweep, SweepSeries
from saeval.analysis.sweep_panels import (
    DPI,
    draw_kl,
    draw_series,
    kl_tasks,
    legend_entries,
    pyplot,
    skipped_measures,
)

SUMMARY_FILE = "summary.png"
MAIN_METRICS = ("acc", "exact_match", "bits_per_byte", "word_perplexity", "gen_ppl")
PANEL_SIZE = (3.6, 2.9)
COLUMNS = 3


def main_series(result: Sweep, facts: TaskFacts) -> list[SweepSeries]:
    """One series per task (its main metric), target tasks first, in the sweep's order."""
    by_task: dict[str, list[SweepSeries]] = {}
    for series in result.series:
        by_task.setdefault(series.task, []).append(series)
    chosen = [min(found, key=_rank) for found in by_task.values()]
    return sorted(chosen, key=lambda series: series.task not in facts.targets)


def _rank(series: SweepSeries) -> int:
    metric = base_metric(series.metric)
    return MAIN_METRICS.index(metric) if metric in MAIN_METRICS else len(MAIN_METRICS)


def plot_summary(result: Sweep, directory: Path, facts: TaskFacts) -> Path:
    """Write ``summary.png`` into ``directory``; its path."""
    plt = pyplot()
    series = main_series(result, facts)
    kl = kl_tasks(result)
    panels = len(series) + (1 if kl else 0) + 1  # the last one holds the legend
    columns = min(COLUMNS, panels)
    rows = math.ceil(panels / columns)
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.9),
        layout="constrained",
        squeeze=False,
    )
    axes = list(grid.flat)
    for panel, one in zip(axes, series, strict=False):
        draw_series(panel, one, result, facts)
        role = "target" if one.task in facts.targets else "capability" if facts.targets else ""
        panel.set_title(_title(facts.titled(one.task), role), fontsize="small")
    if kl:
        draw_kl(axes[len(series)], result, kl, facts)
        axes[len(series)].set_title("KL to the unsteered model", fontsize="small")
    legend = axes[panels - 1]
    legend.axis("off")
    legend.legend(*legend_entries(axes[: len(series)]), loc="center", fontsize="small",
                  frameon=False)  # fmt: skip
    for unused in axes[panels:]:
        unused.set_visible(False)
    figure.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))  # left, bottom, width, height
    figure.text(0.01, 0.01, _footnote(result, facts), fontsize="x-small", va="bottom", wrap=True)
    path = directory / SUMMARY_FILE
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _title(name: str, role: str) -> str:
    return f"{role}: {name}" if role else name


def _footnote(result: Sweep, facts: TaskFacts) -> str:
    """What the bars and bands are, and what the figure leaves out."""
    confidence = f"{1 - result.alpha:.0%}"
    parts = [
        f"Steering {model_title(result.baseline.model_name)}. Bars: unadjusted {confidence} CI "
        "of the paired change from the baseline (same documents), "
        "cut at the metric's bounds; dashed: baseline; grey band: capability margin "
        f"({result.margin:g}, bounded metrics only); KL bars: {confidence} CI over documents.",
        *skipped_measures(result, facts),
    ]
    return "\n".join(parts)
