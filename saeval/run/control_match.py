"""Random controls matched on what the intervention did, not on its norm (``controls: {match:
kl}``).

A control drawn at the intervention's norm (``saeval.steering.random_controls``) may perturb the
model far more or less than the intervention does. With a matched control, each control's
strength is searched, on the calibration prompts (``saeval.run.calibration``), until its measure
equals the intervention's at that strength within ``TOLERANCE``: from the intervention's
strength (its sign kept), each next strength is where a power law through the last two
measurements meets the target (a square law after the first), kept inside the bracket the
measurements so far set (bisection where it falls outside), at most ``MAX_STEPS`` measurements;
the strength whose measure came closest is used. A measure is any function of (plan, strength)
-> float, larger for a stronger edit (``MEASURES``: the KL to the unsteered model,
token-weighted over the calibration prompts' positions).

The search runs once per (control, strength): its record (``controls/<control>@<scale>.json``)
holds both measures, the strength found and every step, and every worker that evaluates the
control reads the strength from it (a worker that finds a search under way waits for it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.atomic import write_atomic
from saeval.errors import ResultsError

if TYPE_CHECKING:
    from saeval.run.calibration import Calibration
    from saeval.run.config import RunConfig
    from saeval.spec.tasks import TaskSet
    from saeval.steering.lm_eval_model import SteeredHFLM
    from saeval.steering.plan import SteerPlan

TOLERANCE = 0.10  # relative to the intervention's measure
MAX_STEPS = 12  # measurements of the control per search, the first at the intervention's strength
SCHEMA = "saeval.matched-control/1"

Measure = Callable[["SteerPlan", float], float]


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (``controls/<control>@<scale>.json``)."""
        return {"schema": SCHEMA, **asdict(self), "tolerance": TOLERANCE}


def search_strength(
    measure: Callable[[float], float], target: float, start: float
) -> tuple[float, float, tuple[tuple[float, float], ...]]:
    """The strength (``start``'s sign) whose measure is ``target`` within ``TOLERANCE``, or the
    closest one tried in ``MAX_STEPS``; with its measure and every (strength, measure) tried."""
    sign = -1.0 if start < 0 else 1.0
    tried: list[tuple[float, float]] = []
    magnitude, low, high = abs(start), 0.0, math.inf
    while len(tried) < MAX_STEPS:
        value = measure(sign * magnitude)
        tried.append((magnitude, value))
        if abs(value - target) <= TOLERANCE * abs(target) or magnitude == 0.0:
            break
        if value > target:
            high = magnitude
        else:
            low = magnitude
        magnitude = _next_guess(tried, target, low, high)
    best = min(tried, key=lambda step: abs(step[1] - target))
    return sign * best[0], best[1], tuple((sign * m, v) for m, v in tried)


def _next_guess(tried: list[tuple[float, float]], target: float, low: float, high: float) -> float:
    """The next magnitude: where a power law through the last two measurements (a square law
    after the first: a small perturbation's KL grows with the square of its size) meets the
    target, if that lies inside the bracket (low, high); else the bracket's middle (or twice
    the last magnitude while nothing overshot)."""
    magnitude, value = tried[-1]
    power = 2.0
    if len(tried) > 1:
        before, earlier = tried[-2]
        if min(value, earlier) > 0 and before != magnitude and earlier != value:
            power = min(max(math.log(value / earlier) / math.log(magnitude / before), 0.5), 4.0)
    guess = magnitude * (target / value) ** (1.0 / power) if value > 0 else math.nan
    if low < guess < high:
        return guess
    return magnitude * 2.0 if math.isinf(high) else (low + high) / 2.0


def kl_measure(lm: SteeredHFLM, calibration: Calibration) -> Measure:
    """KL(unsteered || steered) of a plan at a strength: its sum over every position of the
    calibration prompts over their count (nats per token), as ``saeval kl`` computes it."""
    from saeval.run.side_effects import batch_size_of
    from saeval.steering.divergence import kl_per_position

    def measure(plan: SteerPlan, scale: float) -> float:
        per_position = kl_per_position(
            lm.model,
            calibration.documents,
            plan.edits(scale),
            batch_size=batch_size_of(lm),
            pad_id=lm.tokenizer.pad_token_id or 0,
            prompt_ends=calibration.prompt_ends,
        )
        values = [value for document in per_position for value in document]
        return sum(values) / max(len(values), 1)

    return measure


MEASURES: dict[str, Callable[[SteeredHFLM, Calibration], Measure]] = {"kl": kl_measure}


def match_control(
    intervention: SteerPlan, control: SteerPlan, scale: float, match: str, measure: Measure
) -> Matched:
    """Search the control's strength so that its measure is the intervention's at ``scale``."""
    target = measure(intervention, scale)
    found, value, steps = search_strength(lambda s: measure(control, s), target, scale)
    within = abs(value - target) <= TOLERANCE * abs(target)
    return Matched(match, scale, target, found, value, within, steps)


def matched_strength(
    folder: Path,
    configuration: str,
    plans: tuple[SteerPlan, SteerPlan],
    scale: float,
    match: str,
    lm: SteeredHFLM,
    config: RunConfig,
    tasks: TaskSet,
) -> float:
    """The strength control ``configuration`` (its plan second in ``plans``, the intervention's
    first) runs at: the recorded search's, or a new search on ``config``'s calibration prompts,
    recorded unless another worker recorded one first."""
    from saeval.run.calibration import calibration_prompts

    path = record_path(folder, configuration)
    found = read_matched(path)
    if found is None:
        with _searching(path):  # another worker's search of it: wait for its record
            found = read_matched(path)
            if found is None:
                measure = MEASURES[match](lm, calibration_prompts(lm, config, tasks))
                found = match_control(*plans, scale, match, measure)
                write_matched(path, found)
    return found.control_scale


@contextlib.contextmanager
def _searching(path: Path) -> Iterator[None]:
    """Hold ``.<record>.lock`` beside a search's record (blocking) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def record_path(folder: Path, configuration: str) -> Path:
    """``<run>/controls/<control>@<scale>.json``."""
    from saeval.records.experiment_folder import CONTROLS_DIR

    return folder / CONTROLS_DIR / f"{configuration}.json"


def read_matched(path: Path) -> Matched | None:
    """The search recorded at ``path``; None if there is none yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: cannot read it ({error})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not a saeval matched-control record (schema {SCHEMA})")
    fields = {key: data[key] for key in Matched.__dataclass_fields__}
    fields["steps"] = tuple(tuple(step) for step in fields["steps"])
    return Matched(**fields)


def write_matched(path: Path, matched: Matched) -> None:
    """Write a search's record (atomically)."""
    write_atomic(path, json.dumps(matched.to_dict(), indent=2) + "\n")
