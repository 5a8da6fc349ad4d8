"""The sha256 of every results, samples and side-effects file of a run folder.

Whoever writes such a file (``saeval run``, each worker of an experiment: all through
``saeval.run.store.RunStore.save_task``) records its sha256 in ``run.json`` under
``file_sha256`` (``saeval.records.run_record``), keyed by its path in the run folder
(``baseline/results_<stamp>.json``). ``--resume`` and ``saeval compare`` check every file they
are about to trust against it: a file that was cut short, edited or removed after the run
wrote it is recomputed (``--resume``) or refused (``compare``). A ``run.json`` from an older
saeval has no ``file_sha256``: its files still read, and the comparison says they are
unverified.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from saeval.errors import ResultsError
from saeval.records.run_folder import MANIFEST, name_problem
from saeval.records.run_record import read_manifest

MISSING = "is missing"
_DATA_SUFFIXES = (".json", ".jsonl")
DAMAGED_HINT = (
    "the file was cut short, edited or removed after the run wrote it: rerun the same "
    "`saeval run` command with --resume to recompute it"
)


def sha256_of(data: bytes) -> str:
    """The sha256 of ``data`` in hex."""
    return hashlib.sha256(data).hexdigest()


def relative_name(configuration: str, name: str) -> str:
    """A file's key in ``file_sha256``: ``<configuration>/<file name>``."""
    return f"{configuration}/{name}"


def file_problem(path: Path, expected: str) -> str | None:
    """Why the file at ``path`` cannot be trusted (missing, or another sha256), else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return MISSING
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if sha256_of(data) != expected:
        return "does not match the sha256 run.json recorded when it was written"
    return None


def verify_configuration(folder: Path) -> list[str]:
    """Check a run's configuration folder against its run.json before it is read.

    Returns notes (files run.json does not vouch for); a recorded file that is missing or
    changed is a ResultsError. A folder outside a saeval run folder (lm-eval's own output)
    has nothing to check.
    """
    run_folder = folder.parent
    if not (run_folder / MANIFEST).is_file():
        return []
    sums = read_manifest(run_folder).file_sha256
    if not sums:  # a run.json of a saeval that recorded none
        return [
            f"{folder}: files unverified: {run_folder / MANIFEST} records no sha256 of them "
            "(written by an older saeval)"
        ]
    prefix = relative_name(folder.name, "")
    for key, expected in sorted(sums.items()):
        name = key.removeprefix(prefix)
        if key.startswith(prefix) and name_problem(name) is None:
            problem = file_problem(folder / name, expected)
            if problem is not None:
                raise ResultsError(f"{folder / name} {problem}", hint=DAMAGED_HINT)
    loose = sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and path.suffix in _DATA_SUFFIXES and not path.name.startswith(".")
        if relative_name(folder.name, path.name) not in sums
    )
    if loose:
        return [f"{folder}: unverified (run.json records no sha256 of them): {', '.join(loose)}"]
    return []
