"""The report files of a run folder: ``comparison.{md,csv,json}`` and a sweep's PNG plots.

`saeval run` writes them into its own run folder (that folder is its output). `saeval compare`
never writes into the folders it reads: its report goes to ``--output`` and a sweep's plots
next to it, or, without ``--output``, into ``<run name>-plots/`` in the current folder.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from saeval.analysis.defaults import DEFAULT_RELATIVE_MARGIN, NONINFERIORITY
from saeval.analysis.figure_style import TaskFacts, task_facts
from saeval.analysis.plots import plot_sweep
from saeval.analysis.render import render
from saeval.analysis.report import Report, build_report, sweep_of
from saeval.analysis.results_io import load_run
from saeval.analysis.steerability_plot import plot_steerability
from saeval.atomic import write_atomic
from saeval.errors import ResultsError
from saeval.records.run_folder import COMPARISON, MANIFEST
from saeval.records.run_record import read_manifest

_FILES = (("md", "markdown"), ("csv", "csv"), ("json", "json"))
PLOTS_SUFFIX = "-plots"
_READ_PREFIXES = ("results", "samples_", "side_effects_")  # what compare reads beside a file


def write_plots(report: Report, directory: Path, facts: TaskFacts | None = None) -> list[Path]:
    """A sweep's PNG plots in ``directory`` (none for a single comparison); ``facts`` name the
    tasks and their sizes."""
    swept = sweep_of(report)
    if swept is None:
        return []
    try:
        return plot_sweep(swept, directory, facts) + plot_steerability(
            swept.steerability, directory
        )
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


def check_not_an_input(path: Path, inputs: list[Path]) -> None:
    """ResultsError when the report at ``path`` would land in what compare reads: inside a run
    folder (given whole, or one of its configurations or their files), inside a folder given
    as a side, or on a results/samples file beside a results file given as a side."""
    target = path.resolve()
    for given in inputs:
        root = given.resolve()
        inside = target.is_relative_to(root)
        if root.is_file():
            root = root.parent
            inside = target.parent == root and target.name.startswith(_READ_PREFIXES)
        if (root.parent / MANIFEST).is_file():  # a configuration folder: its run is an input
            root = root.parent
            inside = target.is_relative_to(root)
        if inside:
            wrote = " (saeval run wrote comparison.md there)" if (root / MANIFEST).is_file() else ""
            raise ResultsError(
                f"--output {path} is inside {given}, which compare reads; compare never "
                "writes into its inputs",
                hint=f"write the report elsewhere, e.g. --output {root.name}-comparison.md{wrote}",
            )


def write_report(path: Path, text: str) -> None:
    """Write a report file atomically; ResultsError (one line) when that fails."""
    try:
        write_atomic(path, text)
    except OSError as error:
        raise ResultsError(f"cannot write {path} ({error.strerror or error})") from None


def write_comparison(
    folder: Path,
    margin: float,
    relative_margin: float = DEFAULT_RELATIVE_MARGIN,
    margin_test: str = NONINFERIORITY,
) -> tuple[Report, list[Path]]:
    """comparison.{md,csv,json} of a run folder: one comparison, or a sweep with PNG plots."""
    sides = load_run(folder)
    report = build_report(
        sides, margin=margin, relative_margin=relative_margin, margin_test=margin_test
    )
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
    if not (folder / MANIFEST).is_file():
        return []
    notes = []
    for record in read_manifest(folder).steer_files:
        if any(mode != "all" for mode in record.positions):
            modes = ", ".join(record.positions)
            notes.append(f"steering positions of {record.path}, row by row: {modes}")
    return notes
