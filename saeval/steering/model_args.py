"""The arguments of the ``sae_steered`` lm-eval model (``--model_args``): the model name under
its own name or the seed's alias, and the steer plan, from a steer file or prebuilt."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from saeval.errors import UsageError
from saeval.spec.steer_file import read_steer_file
from saeval.steering.plan import SteerPlan, build_plan


def load_plan(steer_path: str | PathLike[str]) -> SteerPlan:
    """Read a steer file (any dialect, or lm-eval's .pt) and build its plan (SAEs on the CPU;
    edits move to each activation)."""
    return build_plan(read_steer_file(Path(steer_path)))


def steer_plan(steer_path: str | None, plan: SteerPlan | None) -> SteerPlan:
    """The plan given, or the one built from the steer file given (exactly one of them)."""
    if steer_path is not None and plan is not None:
        raise UsageError("give steer_path or a prebuilt plan, not both")
    if steer_path is not None:
        return load_plan(steer_path)
    if plan is None:
        raise UsageError("the sae_steered model needs steer_path= (or csv_path=) in --model_args")
    return plan


def one_of(name: str, value: Any, alias: str, alias_value: Any) -> str | None:
    """The value of an argument given under its own name or under its seed alias."""
    if value is not None and alias_value is not None:
        raise UsageError(f"give {name} or its alias {alias}, not both")
    chosen = value if value is not None else alias_value
    if chosen is not None and not isinstance(chosen, str | PathLike):
        raise UsageError(
            f"{name} must be a model name or path, not a {type(chosen).__name__}",
            hint="a name keeps accelerate data parallelism and parallelize=True working",
        )
    return None if chosen is None else str(chosen)
