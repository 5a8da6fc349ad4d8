"""The steer files of a run or a measurement, read and resolved offline, and their model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from saeval.errors import ResolutionError, UsageError
from saeval.spec.models import hf_model_id
from saeval.spec.resolve import resolve
from saeval.spec.sae_facts import ResolvedSae
from saeval.spec.steer_file import SteerFile, read_steer_file
from saeval.spec.steer_rows import with_default_positions


@dataclass(frozen=True)
class SteerSet:
    """Checked steer files, their distinct SAEs and the Hugging Face id (or folder) of the model."""

    files: list[SteerFile]
    saes: list[ResolvedSae]
    model_id: str


def read_steer_set(paths: Sequence[Path], model: str | None, positions: str = "all") -> SteerSet:
    """Read and resolve every steer file; the model is ``model`` or the one the SAEs name; rows
    with an empty positions cell steer at ``positions``."""
    if not paths:
        raise UsageError("no steer file given")
    files = [with_default_positions(read_steer_file(path), positions) for path in paths]
    resolution = resolve(files, model=model)
    if not resolution.ok:
        problems = resolution.problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ResolutionError(f"{problems[0]}{more}", hint="saeval validate lists every problem")
    saes = {(r.sae.release, r.sae.sae_id): r.sae for r in resolution.rows if r.sae}
    model_id = model_id_of(model) or resolution.base_model
    if model_id is None:
        raise UsageError(
            "no --model given and the SAEs do not name their base model", hint="pass --model"
        )
    return SteerSet(files=files, saes=list(saes.values()), model_id=model_id)


def model_id_of(model: str | None) -> str | None:
    """The Hugging Face id of --model (catalog aliases mapped); a local folder as given."""
    if model is None or Path(model).expanduser().is_dir():
        return model
    return hf_model_id(model)
