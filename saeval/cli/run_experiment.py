"""`saeval run EXPERIMENT.yaml`: the placement options, and the leaderboard printed at the end.

The options of a steer-file run that an experiment file sets itself (``--tasks``, ``--scale``,
``--dtype``, ...) are refused with a pointer to the key, never silently ignored; ``--model``,
``--device``, ``--output``, ``--name``, ``--resume`` and the evaluation options declared with
``replaces_file_key`` (``--limit``, ``--kl-docs``) apply as they do to a steer-file run, and
``--devices``, ``--executor`` and ``--slurm-*`` replace the file's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from saeval.cli.console import out
from saeval.cli.progress import ProgressEvents
from saeval.errors import UsageError
from saeval.spec.csv_records import Invalid
from saeval.spec.options import EvalOptions, declared, info

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
_SHARED = ("steer_files", "model", "device", "output", "name", "resume")  # both kinds take


@dataclass(frozen=True)
class Placement:
    """Where an experiment's workers run, as the command line says (None: the file's keys)."""

    device: str | None = None
    devices: str | None = None
    executor: str | None = None
    slurm_partition: str | None = None
    slurm_gpus_per_job: int | None = None
    slurm_time: str | None = None
    slurm_jobs: int | None = None


@dataclass(frozen=True)
class Folder:
    """The run folder options both kinds of run take, and the model the command line names."""

    model: str | None
    output: Path
    name: str | None
    resume: bool


def command(
    paths: list[Path],
    given: tuple[str, ...],
    options: EvalOptions,
    folder: Folder,
    placement: Placement,
    allow_large: bool,
) -> None:
    """Run the one experiment file among `saeval run`'s arguments; ``given`` names every
    option the command line changed from its default (a steer-file option is refused)."""
    from saeval.demo.names import experiment_demo_names
    from saeval.run.experiment import ExperimentOptions, run_experiment

    if len(paths) != 1:
        raise UsageError(f"give one experiment file alone, got {len(paths)} files")
    replacing = [item.name for item in declared() if info(item).replaces_file_key]
    refused = [name for name in given if name not in (*_SHARED, *EXPERIMENT_OPTIONS, *replacing)]
    if refused:
        option = f"--{refused[0].replace('_', '-')}"
        raise UsageError(
            f"{option} does not apply to an experiment",
            hint=f"an experiment takes its options from {paths[0]} (tasks:, scales:, dtype:, "
            "...; see README, Experiments)",
        )
    if not allow_large:
        _check_size(paths[0])
    devices, slurm_time_min = _placement(placement)
    chosen = ExperimentOptions(
        output=folder.output,
        name=folder.name,
        resume=folder.resume,
        model=folder.model,
        run_options={name: getattr(options, name) for name in given if name in replacing},
        devices=devices,
        executor=placement.executor,
        slurm_partition=placement.slurm_partition,
        slurm_gpus_per_job=placement.slurm_gpus_per_job,
        slurm_time_min=slurm_time_min,
        slurm_jobs=placement.slurm_jobs,
    )
    chosen = replace(chosen, **experiment_demo_names(str(paths[0]), folder.model))
    with ProgressEvents() as events:
        result = run_experiment(paths[0], chosen, events)
    show(result)


def _check_size(path: Path) -> None:
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


def _placement(placement: Placement) -> tuple[tuple[str, ...] | None, int | None]:
    """--devices (else --device) parsed, --executor checked, --slurm-time in minutes."""
    from saeval.spec.placement import parse_devices, parse_executor, slurm_minutes

    devices = placement.devices
    option = "--devices" if devices else "--device"
    parsed = _parsed(option, parse_devices, devices or placement.device)
    _parsed("--executor", parse_executor, placement.executor)
    return parsed, _parsed("--slurm-time", slurm_minutes, placement.slurm_time)


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
