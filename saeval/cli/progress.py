"""How long-running commands report progress: a Rich display on stderr, quiet libraries."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from saeval.cli.console import err

if TYPE_CHECKING:
    from saeval.run.store import TaskRecord

_QUIET_LOGGERS = (
    "lm_eval",
    "transformers",
    "datasets",
    "sae_lens",
    "accelerate",
    "huggingface_hub",
)


def quiet_libraries() -> None:
    """Keep Hugging Face's dataset progress bars and library warnings off the terminal."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class ProgressEvents:
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

    def __enter__(self) -> ProgressEvents:
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
