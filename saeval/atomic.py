"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The file gets the permissions a plain ``open(path, "w")`` would give it (``0o666`` less the
process umask), so results in a shared folder stay readable by the group as the umask allows;
``tempfile.mkstemp`` alone would leave them ``0o600``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path

_PROC_STATUS = Path("/proc/self/status")


@functools.cache
def process_umask() -> int:
    """The process umask, read once: from /proc where Linux shows it, else set and put back."""
    with contextlib.suppress(OSError, ValueError):
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fchmod(stream.fileno(), 0o666 & ~process_umask())
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
