"""The report files of a finished experiment run: the leaderboard (``leaderboard.{md,csv,json}``
and ``leaderboard.png``) and, per intervention, the comparison or sweep ``saeval run`` would
have written (``interventions/<name>/comparison.{md,csv,json}`` and sweep plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeval.analysis.board_rows import Entry
from saeval.analysis.figure_style import TaskFacts, task_facts
from saeval.analysis.leaderboard import Leaderboard, leaderboard
from saeval.analysis.leaderboard_plot import plot_leaderboard
from saeval.analysis.leaderboard_render import render_leaderboard
from saeval.analysis.render import render
from saeval.analysis.report import build_report
from saeval.analysis.report_files import write_plots
from saeval.analysis.results_io import ResultSet, RunSides, load_side
from saeval.atomic import write_atomic
from saeval.records.experiment_folder import INTERVENTIONS_DIR, LEADERBOARD, Configuration
from saeval.records.run_folder import BASELINE, COMPARISON

_FORMATS = (("md", "markdown"), ("csv", "csv"), ("json", "json"))


def write_reports(folder: Path, definition: dict[str, Any]) -> tuple[Leaderboard, list[Path]]:
    """Read every configuration folder of the run, then write the leaderboard and the
    per-intervention reports; the leaderboard and every file written."""
    baseline = load_side(folder / BASELINE, label=BASELINE)
    configs = [Configuration(**c) for c in definition["configurations"]]
    entries = [
        Entry(
            c.intervention,
            0.0 if c.scale is None else c.scale,
            load_side(folder / c.name, label=c.name),
            c.control,
            c.prompt,
            steers=c.scale is not None,
        )
        for c in configs
        if c.intervention is not None
    ]
    report = definition["report"]
    board = leaderboard(
        baseline,
        entries,
        target=definition["target"],
        capability=definition["capability"],
        compare_to=_compare_to(definition["interventions"]),
        **report,
    )
    files = []
    for suffix, fmt in _FORMATS:
        files.append(folder / f"{LEADERBOARD}.{suffix}")
        write_atomic(files[-1], render_leaderboard(board, fmt))
    facts = task_facts(baseline, definition["target"])
    files.append(plot_leaderboard(board, folder / f"{LEADERBOARD}.png", facts))
    for name in definition["interventions"]:
        own = {e.scale: e.results for e in entries if e.intervention == name and e.control is None}
        files += _intervention_report(
            folder / INTERVENTIONS_DIR / name, baseline, own, report, facts
        )
    return board, files


def _compare_to(interventions: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Each prompt intervention's ``compare_to``: (steering intervention, strength)."""
    return {
        name: (info["compare_to"][0], float(info["compare_to"][1]))
        for name, info in interventions.items()
        if "compare_to" in info
    }


def _intervention_report(
    directory: Path,
    baseline: ResultSet,
    steered: dict[float, ResultSet],
    report: dict[str, Any],
    facts: TaskFacts,
) -> list[Path]:
    """One intervention's comparison (one strength) or sweep (several), as saeval run writes it."""
    sides = RunSides(directory, baseline, dict(sorted(steered.items())))
    built = build_report(sides, margin=report["margin"], alpha=report["alpha"])
    files = []
    for suffix, fmt in _FORMATS:
        files.append(directory / f"{COMPARISON}.{suffix}")
        write_atomic(files[-1], render(built, fmt))
    return files + write_plots(built, directory, facts)
