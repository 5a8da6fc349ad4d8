"""The one JSON reader and writer of saeval's files: errors name the file and line, never a class.

Every record in ``saeval.records`` is read through ``load_json`` and written as ``json_text``;
lm-eval's results files through ``read_results_json``; samples JSONL records through
``parse_json`` one line at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saeval.errors import ResultsError


def read_text(file: Path) -> str:
    """A file's UTF-8 text; ResultsError naming the file when it cannot be read."""
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsError(f"{file}: cannot read ({error})") from None


def parse_json(text: str, file: Path, line: int | None, what: str) -> Any:
    """``json.loads``; ResultsError naming the file and line (``line`` for one JSONL record)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(
            f"{file}:{line or error.lineno}: invalid JSON ({error.msg}, column {error.colno})",
            hint=f"the {what} is corrupt or truncated; rerun the evaluation that wrote it",
        ) from None


def load_json(file: Path, what: str) -> Any:
    """The JSON value in ``file``; ResultsError "cannot read the <what>" naming the file, and the
    line and column of invalid JSON."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResultsError(f"{file}: cannot read the {what} ({error})") from None


def read_results_json(file: Path) -> dict[str, Any]:
    """Read an lm-eval results JSON; ResultsError names the file and line of any problem."""
    data = parse_json(read_text(file), file, None, "file")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ResultsError(f"{file}: not an lm-eval results file (no 'results' object)")
    return data


def json_text(data: Any, *, allow_nan: bool = True) -> str:
    """A record as its file holds it: indented JSON and one trailing newline (``allow_nan``
    False: a NaN or infinity is a ValueError, for files whose every number must be finite)."""
    return json.dumps(data, indent=2, allow_nan=allow_nan) + "\n"
