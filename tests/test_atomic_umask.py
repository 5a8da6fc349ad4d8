"""Results files get the permissions a plain write gives them: 0o666 less the process umask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WRITE = (
    "import sys, pathlib; from saeval.atomic import write_atomic; "
    "write_atomic(pathlib.Path(sys.argv[1]), 'x'); open(sys.argv[2], 'w').close()"
)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_atomic_writes_honour_the_umask_as_a_plain_write_does(tmp_path: Path, umask: int) -> None:
    atomic, plain = tmp_path / "atomic.json", tmp_path / "plain.json"
    subprocess.run(
        [sys.executable, "-c", WRITE, str(atomic), str(plain)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: os.umask(umask),
        check=True,
    )
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask
    assert atomic.read_text() == "x"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["atomic.json", "plain.json"]


def test_the_umask_is_read_without_changing_it() -> None:
    from saeval.atomic import process_umask

    before = os.umask(0o022)
    os.umask(before)
    process_umask.cache_clear()
    assert process_umask() == before
    after = os.umask(before)
    assert after == before
