"""How the workers of one experiment share its run folder: a file-based queue and a manifest lock.

- The queue is ``<run>/queue/``: a worker takes unit ``i`` by creating ``<i>.claim`` with
  ``O_CREAT | O_EXCL`` (atomic on local disks and NFS alike), writing its name into it. A unit is
  finished once ``run.json`` records it; a claim without a record after its worker stopped is a
  unit that did not finish. The parent clears the queue before it starts workers (it holds the
  run's lock, ``saeval.run.lock``, so no other parent runs them).
- Every change to ``run.json`` is a read-modify-write under ``<run>/.manifest.lock`` (a blocking
  ``flock``), through ``shared_store``, so that records written by several processes all stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from saeval.records.experiment_folder import (
    CLAIM_SUFFIX,
    MANIFEST_LOCK,
    QUEUE_DIR,
    WORKERS_FILE,
)
from saeval.run.store import RunStore

Indexed = tuple[
    int, tuple[str, str]
]  # a unit's index in experiment.json and its (configuration, task)


@contextlib.contextmanager
def manifest_lock(folder: Path) -> Iterator[None]:
    """Hold the run's manifest lock (blocking) while the block runs."""
    fd = os.open(folder / MANIFEST_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def shared_store(folder: Path) -> Iterator[RunStore]:
    """The run folder's store with the manifest as it is on disk now, locked while in use;
    whatever the block saves is merged with every other process's records."""
    with manifest_lock(folder):
        yield RunStore.open(folder)


def reset_queue(folder: Path, count: int) -> None:
    """Remove every claim of an earlier start and say how many workers (``count``) will share
    the queue (the caller holds the run's lock)."""
    shutil.rmtree(folder / QUEUE_DIR, ignore_errors=True)
    (folder / QUEUE_DIR).mkdir()
    (folder / QUEUE_DIR / WORKERS_FILE).write_text(f"{count}\n", encoding="utf-8")


def workers(folder: Path) -> int:
    """How many workers share the queue (1 when the queue does not say)."""
    try:
        return max(1, int((folder / QUEUE_DIR / WORKERS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return 1


def task_chunks(pending: Sequence[Indexed], count: int) -> list[list[Indexed]]:
    """The pending units as groups of one task each, in order: a task's units split into as
    many near-equal chunks as there are workers for each task (one chunk per task when there
    are no more workers than tasks)."""
    by_task: dict[str, list[Indexed]] = {}
    for unit in pending:
        by_task.setdefault(unit[1][1], []).append(unit)
    parts = max(1, -(-count // max(1, len(by_task))))
    chunks = []
    for units in by_task.values():
        size = -(-len(units) // parts)
        chunks += [units[start : start + size] for start in range(0, len(units), size)]
    return chunks


def claim(folder: Path, unit: int, worker: str) -> bool:
    """Take unit ``unit`` for ``worker``; False when another worker has it."""
    path = folder / QUEUE_DIR / f"{unit}{CLAIM_SUFFIX}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(f"{worker}\n")
    return True


def claims(folder: Path) -> dict[int, str]:
    """Every claimed unit and the worker that took it ('' while it is still writing its name)."""
    found = {}
    for path in (folder / QUEUE_DIR).glob(f"*{CLAIM_SUFFIX}"):
        with contextlib.suppress(OSError, ValueError):
            found[int(path.stem)] = path.read_text(encoding="utf-8").strip()
    return found
