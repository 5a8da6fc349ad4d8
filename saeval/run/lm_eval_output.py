"""lm-eval's own terminal output during a run: its tqdm bars and its git probe.

lm-eval draws a tqdm bar for every phase of every task (building contexts, tokenizing, one per
kind of request) and runs ``git describe`` for every results dict, which prints "fatal: not a
git repository" when the working directory is not a checkout. During a run the run's events
are the progress: ``quiet_lm_eval`` swaps lm-eval's ``tqdm`` for ``RequestCounter``, which
draws nothing and reports the counts of lm-eval's "Running ... requests" loops, runs the git
probe with its output captured, and switches off transformers' weight-loading bars.
Everything is put back when the run ends; ``saeval harness`` keeps lm-eval's own bars.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

# The lm-eval modules whose module-level ``tqdm`` draws a bar during a Hugging Face model's run.
TQDM_MODULES = ("lm_eval.api.model", "lm_eval.api.task", "lm_eval.models.huggingface")
_REQUEST_LOOPS = "Running "  # lm-eval's request loops: "Running loglikelihood requests", ...


class RequestCounter:
    """A tqdm stand-in that draws nothing; a request loop's counts go to ``report``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: int | None = None,
        *,
        report: Callable[[int, int], None],
        disable: bool = False,
        **_: Any,
    ) -> None:
        self.iterable = iterable
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total or 0
        self.n = 0
        is_request_loop = (desc or "").startswith(_REQUEST_LOOPS)
        self.report = report if is_request_loop and not disable else None
        if self.report is not None:
            self.report(0, self.total)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done (and report it, for a request loop)."""
        self.n += n
        if self.report is not None:
            self.report(self.n, max(self.total, self.n))

    def close(self) -> None:
        """Nothing to clear: nothing was drawn."""

    def __enter__(self) -> RequestCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def git_hash() -> str | None:
    """What lm-eval records as ``git_hash`` (``git describe --always``), its stderr captured."""
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        done = subprocess.run(
            ["git", "describe", "--always"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0:
        return done.stdout.strip()
    commit: str | None = get_commit_from_path(os.getcwd())  # lm-eval's own fallback
    return commit


@contextlib.contextmanager
def quiet_lm_eval(requests_done: Callable[[int, int], None]) -> Iterator[None]:
    """lm-eval's bars and git probe silenced (request counts to ``requests_done``) inside."""
    from transformers.utils import logging as transformers_logging

    counter = functools.partial(RequestCounter, report=requests_done)
    patches: list[tuple[ModuleType, str, Any]] = [
        (importlib.import_module(name), "tqdm", counter) for name in TQDM_MODULES
    ]
    patches.append((importlib.import_module("lm_eval.evaluator"), "get_git_commit_hash", git_hash))
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    bars = transformers_logging.is_progress_bar_enabled()
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        transformers_logging.disable_progress_bar()
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        if bars:
            transformers_logging.enable_progress_bar()
