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
from collections.abc import Iterator
from pathlib import Path

from saeval.records.experiment_folder import CLAIM_SUFFIX, MANIFEST_LOCK, QUEUE_DIR
from saeval.run.store import RunStore


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


def reset_queue(folder: Path) -> None:
    """Remove every claim of an earlier start (the caller holds the run's lock)."""
    shutil.rmtree(folder / QUEUE_DIR, ignore_errors=True)
    (folder / QUEUE_DIR).mkdir()


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
