"""`saeval run`: baseline and steered model on lm-eval tasks in one process, then the comparison."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from saeval.cli.console import err, out
from saeval.cli.options import ModelOpt
from saeval.errors import UsageError

if TYPE_CHECKING:
    from saeval.runner import RunResult
    from saeval.store import TaskRecord

_QUIET_LOGGERS = (
    "lm_eval",
    "transformers",
    "datasets",
    "sae_lens",
    "accelerate",
    "huggingface_hub",
)


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
    ] = 0.02,
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
    _quiet()
    from saeval.runner import RunConfig, run
    from saeval.tasks import split_task_names

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
    with _ProgressEvents() as events:
        result = run(config, events)
    _show(result)


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> (0.0, 0.5, 1.0); UsageError for anything that is not a number."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--scale takes numbers separated by commas, got {text!r}") from None


def _limit(value: float | None) -> int | float | None:
    """A whole --limit of 1 or more is a document count; below 1 it is a fraction."""
    if value is not None and value >= 1 and value.is_integer():
        return int(value)
    return value


def _quiet() -> None:
    """Keep Hugging Face's dataset progress bars and library warnings off the terminal."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class _ProgressEvents:
    """RunEvents drawn as a Rich progress display on stderr: one line per (configuration, task).

    The display starts with the first task, so errors found before any model is loaded print
    as plain lines.
    """

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.current: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> _ProgressEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def note(self, message: str) -> None:
        """Print a status line (above the progress display once it shows)."""
        err.print(f"[dim]{escape(message)}[/]", highlight=False, soft_wrap=True)

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """Add a spinning line for the (configuration, task) (the display starts with the first)."""
        self.progress.start()
        handle = self.progress.add_task(f"[{step}/{steps}] {configuration} {task}", total=1)
        self.current[(configuration, task)] = handle

    def task_finished(self, record: TaskRecord) -> None:
        """Mark the line done (with 'cached' when the baseline was reused)."""
        handle = self.current.pop((record.configuration, record.task))
        task = self.progress.tasks[handle]
        suffix = " [green](cached)[/]" if record.reused_from else ""
        self.progress.update(handle, completed=1, description=f"{task.description}{suffix}")


def _show(result: RunResult) -> None:
    """The comparison table(s) on stdout and where the files are."""
    from saeval.compare import Comparison
    from saeval.render import comparison_table, summary_lines, sweep_table

    report = result.report
    if report is not None:
        table = comparison_table(report) if isinstance(report, Comparison) else sweep_table(report)
        out.print(table)
        for line in summary_lines(report):
            out.print(f"[dim]- {escape(line)}[/]", highlight=False)
    if result.reused:
        out.print(f"baseline reused from the cache for: {', '.join(result.reused)}", soft_wrap=True)
    out.print(f"results: {result.folder}", soft_wrap=True, highlight=False)
