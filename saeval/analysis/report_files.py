"""The report files of a run folder: ``comparison.{md,csv,json}`` and a sweep's PNG plots.

`saeval run` writes them into its own run folder (that folder is its output). `saeval compare`
never writes into the folders it reads: its report goes to ``--output`` and a sweep's plots
next to it, or, without ``--output``, into ``<run name>-plots/`` in the current folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from saeval.analysis.figure_style import TaskFacts, task_facts
from saeval.analysis.plots import plot_sweep
from saeval.analysis.render import render
from saeval.analysis.report import Report, build_report, sweep_of
from saeval.analysis.results_io import load_run
from saeval.atomic import write_atomic
from saeval.errors import ResultsError
from saeval.run.layout import COMPARISON, MANIFEST

_FILES = (("md", "markdown"), ("csv", "csv"), ("json", "json"))
PLOTS_SUFFIX = "-plots"


def write_plots(report: Report, directory: Path, facts: TaskFacts | None = None) -> list[Path]:
    """A sweep's PNG plots in ``directory`` (none for a single comparison); ``facts`` name the
    tasks and their sizes."""
    swept = sweep_of(report)
    if swept is None:
        return []
    try:
        return plot_sweep(swept, directory, facts)
    except OSError as error:
        raise ResultsError(
            f"cannot write the sweep plots in {directory} ({error.strerror or error})",
            hint="saeval compare writes plots next to --output FILE, else in the current folder",
        ) from None


def compare_plots_dir(run_folder: Path, output: Path | None) -> Path:
    """Where `saeval compare` puts a sweep's plots: next to ``output``, else
    ``./<run name>-plots/`` (never inside the run folder it reads)."""
    if output is not None:
        return output.parent
    return Path.cwd() / f"{run_folder.resolve().name}{PLOTS_SUFFIX}"


def check_report_path(path: Path) -> None:
    """ResultsError unless a report file can be written at ``path`` (before any work)."""
    if path.is_dir():
        raise ResultsError(
            f"--output {path} is a folder, not a file",
            hint="give a file name such as report.md (a sweep's plots go next to it)",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsError(
            f"--output {path}: cannot create {path.parent} ({error.strerror or error})"
        ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ResultsError(
            f"--output {path}: {path.parent} is not writable (read-only or no permission)"
        )


def write_report(path: Path, text: str) -> None:
    """Write a report file atomically; ResultsError (one line) when that fails."""
    try:
        write_atomic(path, text)
    except OSError as error:
        raise ResultsError(f"cannot write {path} ({error.strerror or error})") from None


def write_comparison(folder: Path, margin: float) -> tuple[Report, list[Path]]:
    """comparison.{md,csv,json} of a run folder: one comparison, or a sweep with PNG plots."""
    sides = load_run(folder)
    report = build_report(sides, margin=margin)
    report = replace(report, notes=(*report.notes, *positions_notes(folder)))
    plots = write_plots(report, folder, task_facts(sides.baseline))
    files = []
    for suffix, fmt in _FILES:
        files.append(folder / f"{COMPARISON}.{suffix}")
        write_atomic(files[-1], render(report, fmt))
    return report, files + plots


def positions_notes(folder: Path) -> list[str]:
    """One note per steer file of the run with a row steering only some positions: every row's
    positions mode, in file order (none when every row steers every position)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    notes = []
    for record in manifest.get("steer_files", []) if isinstance(manifest, dict) else []:
        modes = record.get("positions") or []
        if any(mode != "all" for mode in modes):
            notes.append(f"steering positions of {record['path']}, row by row: {', '.join(modes)}")
    return notes
