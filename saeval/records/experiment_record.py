"""An experiment run folder's own records: ``experiment.json`` (written once, read on resume),
each worker's ``workers/<worker>.json`` and each random control's ``controls/<name>.json``.

Schema ``saeval.experiment/1``::

    schema       "saeval.experiment/1"
    file         the experiment file's path as given
    sha256       sha256 of its text
    text         its text
    definition   what the workers run (``saeval.run.experiment_prepare``): model, target,
                 capability, include_path, options, interventions {name: {steer, steer_sha256,
                 scales, positions}}, random_controls, control_seed, configurations (each a
                 ``saeval.records.experiment_folder.Configuration``), units, report settings

``workers/<worker>.json`` (``saeval.worker/1``): the worker's device, pid, status, start,
timings and units done (``saeval.run.workers``); ``controls/<name>.json`` (``saeval.control/1``):
the intervention, the control's k and what its seed drew (``saeval.steering.random_controls``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saeval.errors import ResultsError
from saeval.records.experiment_folder import EXPERIMENT_FILE
from saeval.records.json_file import load_json
from saeval.records.schema import schema_id, schema_of

KIND = "experiment"
SCHEMA = schema_id(KIND, 1)
WORKER_SCHEMA = schema_id("worker", 1)
CONTROL_SCHEMA = schema_id("control", 1)


@dataclass(frozen=True)
class ExperimentRecord:
    """What ``experiment.json`` holds: the experiment file and its definition."""

    file: str
    sha256: str
    text: str
    definition: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON form, its schema first."""
        return {"schema": SCHEMA, **vars(self)}


def read_definition(folder: Path) -> dict[str, Any]:
    """The definition an experiment run folder records; ResultsError if it has none."""
    path = folder / EXPERIMENT_FILE
    if not path.exists():
        raise ResultsError(
            f"{folder} is not an experiment run (no {EXPERIMENT_FILE})",
            hint="saeval run STEER.csv runs one steer file; an experiment is a .yaml file",
        )
    data = load_json(path, "experiment record")
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a saeval experiment record (schema {SCHEMA})")
    schema_of(data, KIND, (1,), path)
    definition = data.get("definition")
    if not isinstance(definition, dict):
        raise ResultsError(f"{path}: has no definition")
    return definition
