"""Drawing one sweep series or the KL curves on a matplotlib axes, shared by the per-series
plots (``saeval.analysis.plots``) and the summary figure (``saeval.analysis.summary_figure``).

Every panel names the metric by its name, draws the strength axis logarithmically when the
strengths are geometric, cuts CIs at a metric's bounds and draws the capability margin only on
bounded metrics of tasks that are not targets. distinct-2 and the repetition rate are not drawn
for generations shorter than ``MIN_TEXT_TOKENS`` tokens on average (``skipped_measures``).
"""

from __future__ import annotations

from typing import Any

from saeval.analysis.figure_style import (
    BOUNDED,
    MIN_TEXT_TOKENS,
    PERPLEXITIES,
    TEXT_MEASURES,
    TaskFacts,
    base_metric,
    bounded_limits,
    interval_bars,
    metric_name,
    strength_axis,
)
from saeval.analysis.margins import EQUIVALENCE
from saeval.analysis.sweep import Sweep, SweepSeries

BASELINE_STYLE = {"color": "0.25", "linestyle": "--", "linewidth": 1.0}
MARGIN_COLOR = "0.9"
DPI = 150


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def skipped_measures(result: Sweep, facts: TaskFacts) -> list[str]:
    """One sentence per task whose distinct-2 and repetition plots are left out."""
    found: dict[str, float] = {task: tokens for task, _, tokens in short_text_measures(result)}
    return [
        f"{facts.title(task)}: distinct-2 and repetition not plotted (generations of "
        f"{tokens:.1f} tokens on average; they mean little under {MIN_TEXT_TOKENS:g})"
        for task, tokens in found.items()
    ]


def short_text_measures(result: Sweep) -> list[tuple[str, str, float]]:
    """(task, metric, mean tokens) of the text measures of tasks with short generations."""
    lengths = {s.task: s.baseline for s in result.series if base_metric(s.metric) == "gen_tokens"}
    return [
        (series.task, series.metric, lengths[series.task])
        for series in result.series
        if base_metric(series.metric) in TEXT_MEASURES
        and lengths.get(series.task, 0.0) < MIN_TEXT_TOKENS
    ]


def draw_series(axes: Any, series: SweepSeries, result: Sweep, facts: TaskFacts) -> None:
    """One series on ``axes``: the baseline, the margin band where it applies, and the steered
    values with the paired CI of their change (cut at the metric's bounds)."""
    confidence = 1.0 - result.alpha
    metric = base_metric(series.metric)
    axes.axhline(series.baseline, label="baseline", **BASELINE_STYLE)
    if metric in BOUNDED and series.task not in facts.targets:
        margin = series.margin.value
        low, high = _band(series, margin, two_sided=result.margins.test == EQUIVALENCE)
        label = f"capability margin ({margin:g})"
        axes.axhspan(max(low, 0.0), min(high, 1.0), color=MARGIN_COLOR, zorder=0, label=label)
    points = sorted(series.points, key=lambda point: point.scale)
    with_ci = [p for p in points if p.ci_low is not None and p.ci_high is not None]
    without = [p for p in points if p.ci_low is None or p.ci_high is None]
    axes.plot([p.scale for p in points], [p.value for p in points], "-", color="C0", alpha=0.5)
    if with_ci:  # the CI of the paired change, drawn around the baseline
        lows = [series.baseline + (p.ci_low or 0.0) for p in with_ci]
        highs = [series.baseline + (p.ci_high or 0.0) for p in with_ci]
        centres, halves = interval_bars(lows, highs, series.metric)
        label = f"unadjusted {confidence:.0%} paired CI of the change"
        axes.errorbar([p.scale for p in with_ci], centres, yerr=halves, fmt="none", ecolor="C0",
                      capsize=3, label=label)  # fmt: skip
        axes.plot([p.scale for p in with_ci], [p.value for p in with_ci], "o", color="C0",
                  label="steered")  # fmt: skip
    if without:
        axes.plot([p.scale for p in without], [p.value for p in without], "s", color="C0",
                  label="steered (no CI: corpus-level metric)")  # fmt: skip
    bounded_limits(axes, series.metric)
    if metric in PERPLEXITIES:
        axes.set_yscale("log")
    strength_axis(axes, [p.scale for p in points])
    axes.set_ylabel(metric_name(series.metric))


def _band(series: SweepSeries, margin: float, *, two_sided: bool) -> tuple[float, float]:
    """The margin band: a loss of up to ``margin`` in the metric's worse direction
    (non-inferiority), or ``margin`` either way (equivalence, or no known direction)."""
    if two_sided or series.higher_is_better is None:
        return series.baseline - margin, series.baseline + margin
    if series.higher_is_better is False:
        return series.baseline, series.baseline + margin
    return series.baseline - margin, series.baseline


def legend_entries(panels: list[Any]) -> tuple[list[Any], list[str]]:
    """Each label of ``panels`` once (the first panel that has it), for a figure legend."""
    found: dict[str, Any] = {}
    for panel in panels:
        for handle, label in zip(*panel.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    return list(found.values()), list(found)


def kl_tasks(result: Sweep) -> list[str]:
    """The tasks with KL measured at some strength, in order."""
    return list(dict.fromkeys(s.task for s in result.series if any(p.kl for p in s.points)))


def draw_kl(axes: Any, result: Sweep, tasks: list[str], facts: TaskFacts) -> None:
    """KL(unsteered || steered) per token against strength, one line per task, with its CI."""
    first = {series.task: series for series in reversed(result.series)}
    scales: list[float] = []
    for index, task in enumerate(tasks):
        points = sorted((p for p in first[task].points if p.kl), key=lambda p: p.scale)
        kls = [float(p.kl or 0.0) for p in points]
        lows = [p.kl_ci_low for p in points]
        highs = [p.kl_ci_high for p in points]
        cut_lows = [k if low is None else low for k, low in zip(kls, lows, strict=True)]
        cut_highs = [k if high is None else high for k, high in zip(kls, highs, strict=True)]
        centres, halves = interval_bars(cut_lows, cut_highs, "kl")
        x = [p.scale for p in points]
        scales += x
        axes.errorbar(x, centres, yerr=halves, fmt="none", ecolor=f"C{index}", capsize=3)
        axes.plot(x, kls, "o-", color=f"C{index}", label=facts.title(task))
    axes.axhline(0.0, label="baseline (0)", **BASELINE_STYLE)
    strength_axis(axes, scales)
    axes.set_ylabel("KL(unsteered ‖ steered), nats/token")
    axes.legend(fontsize="x-small", title=f"{1 - result.alpha:.0%} CI over documents",
                title_fontsize="x-small")  # fmt: skip
