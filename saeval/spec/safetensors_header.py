"""The header of a ``.safetensors`` file, read without torch: each tensor's dtype and shape.

The format: 8 bytes giving the header length ``N`` (little-endian), ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then the
tensors' data, whose offsets count from the end of the header. A file shorter than its header
says was cut off; then the safetensors library checks the header by its own rules (offsets
that disagree with a tensor's shape, gaps). No weights are read, so this takes a millisecond
for any file size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeGuard

from saeval.errors import ResolutionError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
_LENGTH_BYTES = 8
_HINT = "the file is damaged or was not fully written; save or download it again"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it."""

    dtype: str
    shape: tuple[int, ...]
    end: int  # where its data ends, counted from the end of the header


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors of a safetensors file, by name; ResolutionError naming the file when it is
    missing, not safetensors, or shorter than its header says (truncated)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            prefix = file.read(_LENGTH_BYTES)
            length = int.from_bytes(prefix, "little")
            if len(prefix) < _LENGTH_BYTES or length > min(MAX_HEADER_BYTES, size - len(prefix)):
                _damaged(path, f"not a safetensors file (a header of {length} bytes in {size})")
            raw = file.read(length)
    except FileNotFoundError:
        raise ResolutionError(f"{path}: file not found") from None
    except OSError as error:
        raise ResolutionError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        header = json.loads(raw)
    except ValueError:
        _damaged(path, "not a safetensors file (its header is not JSON)")
    if not isinstance(header, dict):
        _damaged(path, "not a safetensors file (its header is not a JSON object)")
    entries = {
        str(name): _entry(path, str(name), value)
        for name, value in header.items()
        if name != "__metadata__"
    }
    needed = _LENGTH_BYTES + length + max((entry.end for entry in entries.values()), default=0)
    if size < needed:
        _damaged(path, f"truncated: {size} bytes, but its header describes {needed}")
    _library_check(path)
    return entries


def _library_check(path: Path) -> None:
    """The safetensors library's own checks of the header (each tensor's offsets agree with its
    dtype and shape, the tensors cover the data without gaps); it reads no weights."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except (SafetensorError, OSError) as error:
        reason = str(error).rsplit(": ", 1)[-1]
        _damaged(path, f"not a valid safetensors file (the safetensors library says: {reason})")


def _entry(path: Path, name: str, value: Any) -> TensorEntry:
    """One header entry, checked: a dtype, a shape of sizes and data offsets ``[begin, end]``."""
    if isinstance(value, dict):
        dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
        if (
            isinstance(dtype, str)
            and _whole_numbers(shape)
            and _whole_numbers(offsets)
            and len(offsets) == 2
            and offsets[0] <= offsets[1]
        ):
            return TensorEntry(dtype=dtype, shape=tuple(shape), end=int(offsets[1]))
    _damaged(
        path, f"not a safetensors file (tensor {name!r} has no valid dtype, shape and offsets)"
    )


def _whole_numbers(value: Any) -> TypeGuard[list[int]]:
    """A JSON list of integers >= 0."""
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def _damaged(path: Path, problem: str) -> NoReturn:
    raise ResolutionError(f"{path}: {problem}", hint=_HINT)
