"""Progress as plain lines, for output that is not a terminal (nohup, Slurm logs, CI).

A live display draws nothing until the run ends when stderr is a file; these lines are written
(and flushed) as the work happens: one when a (configuration, task) starts and one when it
finishes, with the units done of all and an ETA for the run, and for every counted phase of
the running unit (lm-eval's requests, the KL pass, generation measures) its first and last
count and a line with done/total and an ETA at most every ``interval`` seconds in between.
Units may run side by side (an experiment's workers): each line names its unit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_INTERVAL_S = 30.0


def clock(seconds: float) -> str:
    """A duration as ``h:mm:ss``."""
    whole = max(round(seconds), 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def eta(elapsed: float, done: int, total: int) -> str:
    """``ETA h:mm:ss`` at the rate so far; ``ETA ?`` before anything is done."""
    if done <= 0:
        return "ETA ?"
    return f"ETA {clock(elapsed / done * max(total - done, 0))}"


@dataclass
class _Phase:
    what: str
    started: float
    printed: float


@dataclass
class LogLines:
    """The lines of a run's progress, handed to ``write`` as they happen."""

    write: Callable[[str], None]
    interval: float = DEFAULT_INTERVAL_S
    now: Callable[[], float] = time.monotonic
    units: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)  # running
    running: str = ""  # the unit whose phases are counted (the one started last)
    phase: _Phase | None = None
    first: float | None = None  # when this process started its first unit
    done: int = 0  # units done, counting those before the first one started here
    evaluated: int = 0  # units evaluated here (not taken from the cache)
    groups: dict[str, int] = field(default_factory=dict)  # task -> units one shared pass does
    prepaid: dict[str, int] = field(default_factory=dict)  # task -> units its pass has done

    def started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """A (configuration, task) began (``step`` of ``steps``)."""
        now = self.now()
        if self.first is None:
            self.first, self.done = now, step - 1  # earlier steps: done by an earlier run
        self.running = f"[{step}/{steps}] {configuration} {task}"
        self.units[(configuration, task)] = (self.running, now)
        self.phase = None
        self.write(f"{self.running}: started")

    def counted(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of a phase (``what``) of the running unit."""
        now = self.now()
        if self.phase is None or self.phase.what != what or done == 0:
            self.phase = _Phase(what, now, now)
        elif done < total and now - self.phase.printed < self.interval:
            return
        self.phase.printed = now
        timing = f", {eta(now - self.phase.started, done, total)}" if done < total else ""
        self.write(f"{self.running}: {done}/{total} {what}{timing}")
        if done >= total:
            self.phase = None

    def grouped(self, task: str, units: int) -> None:
        """The next ``units`` units of ``task`` share passes: the first to run does all their
        work, the others then take their answers at once."""
        self.groups[task] = units

    def finished(self, configuration: str, task: str, steps: int, cached: bool) -> None:
        """A unit was saved: its time, the units done of all and the run's ETA (at the rate
        units have been evaluated here so far, a shared pass counting every unit it did)."""
        now = self.now()
        label, started = self.units.pop((configuration, task))
        self.done += 1
        if task in self.groups:  # the first of its group: its passes did the others' work
            size = self.groups.pop(task)
            self.prepaid[task] = size - 1
            self.evaluated += 0 if cached else size
        elif self.prepaid.get(task, 0) > 0:
            self.prepaid[task] -= 1
        else:
            self.evaluated += not cached
        how = "reused from the cache" if cached else f"done in {clock(now - started)}"
        left = steps - self.done - sum(self.prepaid.values())
        timing = ""
        if left > 0 and self.evaluated and self.first is not None:
            timing = f", ETA {clock((now - self.first) / self.evaluated * left)}"
        self.write(f"{label}: {how}; {self.done}/{steps} done{timing}")
        self.phase = None
