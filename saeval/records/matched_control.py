"""A matched control's search: ``controls/<control>@<scale>.json`` of an experiment run folder
(``saeval.run.control_match`` writes it once per control and strength; every worker that
evaluates the control reads its strength from it).

Schema ``saeval.matched-control/1``::

    schema           "saeval.matched-control/1"
    match            what was matched: "kl" or "dose" (``CONTROL_MATCHES`` of the spec)
    scale            the intervention's strength
    intervention     the intervention's measure at ``scale`` on the calibration prompts
    control_scale    the strength the control runs at
    control          the control's measure at ``control_scale``
    within_tolerance whether ``control`` is ``intervention``'s within ``tolerance``
    steps            [strength, measure] of every control measurement, in order
    tolerance        relative to ``intervention`` (0.1)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from saeval.errors import ResultsError
from saeval.records.experiment_folder import CONTROLS_DIR
from saeval.records.json_file import json_text, load_json
from saeval.records.schema import schema_id, schema_of

KIND = "matched-control"
SCHEMA = schema_id(KIND, 1)
WHAT = "matched-control record"


@dataclass(frozen=True)
class Matched:
    """What one search found: both measures, the control's strength and every step taken."""

    match: str
    scale: float  # the intervention's strength
    intervention: float  # the intervention's measure at ``scale``
    control_scale: float  # the strength the control runs at
    control: float  # the control's measure at ``control_scale``
    within_tolerance: bool
    steps: tuple[tuple[float, float], ...]  # (strength, measure) of every control measurement
    tolerance: float  # relative to ``intervention``

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON form, its schema first."""
        return {"schema": SCHEMA, **asdict(self)}


def matched_path(folder: Path, configuration: str) -> Path:
    """``<run>/controls/<control>@<scale>.json``."""
    return folder / CONTROLS_DIR / f"{configuration}.json"


def read_matched(path: Path) -> Matched | None:
    """The search recorded at ``path``; None if there is none yet; ResultsError naming the file
    for anything else that is not such a record."""
    if not path.exists():
        return None
    data = load_json(path, WHAT)
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a saeval {WHAT} (not a JSON object)")
    schema_of(data, KIND, (1,), path)
    try:
        found = Matched(
            match=str(data["match"]),
            scale=float(data["scale"]),
            intervention=float(data["intervention"]),
            control_scale=float(data["control_scale"]),
            control=float(data["control"]),
            within_tolerance=bool(data["within_tolerance"]),
            steps=tuple((float(s), float(m)) for s, m in data["steps"]),
            tolerance=float(data["tolerance"]),
        )
    except KeyError as error:
        raise ResultsError(f"{path}: not a saeval {WHAT} (no {error.args[0]!r})") from None
    except (TypeError, ValueError):
        numbers = "scale, intervention, control_scale, control, tolerance"
        raise ResultsError(
            f"{path}: not a saeval {WHAT} ({numbers} must be numbers and steps pairs of them)"
        ) from None
    if not math.isfinite(found.control_scale):
        raise ResultsError(f"{path}: not a saeval {WHAT} (control_scale is not finite)")
    return found


def matched_text(matched: Matched) -> str:
    """The file's text."""
    return json_text(matched.to_dict())
