"""`saeval run EXPERIMENT.yaml`: the placement options, and the leaderboard printed at the end.

The options of a steer-file run that an experiment file sets itself (``--tasks``, ``--scale``,
``--dtype``, ...) are refused with a pointer to the key, never silently ignored; ``--model``,
``--device``, ``--limit``, ``--kl-docs``, ``--output``, ``--name`` and ``--resume`` apply as they
do to a steer-file run, and ``--devices``, ``--executor`` and ``--slurm-*`` replace the file's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from saeval.cli.console import out
from saeval.cli.progress import ProgressEvents
from saeval.errors import UsageError
from saeval.spec.csv_records import Invalid

T = TypeVar("T")

DevicesOpt = Annotated[
    str | None,
    typer.Option(
        help="Experiments: one worker per device, comma separated: cuda:0,cuda:1, cuda:0-3, "
        "cpu,cpu (default: the file's devices:, else one worker on --device).",
        show_default=False,
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        help="Experiments: local (worker processes here), submitit-local or slurm (a job "
        "array through submitit; pip install 'saeval\\[slurm]').",
        show_default=False,
    ),
]
SlurmPartitionOpt = Annotated[
    str | None, typer.Option(help="Experiments on Slurm: the partition.", show_default=False)
]
SlurmGpusOpt = Annotated[
    int | None,
    typer.Option(
        min=0, help="Experiments on Slurm: GPUs per job, one worker each.", show_default=False
    ),
]
SlurmTimeOpt = Annotated[
    str | None,
    typer.Option(
        help="Experiments on Slurm: time limit per job (90, 1:30:00, 1-00:00:00).",
        show_default=False,
    ),
]
AllowLargeOpt = Annotated[
    bool,
    typer.Option(
        "--allow-large",
        help="Experiments: start one of more than 10,000 evaluations (saeval validate counts "
        "them).",
    ),
]
SlurmJobsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Experiments on Slurm: array size (jobs).", show_default=False),
]


EXPERIMENT_OPTIONS = (  # options only an experiment takes
    "devices",
    "executor",
    "slurm_partition",
    "slurm_gpus_per_job",
    "slurm_time",
    "slurm_jobs",
    "allow_large",
)
_SHARED = ("model", "device", "limit", "kl_docs", "output", "name", "resume")  # both kinds take


def command(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Run the one experiment file among `saeval run`'s arguments: ``given`` holds every option
    as parsed, ``defaults`` their defaults (a steer-file option that differs is refused)."""
    from saeval.demo.names import experiment_demo_names
    from saeval.run.experiment import ExperimentOptions, run_experiment

    paths = given["steer_files"]
    if len(paths) != 1:
        raise UsageError(f"give one experiment file alone, got {len(paths)} files")
    refused = [
        name
        for name, value in given.items()
        if name not in (*_SHARED, *EXPERIMENT_OPTIONS, "steer_files") and value != defaults[name]
    ]
    if refused:
        option = f"--{refused[0].replace('_', '-')}"
        raise UsageError(
            f"{option} does not apply to an experiment",
            hint=f"an experiment takes its options from {paths[0]} (tasks:, scales:, dtype:, "
            "...; see README, Experiments)",
        )
    if not given["allow_large"]:
        _check_size(paths[0])
    options = {name: given[name] for name in _SHARED if name != "device"}
    skipped = ("slurm_time", "allow_large")
    options |= {name: given[name] for name in EXPERIMENT_OPTIONS if name not in skipped}
    options |= _placement(given["device"], given["devices"], given["executor"], given["slurm_time"])
    options |= experiment_demo_names(paths[0], given["model"])
    with ProgressEvents() as events:
        result = run_experiment(paths[0], ExperimentOptions(**options), events)
    show(result)


def _check_size(path: str) -> None:
    """Refuse an experiment of more evaluations than ``MAX_EVALUATIONS`` before anything is
    written."""
    from saeval.spec.experiment import read_experiment
    from saeval.spec.experiment_check import size_problem

    problem = size_problem(read_experiment(path))
    if problem is not None:
        raise UsageError(
            f"{path}: {problem}",
            hint="pass --allow-large to start it, or use fewer interventions, strengths, "
            "random controls or tasks",
        )


def _placement(
    device: str | None, devices: str | None, executor: str | None, time: str | None
) -> dict[str, Any]:
    """--devices (else --device) parsed, --executor checked, --slurm-time in minutes."""
    from saeval.spec.placement import parse_devices, parse_executor, slurm_minutes

    parsed = _parsed("--devices" if devices else "--device", parse_devices, devices or device)
    _parsed("--executor", parse_executor, executor)
    return {"devices": parsed, "slurm_time_min": _parsed("--slurm-time", slurm_minutes, time)}


def _parsed(option: str, parse: Callable[[str], T], text: str | None) -> T | None:
    """``parse(text)`` (None for no text); its problem as a UsageError naming the option."""
    if text is None:
        return None
    try:
        return parse(text)
    except Invalid as problem:
        raise UsageError(f"{option}: {problem}") from None


def show(result: Any) -> None:
    """The leaderboard, its sweet spots and notes, and where the files are."""
    from saeval.analysis.leaderboard_render import summary_lines, table

    out.print(table(result.leaderboard))
    for line in summary_lines(result.leaderboard):
        out.print(f"[dim]- {escape(line)}[/]", highlight=False)
    if result.reused:
        out.print(f"baseline reused from the cache for: {', '.join(result.reused)}", soft_wrap=True)
    out.print(f"results: {result.folder}", soft_wrap=True, highlight=False)
