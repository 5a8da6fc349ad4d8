"""lm-eval's ``.pt`` steer files, read safely.

The format of lm-eval's ``steered`` model (``lm_eval/models/hf_steered.py``)::

    {hookpoint: {"steering_vector": Tensor, "steering_coefficient": float,
                 "action": "add" | "clamp", "bias": Tensor | None, "head_index": int | None}}

``hookpoint`` is a Hugging Face module name under ``model.base_model`` (``layers.3``), or, for
saeval, a TransformerLens hook name (``blocks.3.attn.hook_z`` is where ``head_index`` applies).
``add`` is ``h += c·v``; ``clamp`` is the projection ``h += (c - (h - b)·u)·u``, ``u = v/|v|``,
``b = bias`` (0 without one). lm-eval loads the file with ``torch.load(weights_only=False)``,
which runs whatever code the pickle names; saeval loads it with ``weights_only=True``, so a file
holding anything but tensors, numbers, strings, lists and dicts is refused, never executed.
torch is imported inside the functions (``saeval validate`` imports it only for a ``.pt`` file).
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
from pathlib import Path
from typing import Any

from saeval.errors import SteerFileError
from saeval.spec.csv_records import Problems
from saeval.spec.dialects import LM_EVAL_PT
from saeval.spec.steer_rows import SteerFile, VectorRow
from saeval.spec.vector_rows import HOOK_Z, head_hook_message

PT_SUFFIXES = (".pt", ".pth")
_FORMAT = "lm-eval's {hookpoint: {steering_vector, steering_coefficient, action, bias, head_index}}"
_SAFE_HINT = (
    "save only tensors, numbers, strings and None, e.g. torch.save({'layers.3': "
    "{'steering_vector': v, 'steering_coefficient': 4.0, 'action': 'add'}}, path)"
)


def load_pt(path: Path, shown: str) -> Any:
    """``torch.load(path, weights_only=True)``: SteerFileError, never code, for an unsafe pickle."""
    import torch

    try:
        with path.open("rb") as stream:
            return torch.load(stream, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SteerFileError(f"{shown}: file not found") from None
    except pickle.UnpicklingError as error:
        raise unpickling_error(shown, error) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise SteerFileError(
            f"{shown}: not a file torch.load can read ({_first_line(error)})"
        ) from None


def unpickling_error(shown: str, error: pickle.UnpicklingError) -> SteerFileError:
    """A pickle that names a Python global (``GLOBAL posix.system``) could run code: refused.
    Anything else the weights-only unpickler stops at is a damaged or foreign file."""
    named = re.search(r"GLOBAL ([\w.]+)", str(error))
    if named is None:
        reason = _first_line(error.__context__ or error)
        return SteerFileError(
            f"{shown}: not a file torch.load can read ({reason}); expected a file written by "
            "torch.save"
        )
    return SteerFileError(
        f"{shown}: refused: unpickling it needs a Python object ({named.group(1)}) that could "
        "run code; saeval reads .pt files with torch.load(weights_only=True), which never runs any",
        hint=_SAFE_HINT,
    )


def _first_line(error: BaseException) -> str:
    """An exception's first non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else "it ends before its data does"


def read_pt_steer_file(path: Path) -> SteerFile:
    """Read and check an lm-eval ``.pt`` steer file; SteerFileError listing every problem."""
    shown = str(path)
    config = load_pt(path, shown)
    problems = Problems(shown)
    if not isinstance(config, dict) or not config:
        problems.fatal(None, None, f"holds a {type(config).__name__}; expected {_FORMAT}")
    rows = [row for key, entry in config.items() if (row := _entry(key, entry, problems))]
    problems.raise_if_any()
    return SteerFile(
        path=path,
        text="".join(_describe(row, config[row.entry]) for row in rows),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        dialect=LM_EVAL_PT.name,
        rows=tuple(rows),
    )


def _entry(key: Any, entry: Any, problems: Problems) -> VectorRow | None:
    """One hookpoint's entry as a VectorRow, or None after recording its problems."""
    if not isinstance(key, str) or not key:
        problems.add(None, None, f"key {key!r} is not a hookpoint name; expected {_FORMAT}")
        return None
    shown = f"[{key}]"

    def add(column: str, message: str) -> None:
        problems.items.append(f"{problems.file}{shown} {column}: {message}")

    if not isinstance(entry, dict):
        add("steering_vector", f"a {type(entry).__name__}, not a dict; expected {_FORMAT}")
        return None
    before = len(problems.items)
    for unknown in sorted(set(map(str, entry)) - set(LM_EVAL_PT.columns)):
        add(unknown, f"unknown key; lm-eval's keys: {', '.join(LM_EVAL_PT.columns)}")
    width = _vector(entry.get("steering_vector"), "steering_vector", add)
    coefficient = _coefficient(entry.get("steering_coefficient", 1.0), add)
    action = entry.get("action")
    if action not in LM_EVAL_PT.actions:
        add("action", f"{action!r} is not an action of lm-eval's .pt files; valid: add, clamp")
    bias = entry.get("bias")
    if bias is not None:
        if action == "add":
            add("bias", "lm-eval refuses a bias with add (only clamp subtracts it); remove it")
        elif _vector(bias, "bias", add) not in (None, width):
            add("bias", f"has another width than the steering_vector ({width})")
    head = entry.get("head_index")
    if head is not None and (not isinstance(head, int) or isinstance(head, bool) or head < 0):
        add("head_index", f"{head!r} is not a head index; expected a whole number >= 0 or None")
    elif head is not None and not key.endswith(HOOK_Z):
        add("head_index", head_hook_message(key))
    if len(problems.items) > before or coefficient is None:
        return None
    return VectorRow(
        file=problems.file,
        line=0,
        vector=problems.file,
        hook=key,
        coefficient=coefficient,
        action=LM_EVAL_PT.actions[str(action)],
        head_index=head,
        entry=key,
        dialect=LM_EVAL_PT.name,
        dialect_action="clamp" if action == "clamp" else "",
    )


def _vector(value: Any, column: str, add: Any) -> int | None:
    """The width of a finite 1-D floating tensor, or None after recording why it is not one."""
    import torch

    if not isinstance(value, torch.Tensor):
        add(column, f"a {type(value).__name__}, not a tensor; expected a 1-D torch.Tensor")
    elif value.dim() != 1 or not value.is_floating_point() or value.numel() == 0:
        add(column, f"shape {tuple(value.shape)} {value.dtype}; expected a 1-D floating tensor")
    elif not bool(torch.isfinite(value).all()):
        add(column, "holds NaN or infinite values; expected finite numbers")
    else:
        return int(value.numel())
    return None


def _coefficient(value: Any, add: Any) -> float | None:
    """steering_coefficient as a finite float (a number or a one-element tensor)."""
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        add("steering_coefficient", f"{value!r} is not a number")
        return None
    if isinstance(value, bool) or not math.isfinite(number):
        add("steering_coefficient", f"{value!r} is not a finite number")
        return None
    return number


def _describe(row: VectorRow, entry: dict[str, Any]) -> str:
    """One line of the text a manifest records for a .pt file: what each entry holds."""
    vector = entry["steering_vector"]
    bias = entry.get("bias")
    parts = [
        f"{row.entry}: action={entry['action']}",
        f"steering_coefficient={row.coefficient!r}",
        f"steering_vector={tuple(vector.shape)} {str(vector.dtype).removeprefix('torch.')} "
        f"norm={float(vector.double().norm()):.6g}",
        "bias=None" if bias is None else f"bias norm={float(bias.double().norm()):.6g}",
        f"head_index={row.head_index}",
    ]
    return " ".join(parts) + "\n"
