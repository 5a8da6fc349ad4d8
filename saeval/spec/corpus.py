"""A corpus for ``saeval kl``: a JSONL file with one ``{"text": "..."}`` object per line."""

from __future__ import annotations

import json
from pathlib import Path

from saeval.errors import CorpusError

MAX_BYTES = 256 * 1024 * 1024  # a corpus larger than this is a mistake, not a measurement


def read_texts(path: Path) -> list[str]:
    """Every line's ``text``; UsageError naming ``file:line`` for anything else (blank lines
    are skipped)."""
    if not path.is_file():
        raise CorpusError(f'{path}: not a file; --texts takes a JSONL file of {{"text": ...}}')
    if path.stat().st_size > MAX_BYTES:
        raise CorpusError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; use a smaller corpus")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path}: cannot read ({error})") from None
    texts = [_text(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not texts:
        raise CorpusError(f'{path}: no texts; write one {{"text": "..."}} object per line')
    return texts


def _text(path: Path, number: int, line: str) -> str:
    """The text of one JSONL line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}:{number}: invalid JSON ({error.msg})") from None
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str) or not text:
        raise CorpusError(f'{path}:{number}: expected an object with a non-empty "text" string')
    return text
