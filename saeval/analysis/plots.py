"""PNG plots of a sweep: one per (task, metric), value against strength with the paired CI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from saeval.analysis.margins import EQUIVALENCE
from saeval.analysis.sweep import Sweep, SweepSeries


def plot_path(directory: Path, series: SweepSeries) -> Path:
    """Where `plot_sweep` writes one series: `sweep_<task>_<metric>.png`."""
    return _png(directory, f"sweep_{series.task}_{series.metric}")


def _png(directory: Path, stem: str) -> Path:
    """``directory/<stem>.png`` with every character a file name cannot hold made ``_``."""
    name = re.sub(r"[^\w.-]+", "_", stem)
    return directory / f"{name}.png"


def plot_sweep(result: Sweep, directory: Path) -> list[Path]:
    """Write one PNG per (task, metric): value vs strength, CI error bars, baseline line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for series in result.series:
        figure, axes = plt.subplots(figsize=(5.0, 3.5), layout="constrained")
        two_sided = result.margins.test == EQUIVALENCE
        _draw(axes, series, series.margin.value, 1.0 - result.alpha, two_sided)
        path = plot_path(directory, series)
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written + _kl_plots(result, directory, plt)


def _kl_plots(result: Sweep, directory: Path, plt: Any) -> list[Path]:
    """One PNG per task with KL measured: KL(unsteered || steered) per token against strength,
    with its CI (the baseline is 0)."""
    written = []
    first = {series.task: series for series in reversed(result.series)}
    for task, series in sorted(first.items()):
        points = [(p.scale, p.kl, p.kl_ci_low, p.kl_ci_high) for p in series.points]
        measured = [(scale, kl, low or kl, high or kl) for scale, kl, low, high in points if kl]
        if not measured:
            continue
        figure, axes = plt.subplots(figsize=(5.0, 3.5), layout="constrained")
        scales, kls, lows, highs = (list(column) for column in zip(*measured, strict=True))
        errors = [[k - low for k, low in zip(kls, lows, strict=True)],
                  [high - k for k, high in zip(kls, highs, strict=True)]]  # fmt: skip
        axes.errorbar(scales, kls, yerr=errors, fmt="o-", capsize=3,
                      label=f"KL, {1 - result.alpha:.0%} CI")  # fmt: skip
        axes.axhline(0.0, color="0.3", linestyle="--", label="baseline")
        axes.set_xlabel("steering scale")
        axes.set_ylabel("KL(unsteered || steered), nats/token")
        axes.set_title(f"{task}: KL to the unsteered model")
        axes.legend(fontsize="small")
        path = _png(directory, f"sweep_{task}_kl")
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def _draw(
    axes: Any, series: SweepSeries, margin: float, confidence: float, two_sided: bool
) -> None:
    """Draw one series: steered values with their paired CI, baseline line and margin band
    (below the baseline, above where lower is better, both sides for equivalence)."""
    with_ci = [
        (point, point.ci_low, point.ci_high)
        for point in series.points
        if point.ci_low is not None and point.ci_high is not None
    ]
    without = [point for point in series.points if point.ci_low is None or point.ci_high is None]
    axes.axhline(series.baseline, color="0.3", linestyle="--", label="baseline")
    if two_sided or series.higher_is_better is not False:
        axes.axhspan(series.baseline - margin, series.baseline, color="0.85", label="margin")
    if two_sided or series.higher_is_better is not True:
        axes.axhspan(series.baseline, series.baseline + margin, color="0.85")
    if with_ci:
        # The CI of the delta, drawn around the baseline: a group whose aggregate is not the
        # mean of its pooled documents can have its value outside that interval.
        scales = [point.scale for point, _, _ in with_ci]
        axes.plot(scales, [point.value for point, _, _ in with_ci], "o-", label="steered")
        axes.errorbar(
            scales,
            [series.baseline + (low + high) / 2 for _, low, high in with_ci],
            yerr=[(high - low) / 2 for _, low, high in with_ci],
            fmt="none",
            capsize=3,
            ecolor="C0",
            label=f"baseline + unadjusted {confidence:.0%} CI of delta",
        )
    if without:
        axes.plot([p.scale for p in without], [p.value for p in without], "x", label="steered")
    axes.set_xlabel("steering scale")
    axes.set_ylabel(series.metric)
    axes.set_title(f"{series.task}: {series.metric}")
    axes.legend(fontsize="small")
