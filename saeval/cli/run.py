"""`saeval run`: baseline and steered model on lm-eval tasks in one process, then the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from saeval.analysis.defaults import DEFAULT_MARGIN
from saeval.cli.console import out
from saeval.cli.options import ModelOpt, parse_scales
from saeval.cli.progress import ProgressEvents, quiet_libraries

if TYPE_CHECKING:
    from saeval.run.config import RunResult


def command(
    steer_files: Annotated[
        list[Path], typer.Argument(help="Steer file(s): one latent per row (steer.csv).")
    ],
    tasks: Annotated[
        str,
        typer.Option("--tasks", "-t", help="lm-eval task, group or tag names, comma separated."),
    ],
    model: ModelOpt = None,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda, cuda:N or mps (default: cuda:0 if present, else cpu)."),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="Model dtype: auto, bfloat16, float16 or float32.")
    ] = "auto",
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
    scale: Annotated[
        str,
        typer.Option(
            help="Steering strength(s), comma separated; each multiplies every coefficient."
        ),
    ] = "1",
    margin: Annotated[
        float,
        typer.Option(help="Non-inferiority margin for the sweep report (absolute, e.g. 0.02)."),
    ] = DEFAULT_MARGIN,
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
    gen_kwargs: Annotated[
        str | None,
        typer.Option(
            help="Generation arguments of generate_until tasks: temperature=0,max_gen_toks=64."
        ),
    ] = None,
) -> None:
    """Evaluate the baseline and the steered model on lm-eval tasks, then compare them."""
    quiet_libraries()
    from saeval.run.config import RunConfig
    from saeval.run.runner import run
    from saeval.spec.tasks import split_task_names

    config = RunConfig(
        steer_files=tuple(steer_files),
        tasks=tuple(split_task_names(tasks)),
        model=model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        limit=_limit(limit),
        num_fewshot=num_fewshot,
        seed=seed,
        include_path=tuple(include_path or ()),
        output=output,
        name=name,
        scales=parse_scales(scale),
        margin=margin,
        no_baseline=no_baseline,
        resume=resume,
        apply_chat_template=apply_chat_template,
        gen_kwargs=gen_kwargs,
    )
    with ProgressEvents() as events:
        result = run(config, events)
    _show(result)


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
