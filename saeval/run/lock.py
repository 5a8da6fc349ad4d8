"""``<run>/.lock``: one saeval process at a time writes a run folder.

A fresh run and a ``--resume`` take the same lock: an exclusive, non-blocking ``fcntl.flock``
on ``<run>/.lock``, which holds the owner's pid. It is held for the whole run and released
(and the file removed) when the run ends, however it ends; the kernel releases it too if the
process dies. A second process is refused with one line and writes nothing. The file is never
a configuration folder, so ``saeval compare`` of a running (or crashed) run is unaffected.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from saeval.errors import ResultsError
from saeval.records.run_folder import LOCK_FILE


class RunLock:
    """The exclusive lock of one run folder (see the module docstring)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        """Lock ``folder`` for this process; ResultsError if another process holds it."""
        path = folder / LOCK_FILE
        for _ in range(3):  # the holder may remove the file between our open and flock
            fd = _open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ResultsError(
                    f"{folder} is in use by another saeval process (pid {_holder(path)})",
                    hint="wait for it to finish; two processes cannot write one run folder",
                ) from None
            if _same_file(fd, path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return cls(folder, fd)
            os.close(fd)
        raise ResultsError(f"{path}: cannot take the lock (it keeps being replaced)")

    def release(self) -> None:
        """Remove the lock file and unlock (a second call does nothing)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.folder / LOCK_FILE)
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open(path: Path) -> int:
    """Open (or create) the lock file without truncating another holder's pid."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ResultsError(
            f"cannot write in {path.parent} ({error.strerror or error})",
            hint="check that the folder is writable and its file system is not read-only",
        ) from None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one its last holder removed)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    """The pid written in the lock file ('unknown' while the holder is still writing it)."""
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"
