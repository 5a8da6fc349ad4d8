"""`saeval run`: baseline and steered model on lm-eval tasks in one process, then the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from saeval.analysis.defaults import DEFAULT_MARGIN, DEFAULT_RELATIVE_MARGIN
from saeval.cli import run_experiment
from saeval.cli.console import out
from saeval.cli.options import (
    DeviceOpt,
    DoseOpt,
    MarginOpt,
    MarginTestChoice,
    MarginTestOpt,
    ModelOpt,
    RelativeMarginOpt,
    ScaleOpt,
    parse_scales,
)
from saeval.cli.progress import ProgressEvents, quiet_libraries
from saeval.cli.run_experiment import (
    AllowLargeOpt,
    DevicesOpt,
    ExecutorOpt,
    SlurmGpusOpt,
    SlurmJobsOpt,
    SlurmPartitionOpt,
    SlurmTimeOpt,
)
from saeval.cli.run_options import with_eval_options
from saeval.errors import UsageError
from saeval.spec.experiment import is_experiment_file
from saeval.spec.options import EvalOptions

if TYPE_CHECKING:
    from saeval.run.config import RunResult


@with_eval_options
def command(
    steer_files: Annotated[
        list[Path],
        typer.Argument(
            help="Steer file(s): one latent per row (steer.csv); or one experiment file (.yaml)."
        ),
    ],
    tasks: Annotated[
        str | None,
        typer.Option(
            "--tasks",
            "-t",
            help="lm-eval task, group or tag names, comma separated (required with steer files).",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    include_path: Annotated[
        list[Path] | None, typer.Option(help="Folder of extra lm-eval task YAMLs (repeatable).")
    ] = None,
    output: Annotated[Path, typer.Option(help="Folder that holds the run folders.")] = Path(
        "results"
    ),
    name: Annotated[
        str | None, typer.Option(help="Run folder name (default: <steer file>-<date>-<time>).")
    ] = None,
    scale: ScaleOpt = "1",
    dose: DoseOpt = None,
    margin: MarginOpt = DEFAULT_MARGIN,
    relative_margin: RelativeMarginOpt = DEFAULT_RELATIVE_MARGIN,
    margin_test: MarginTestOpt = MarginTestChoice.NONINFERIORITY,
    no_baseline: Annotated[
        bool, typer.Option("--no-baseline", help="Skip the unsteered model (and the comparison).")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run (--name, else the newest one)."),
    ] = False,
    positions: Annotated[
        str,
        typer.Option(
            help="Where rows with an empty positions cell steer: all, all_but_bos, prompt "
            "(the conditioning text) or generated (what the model produces).",
        ),
    ] = "all",
    no_shared_prefix: Annotated[
        bool,
        typer.Option(
            "--no-shared-prefix",
            help="Evaluate each configuration in its own passes (lm-eval's loop), not the "
            "unsteered layers once for all (same answers; for checking).",
        ),
    ] = False,
    devices: DevicesOpt = None,
    executor: ExecutorOpt = None,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_gpus_per_job: SlurmGpusOpt = None,
    slurm_time: SlurmTimeOpt = None,
    slurm_jobs: SlurmJobsOpt = None,
    allow_large: AllowLargeOpt = False,
    *,
    options: EvalOptions,
    given: tuple[str, ...],
) -> None:
    """Evaluate the baseline and the steered model on lm-eval tasks, then compare them."""
    quiet_libraries()
    if any(is_experiment_file(path) for path in steer_files):
        placement = run_experiment.Placement(
            device, devices, executor, slurm_partition, slurm_gpus_per_job, slurm_time, slurm_jobs
        )
        folder = run_experiment.Folder(model, output, name, resume)
        return run_experiment.command(steer_files, given, options, folder, placement, allow_large)
    task_names = _steer_run_tasks(tasks, given)
    from saeval.demo.names import with_demo_assets
    from saeval.run.config import RunConfig
    from saeval.run.data_parallel import is_main
    from saeval.run.runner import run

    model, folders = with_demo_assets(model, task_names, include_path or ())
    config = RunConfig.of(
        options,
        steer_files=tuple(steer_files),
        tasks=task_names,
        model=model,
        device=device,
        include_path=folders,
        output=output,
        name=name,
        scales=parse_scales(scale),
        doses=_doses(dose, scale),
        margin=margin,
        relative_margin=relative_margin,
        margin_test=margin_test.value,
        no_baseline=no_baseline,
        resume=resume,
        positions=positions,
        shared_prefix=not no_shared_prefix,
    )
    with ProgressEvents() as events:
        result = run(config, events)
    if is_main():  # data parallel (accelerate launch): rank 0 alone reports
        _show(result)


def _steer_run_tasks(tasks: str | None, given: tuple[str, ...]) -> tuple[str, ...]:
    """--tasks, which a steer-file run needs (and it takes no option of experiments)."""
    from saeval.spec.tasks import split_task_names

    if tasks is None:
        raise UsageError(
            "--tasks is required with steer files",
            hint="pass --tasks NAME[,NAME...], or run an experiment file (.yaml)",
        )
    extra = [name for name in given if name in run_experiment.EXPERIMENT_OPTIONS]
    if extra:
        raise UsageError(
            f"--{extra[0].replace('_', '-')} is an option of experiment files (.yaml)",
            hint="a steer-file run takes --device",
        )
    return tuple(split_task_names(tasks))


def _show(result: RunResult) -> None:
    """The comparison table(s) on stdout and where the files are."""
    from saeval.analysis.render import summary_lines, table

    report = result.report
    if report is not None:
        out.print(table(report))
        for line in summary_lines(report):
            out.print(f"[dim]- {escape(line)}[/]", highlight=False)
    if result.reused:
        out.print(f"baseline reused from the cache for: {', '.join(result.reused)}", soft_wrap=True)
    out.print(f"results: {result.folder}", soft_wrap=True, highlight=False)


def _doses(dose: str | None, scale: str) -> tuple[float, ...]:
    """--dose's numbers (none without it); --scale and --dose together are an error."""
    if dose is None:
        return ()
    if scale != "1":
        raise UsageError("give --scale or --dose, not both (a dose becomes a scale)")
    return parse_scales(dose, "--dose")
