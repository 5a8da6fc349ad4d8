"""How long-running commands report progress: a Rich display on stderr, quiet libraries.

The display is the only progress a run shows: lm-eval's own tqdm bars are replaced during the
run (``saeval.run.lm_eval_output``) and their request counts arrive here as ``requests_done``;
the KL pass and the generation measures count their documents through ``measured``. When stderr
is not a terminal (a log file) the same events are written as plain lines
(``saeval.cli.progress_log``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column

from saeval.cli.console import err
from saeval.cli.group_lines import GroupLines
from saeval.cli.progress_log import DEFAULT_INTERVAL_S, LogLines

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
    """Keep Hugging Face's progress bars and library warnings off the terminal."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class ProgressEvents:
    """RunEvents drawn as a Rich progress display on stderr: one line per (configuration, task),
    or per task for the configurations that share its passes (``GroupLines``), with the running
    task's requests (then KL and generation documents) done/total.

    The display starts with the first task, so errors found before any model is loaded print
    as plain lines. ``live=False`` (the default where stderr is not a terminal) keeps the same
    state but writes plain progress lines instead of drawing.
    """

    def __init__(self, *, live: bool | None = None, interval: float = DEFAULT_INTERVAL_S) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            # a long line (a group's names) wraps at spaces; its counts stay whole beside it
            TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=False)),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[requests]}", table_column=Column(no_wrap=True)),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.current: dict[tuple[str, str], TaskID] = {}
        self.steps = 0  # the run's (configuration, task) units
        self.running: TaskID | None = None
        is_live = err.is_terminal if live is None else live
        self.log = None if is_live else LogLines(self._line, interval)
        self.groups = GroupLines(self.progress)

    def __enter__(self) -> ProgressEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def note(self, message: str) -> None:
        """Print a status line (above the progress display once it shows)."""
        err.print(f"[dim]{escape(message)}[/]", highlight=False, soft_wrap=True)

    def _line(self, message: str) -> None:
        """One plain progress line (log mode)."""
        err.print(escape(message), highlight=False, soft_wrap=True)

    def group_started(self, task: str, configurations: Sequence[str]) -> None:
        """Draw the ``configurations`` of ``task`` (sharing passes) as one line."""
        self.groups.expect(task, configurations)
        if self.log is not None:
            self.log.grouped(task, len(configurations))

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """Add a spinning line for the (configuration, task) (the display starts with the first)."""
        self.steps = steps
        if self.log is None:
            self.progress.start()
        else:
            self.log.started(configuration, task, step, steps)
        if self.groups.started(configuration, task):
            return
        handle = self.progress.add_task(
            f"[{step}/{steps}] {configuration} {task}", total=None, requests=""
        )
        self.current[(configuration, task)] = handle
        self.running = handle

    def requests_done(self, done: int, total: int) -> None:
        """Advance the running task's (or group's) line: a bar and ``done/total requests``."""
        if self.groups.requests_done(done, total):
            if self.log is not None:
                self.log.counted("requests", done, total)
            return
        self.measured("requests", done, total)

    def measured(self, what: str, done: int, total: int) -> None:
        """Advance the running task's line: a bar and ``done/total <what>``."""
        if self.log is not None:
            self.log.counted(what, done, total)
        if self.running is not None:
            self.progress.update(
                self.running, completed=done, total=total, requests=f"{done}/{total} {what}"
            )

    def task_finished(self, record: TaskRecord) -> None:
        """Mark the line done (with 'cached' when the baseline was reused)."""
        cached = record.reused_from is not None
        if self.log is not None:
            self.log.finished(record.configuration, record.task, self.steps, cached)
        if self.groups.finished(record.configuration, record.task, cached):
            return
        handle = self.current.pop((record.configuration, record.task))
        self.running = None
        task = self.progress.tasks[handle]
        suffix = " [green](cached)[/]" if cached else ""
        total = task.total or 1
        self.progress.update(
            handle, total=total, completed=total, description=f"{task.description}{suffix}"
        )
