"""The options of one run, what it produced, and the events it reports while it works."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from saeval.analysis.defaults import (
    DEFAULT_MARGIN,
    DEFAULT_RELATIVE_MARGIN,
    NONINFERIORITY,
    check_margin,
    check_margin_test,
    check_relative_margin,
)
from saeval.errors import UsageError
from saeval.records.run_folder import name_problem
from saeval.records.run_record import TaskRecord
from saeval.spec.options import DEFAULT_KL_DOCS, EvalOptions, set_options
from saeval.spec.positions import MODES

if TYPE_CHECKING:
    from saeval.analysis.report import Report

BOOTSTRAP_ITERS = 100_000  # lm-eval's default: stderrs match a plain `lm_eval` run


@dataclass(frozen=True, kw_only=True)
class RunConfig(EvalOptions):
    """The options of `saeval run`, one field per command-line option: the evaluation options
    (``EvalOptions``, declared in ``saeval.spec.options``) and what places the run."""

    steer_files: tuple[Path, ...]
    tasks: tuple[str, ...]
    model: str | None = None
    device: str | None = None  # None: cuda:0 when a GPU is visible, else cpu
    include_path: tuple[Path, ...] = ()
    output: Path = Path("results")
    name: str | None = None
    scales: tuple[float, ...] = (1.0,)
    doses: tuple[float, ...] = ()  # --dose: scales from mean ||h' - h|| / ||h|| (run/dose_scale.py)
    margin: float = DEFAULT_MARGIN  # a sweep's margin for metrics in [0, 1]
    relative_margin: float = DEFAULT_RELATIVE_MARGIN  # for unbounded metrics, of the baseline
    margin_test: str = NONINFERIORITY
    no_baseline: bool = False
    resume: bool = False
    kl_docs: int = DEFAULT_KL_DOCS  # documents per (sub)task with a KL pass; 0: none
    positions: str = "all"  # the positions mode of rows whose positions cell is empty
    shared_prefix: bool = True  # one pass for a task's configurations (False: one each)

    @classmethod
    def of(cls, options: EvalOptions, **placement: Any) -> RunConfig:
        """The run of ``options`` (an option left None takes the run's default) placed by
        ``placement`` (the other fields)."""
        return cls(**set_options(options), **placement)

    def check(self) -> None:
        """Reject option values that lm-eval would only reject after the model is loaded."""
        self._check_numbers()
        problem = next(self.problems(), None)
        if problem is not None:
            raise UsageError(problem)
        if self.positions not in MODES:
            raise UsageError(
                f"--positions must be one of {', '.join(MODES)}, got {self.positions!r}"
            )
        if not self.scales:
            raise UsageError("--scale needs at least one strength")
        if len(set(self.doses)) != len(self.doses):
            raise UsageError(f"--dose lists a dose twice: {','.join(map(str, self.doses))}")
        if len(set(self.scales)) != len(self.scales):
            raise UsageError(f"--scale lists a strength twice: {','.join(map(str, self.scales))}")
        named = None if self.name is None else name_problem(self.name)
        if named is not None:
            raise UsageError(
                f"--name {self.name!r} {named}",
                hint=f"--name is one folder name inside --output ({self.output})",
            )

    def _check_numbers(self) -> None:
        """Numbers are finite and in range (NaN passes every comparison, so it is named first)."""
        bad = [scale for scale in self.scales if not math.isfinite(scale)]
        if bad:
            raise UsageError(f"--scale takes finite numbers, got {bad[0]}")
        check_margin(self.margin)
        check_relative_margin(self.relative_margin)
        check_margin_test(self.margin_test)


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its folder, configuration folders, the report and its files."""

    folder: Path
    manifest: Path
    configurations: dict[str, Path]
    reused: tuple[str, ...]  # tasks whose baseline came from the cache
    report: Report | None  # baseline vs steered, or the sweep over strengths; None without baseline
    files: tuple[Path, ...]  # comparison.{md,csv,json} and sweep plots


class RunEvents(Protocol):
    """What a run reports while it works (the CLI draws progress from these)."""

    def note(self, message: str) -> None:
        """A one-line status message."""

    def group_started(self, task: str, configurations: Sequence[str]) -> None:
        """The ``configurations`` of ``task`` share passes: the first one evaluated answers
        the requests of all of them."""

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """A (configuration, task) evaluation began."""

    def requests_done(self, done: int, total: int) -> None:
        """lm-eval answered ``done`` of ``total`` requests (of one kind) of the running task."""

    def measured(self, what: str, done: int, total: int) -> None:
        """A side-effect measure of the running task (``what``: "KL documents", ...) is
        ``done`` of ``total`` through."""

    def task_finished(self, record: TaskRecord) -> None:
        """A (configuration, task) was saved (evaluated, or reused from the baseline cache)."""


class SilentEvents:
    """RunEvents that ignore everything."""

    def note(self, message: str) -> None:
        """Ignore the message."""

    def group_started(self, task: str, configurations: Sequence[str]) -> None:
        """Ignore the group."""

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """Ignore the start."""

    def requests_done(self, done: int, total: int) -> None:
        """Ignore the progress."""

    def measured(self, what: str, done: int, total: int) -> None:
        """Ignore the progress."""

    def task_finished(self, record: TaskRecord) -> None:
        """Ignore the record."""
