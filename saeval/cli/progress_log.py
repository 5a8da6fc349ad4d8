"""Progress as plain lines, for output that is not a terminal (nohup, Slurm logs, CI).

A live display draws nothing until the run ends when stderr is a file; these lines are written
(and flushed) as the work happens: one when a (configuration, task) starts and one when it
finishes, with the units done of all and an ETA, and for every counted phase (lm-eval's
requests, the KL pass, generation measures) its first and last count and a line with
done/total and an ETA at most every ``interval`` seconds in between.
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
    unit: str = ""
    unit_started: float = 0.0
    phase: _Phase | None = None
    seconds: list[float] = field(default_factory=list)  # per evaluated (not cached) unit

    def started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """A (configuration, task) began."""
        self.unit = f"[{step}/{steps}] {configuration} {task}"
        self.unit_started = self.now()
        self.phase = None
        self.write(f"{self.unit}: started")

    def counted(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of a phase (``what``) of the running unit."""
        now = self.now()
        if self.phase is None or self.phase.what != what or done == 0:
            self.phase = _Phase(what, now, now)
        elif done < total and now - self.phase.printed < self.interval:
            return
        self.phase.printed = now
        timing = f", {eta(now - self.phase.started, done, total)}" if done < total else ""
        self.write(f"{self.unit}: {done}/{total} {what}{timing}")
        if done >= total:
            self.phase = None

    def finished(self, step: int, steps: int, cached: bool) -> None:
        """The running unit was saved: its time, the units done of all and the run's ETA."""
        seconds = self.now() - self.unit_started
        if not cached:
            self.seconds.append(seconds)
        how = "reused from the cache" if cached else f"done in {clock(seconds)}"
        left = steps - step
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else 0.0
        timing = f", ETA {clock(mean * left)}" if left and self.seconds else ""
        self.write(f"{self.unit}: {how}; {step}/{steps} done{timing}")
        self.phase = None
