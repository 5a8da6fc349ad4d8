"""The report files of a run folder: ``comparison.{md,csv,json}`` and a sweep's PNG plots."""

from __future__ import annotations

from pathlib import Path

from saeval.analysis.plots import plot_sweep
from saeval.analysis.render import render
from saeval.analysis.report import Report, build_report, sweep_of
from saeval.analysis.results_io import load_run
from saeval.atomic import write_atomic
from saeval.run.layout import COMPARISON

_FILES = (("md", "markdown"), ("csv", "csv"), ("json", "json"))


def write_plots(report: Report, directory: Path) -> list[Path]:
    """A sweep's PNG plots in ``directory`` (none for a single comparison)."""
    swept = sweep_of(report)
    return [] if swept is None else plot_sweep(swept, directory)


def write_comparison(folder: Path, margin: float) -> tuple[Report, list[Path]]:
    """comparison.{md,csv,json} of a run folder: one comparison, or a sweep with PNG plots."""
    report = build_report(load_run(folder), margin=margin)
    plots = write_plots(report, folder)
    files = []
    for suffix, fmt in _FILES:
        files.append(folder / f"{COMPARISON}.{suffix}")
        write_atomic(files[-1], render(report, fmt))
    return report, files + plots
