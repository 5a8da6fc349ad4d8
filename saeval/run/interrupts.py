"""Ctrl-C and SIGTERM during a run: both unwind as KeyboardInterrupt and end the run interrupted.

A run stopped this way keeps every finished (configuration, task); ``--resume`` continues it.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from saeval.errors import SaevalError
from saeval.run.store import RunStatus, RunStore


class RunInterrupted(SaevalError):
    """Ctrl-C (exit 130) or SIGTERM (exit 143) stopped a run; finished work is kept."""

    def __init__(self, message: str, hint: str, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every layer unwinds the same way."""


class Sigterm:
    """SIGTERM raised as a KeyboardInterrupt, and remembered.

    Python runs signal handlers between bytecodes, so the exception can surface inside a
    garbage-collection callback or a ``__del__``, which swallow it (and print it as "Exception
    ignored"); that report is silenced and ``check`` raises it again at the next safe point
    (between two tasks), so a terminated run always stops.
    """

    def __init__(self) -> None:
        self.received = False
        self.previous: Any = None
        self.previous_hook = sys.unraisablehook

    def __enter__(self) -> Sigterm:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)
            sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            sys.unraisablehook = self.previous_hook

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        raise Terminated()

    def _unraisable(self, unraisable: Any) -> None:
        """Drop our own swallowed SIGTERM (``check`` re-raises it); report anything else."""
        if not isinstance(unraisable.exc_value, Terminated):
            self.previous_hook(unraisable)

    def check(self) -> None:
        """Raise again a SIGTERM that arrived earlier (and may have been swallowed)."""
        if self.received:
            raise Terminated()


def interrupted(store: RunStore, interrupt: KeyboardInterrupt) -> RunInterrupted:
    """Mark the run interrupted; the error the CLI shows (exit 143 for SIGTERM, else 130)."""
    unsaved = store.record_end(RunStatus.INTERRUPTED)
    signal_name, code = ("SIGTERM", 143) if isinstance(interrupt, Terminated) else ("Ctrl-C", 130)
    kept = len(store.manifest.completed)
    hint = f"continue with the same command plus --resume --name {store.folder.name}"
    return RunInterrupted(
        f"interrupted by {signal_name}; {kept} finished results kept in {store.folder}",
        hint=hint if unsaved is None else f"{unsaved}; {hint}",
        exit_code=code,
    )
