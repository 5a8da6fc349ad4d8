"""`saeval run`: baseline and steered model on lm-eval tasks in one process, then the comparison."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from saeval.analysis.defaults import DEFAULT_MARGIN, DEFAULT_RELATIVE_MARGIN
from saeval.cli import run_experiment
from saeval.cli.console import out
from saeval.cli.options import (
    DeviceOpt,
    DoseOpt,
    DtypeOpt,
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
from saeval.errors import UsageError
from saeval.run.config import DEFAULT_KL_DOCS
from saeval.spec.experiment import is_experiment_file

if TYPE_CHECKING:
    from saeval.run.config import RunResult


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
    dtype: DtypeOpt = "auto",
    batch_size: Annotated[str, typer.Option(help="Batch size: a number or auto.")] = "8",
    limit: Annotated[
        float | None,
        typer.Option(help="Documents per task (a value below 1 is a fraction of each task)."),
    ] = None,
    num_fewshot: Annotated[
        int | None, typer.Option(help="Few-shot examples per prompt (default: the task's).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="One seed for python, numpy, torch and few-shot sampling (default: lm-eval's)."
        ),
    ] = None,
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
    apply_chat_template: Annotated[
        bool,
        typer.Option(
            "--apply-chat-template", help="Format prompts with the model's chat template."
        ),
    ] = False,
    kl_docs: Annotated[
        int | None,
        typer.Option(
            help="Documents per task whose prompts get a KL(unsteered || steered) pass (0: none; "
            f"default {DEFAULT_KL_DOCS}, or an experiment file's kl_docs).",
            show_default=False,
        ),
    ] = None,
    gen_kwargs: Annotated[
        str | None,
        typer.Option(
            help="Generation arguments of generate_until tasks: temperature=0,max_gen_toks=64."
        ),
    ] = None,
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
) -> None:
    """Evaluate the baseline and the steered model on lm-eval tasks, then compare them."""
    given = dict(locals(), limit=_limit(limit))
    quiet_libraries()
    if any(is_experiment_file(path) for path in steer_files):
        defaults = {key: p.default for key, p in inspect.signature(command).parameters.items()}
        return run_experiment.command(given, defaults)
    tasks = _steer_run_tasks(given)
    from saeval.demo.names import with_demo_assets
    from saeval.run.config import RunConfig
    from saeval.run.ranks import is_main
    from saeval.run.runner import run
    from saeval.spec.tasks import split_task_names

    task_names = tuple(split_task_names(tasks))
    model, folders = with_demo_assets(model, task_names, include_path or ())
    config = RunConfig(
        steer_files=tuple(steer_files),
        tasks=task_names,
        model=model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        limit=_limit(limit),
        num_fewshot=num_fewshot,
        seed=seed,
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
        apply_chat_template=apply_chat_template,
        gen_kwargs=gen_kwargs,
        kl_docs=DEFAULT_KL_DOCS if kl_docs is None else kl_docs,
        positions=positions,
        shared_prefix=not no_shared_prefix,
    )
    with ProgressEvents() as events:
        result = run(config, events)
    if is_main():  # data parallel (accelerate launch): rank 0 alone reports
        _show(result)


def _steer_run_tasks(given: dict[str, Any]) -> str:
    """--tasks, which a steer-file run needs (and it takes no option of experiments)."""
    tasks: str | None = given["tasks"]
    if tasks is None:
        raise UsageError(
            "--tasks is required with steer files",
            hint="pass --tasks NAME[,NAME...], or run an experiment file (.yaml)",
        )
    extra = [
        name
        for name in run_experiment.EXPERIMENT_OPTIONS
        if given[name] is not None and given[name] is not False
    ]
    if extra:
        raise UsageError(
            f"--{extra[0].replace('_', '-')} is an option of experiment files (.yaml)",
            hint="a steer-file run takes --device",
        )
    return tasks


def _limit(value: float | None) -> int | float | None:
    """A whole --limit of 1 or more is a document count; below 1 it is a fraction."""
    if value is not None and value >= 1 and value.is_integer():
        return int(value)
    return value


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
