"""The comparison files of a run folder: baseline vs steered, or the sweep over strengths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

from saeval.store import write_atomic

if TYPE_CHECKING:
    from saeval.compare import Comparison
    from saeval.sweep import Sweep

Report = Union["Comparison", "Sweep"]


def write_comparison(folder: Path, margin: float) -> tuple[Report, list[Path]]:
    """comparison.{md,csv,json} of a run folder: one comparison, or a sweep with PNG plots."""
    from saeval.compare import compare
    from saeval.render import render
    from saeval.results_io import load_run
    from saeval.sweep import plot_sweep, sweep

    sides = load_run(folder)
    plots: list[Path] = []
    report: Report
    if len(sides.steered) == 1:
        report = compare(sides.baseline, next(iter(sides.steered.values())))
    else:
        report = sweep(sides.baseline, sides.steered, margin=margin)
        plots = plot_sweep(report, folder)
    files = []
    for suffix, fmt in (("md", "markdown"), ("csv", "csv"), ("json", "json")):
        files.append(folder / f"comparison.{suffix}")
        write_atomic(files[-1], render(report, fmt))
    return report, files + plots
