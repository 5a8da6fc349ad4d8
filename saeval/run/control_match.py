"""Random controls matched on what the intervention did, not on its norm (``controls: {match:
kl}`` or ``{match: dose}``).

A control drawn at the intervention's norm (``saeval.steering.random_controls``) may perturb the
model far more or less than the intervention does. With a matched control, each control's strength
is searched, on the calibration prompts (``saeval.run.calibration``), until its measure equals
the intervention's at that strength within ``TOLERANCE``: from the intervention's strength (its
sign kept), each next strength is where a power law through the last two measurements meets the
target (a square law after the first), kept inside the bracket the measurements so far set
(bisection where it falls outside), at most ``MAX_STEPS`` measurements; the strength whose
measure came closest is used. A measure is any function of (plan,
strength) -> float, larger for a stronger edit (``MEASURES``: the KL to the unsteered model,
token-weighted over the calibration prompts' positions; the dose ``||h' - h|| / ||h||``, as the
evaluation measures it: ``saeval.steering.dose``, ``saeval.analysis.dose``).

The search runs once per (control, strength): its record (``controls/<control>@<scale>.json``,
``saeval.records.matched_control``) holds both measures, the strength found and every step, and
every worker that evaluates the control reads the strength from it (a worker that finds a search
under way waits for it).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from saeval.atomic import write_atomic
from saeval.records.matched_control import Matched, matched_path, matched_text, read_matched

if TYPE_CHECKING:
    from saeval.run.calibration import Calibration
    from saeval.run.config import RunConfig
    from saeval.spec.tasks import TaskSet
    from saeval.steering.hooks import Edit
    from saeval.steering.lm_eval_model import SteeredHFLM
    from saeval.steering.plan import SteerPlan

TOLERANCE = 0.10  # relative to the intervention's measure
MAX_STEPS = 12  # measurements of the control per search, the first at the intervention's strength

Measure = Callable[["SteerPlan", float], float]


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

    def measure(plan: SteerPlan, scale: float) -> float:
        per_position = _steered_pass(lm, calibration, plan.edits(scale))
        values = [value for document in per_position for value in document]
        return sum(values) / max(len(values), 1)

    return measure


def dose_measure(lm: SteeredHFLM, calibration: Calibration) -> Measure:
    """The mean dose ``||h' - h|| / ||h||`` of a plan at a strength over the steered positions
    of the calibration prompts but each one's first (0 where none is steered), as the
    evaluation's KL pass records it (``saeval.run.side_effects``)."""
    from saeval.analysis.dose import summarize_dose
    from saeval.run.side_effects import batch_size_of
    from saeval.steering import dose

    def measure(plan: SteerPlan, scale: float) -> float:
        recorded: dose.Recorded = []
        _steered_pass(lm, calibration, dose.recording(plan, scale, recorded))
        documents = calibration.documents
        summary = summarize_dose(dose.per_document(recorded, documents, batch_size_of(lm)))
        return 0.0 if summary is None else summary.mean

    return measure


def _steered_pass(
    lm: SteeredHFLM, calibration: Calibration, edits: Mapping[str, Edit]
) -> list[list[float]]:
    """The KL at every position of the calibration prompts under ``edits`` (the pass the
    evaluation's side-effect measure makes)."""
    from saeval.run.side_effects import batch_size_of
    from saeval.steering.divergence import kl_per_position

    return kl_per_position(
        lm.model,
        calibration.documents,
        edits,
        batch_size=batch_size_of(lm),
        pad_id=lm.tokenizer.pad_token_id or 0,
        prompt_ends=calibration.prompt_ends,
    )


MEASURES: dict[str, Callable[[SteeredHFLM, Calibration], Measure]] = {
    "kl": kl_measure,
    "dose": dose_measure,
}


def match_control(
    intervention: SteerPlan, control: SteerPlan, scale: float, match: str, measure: Measure
) -> Matched:
    """Search the control's strength so that its measure is the intervention's at ``scale``."""
    target = measure(intervention, scale)
    found, value, steps = search_strength(lambda s: measure(control, s), target, scale)
    within = abs(value - target) <= TOLERANCE * abs(target)
    return Matched(match, scale, target, found, value, within, steps, TOLERANCE)


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

    path = matched_path(folder, configuration)
    found = read_matched(path)
    if found is None:
        with _searching(path):  # another worker's search of it: wait for its record
            found = read_matched(path)
            if found is None:
                measure = MEASURES[match](lm, calibration_prompts(lm, config, tasks))
                found = match_control(*plans, scale, match, measure)
                write_atomic(path, matched_text(found))
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
