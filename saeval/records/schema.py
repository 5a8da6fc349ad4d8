"""One versioning convention for every file saeval writes: ``"schema": "saeval.<kind>/<n>"``.

A reader accepts the versions it names and refuses the rest with one line naming the file,
the version found and the versions it reads. The only older habit still read is run.json's
integer ``"schema_version": 1`` (run folders of saevals before ``saeval.run/2``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from saeval.errors import ResultsError

KEY = "schema"
LEGACY_KEY = "schema_version"  # run.json of schema 1


def schema_id(kind: str, version: int) -> str:
    """``saeval.run/2``: the value of a record's ``schema`` key."""
    return f"saeval.{kind}/{version}"


def schema_of(data: Mapping[str, Any], kind: str, versions: Collection[int], path: Path) -> int:
    """Which of ``versions`` of ``kind`` the record read from ``path`` is; ResultsError if none
    (a record without a ``schema`` key is version 1 of it where it has ``schema_version``: 1)."""
    found = data.get(KEY)
    described = f"schema {found!r}"
    if LEGACY_KEY in data:  # only run.json of schema 1 has it, and no `schema` key
        legacy = data[LEGACY_KEY]
        if legacy == 1 and KEY not in data and 1 in versions:
            return 1
        found, described = None, f"{LEGACY_KEY} {legacy!r}"
    for version in versions:
        if found == schema_id(kind, version):
            return version
    readable = ", ".join(schema_id(kind, version) for version in sorted(versions))
    raise ResultsError(
        f"{path}: {described} is not one this saeval reads ({readable})",
        hint="read it with the saeval version that wrote it",
    )
