"""``saeval run --dose``: strengths given in activation units, turned into scales.

A dose ``d`` asks for a mean ``||h' - h|| / ||h|| = |d|`` at the steered positions of the
calibration prompts (``saeval.run.calibration``: the first ``--kl-docs`` documents of every task
of the run, as lm-eval builds their requests), every steered position but the first of each prompt
(its norm is an outlier in Gemma-family models), positions as the rows' modes say. At each hook
point an add row or vector moves ``h`` by ``scale * v``, so the dose of one position is ``|scale|
* ||v|| / ||h||`` and the mean dose is ``|scale| * m`` with ``m`` the mean of ``||v|| / ||h||``
over those positions (a mean of ratios, not a ratio of means), measured on the unsteered
activations of every hook point (``saeval.steering.dose.probing``); so ``scale = d / m``, rounded
to 4 significant digits (within 0.05% of the dose). Clamps, projections and adds through an SAE
set values that are already in activation units, or are not linear in the scale: a row of them is
an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from saeval.errors import UsageError
from saeval.run.data_parallel import launched_size
from saeval.spec.dialects import Action
from saeval.spec.steer_rows import VectorRow

if TYPE_CHECKING:
    from saeval.run.config import RunConfig, RunEvents
    from saeval.run.steer_set import SteerSet
    from saeval.spec.experiment import Experiment
    from saeval.spec.steer_file import SteerFile
    from saeval.spec.tasks import TaskSet
    from saeval.steering.lm_eval_model import SteeredHFLM

DIGITS = 4  # significant digits of a scale made from a dose (its folder name: steered@12.34)


@dataclass(frozen=True)
class DoseCalibration:
    """Requested doses, the scales they became, and what the calibration measured."""

    doses: tuple[float, ...]
    scales: tuple[float, ...]
    per_unit_scale: float  # m: the mean dose of scale 1 on the calibration prompts
    hooks: dict[str, float | None]  # each hook point's own mean dose of scale 1
    documents: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        """The ``dose`` record of run.json."""
        return {
            "doses": list(self.doses),
            "scales": list(self.scales),
            "per_unit_scale": self.per_unit_scale,
            "hooks": self.hooks,
            "documents": self.documents,
            "tokens": self.tokens,
        }

    def lines(self) -> list[str]:
        """One line per dose for the user: ``dose 0.5 -> scale 12.34``."""
        head = (
            f"dose calibration: scale 1 doses {self.per_unit_scale:.4g} on average over "
            f"{self.tokens} positions of {self.documents} unsteered prompts"
        )
        pairs = [f"dose {d:g} -> scale {s:g}" for d, s in zip(self.doses, self.scales, strict=True)]
        return [head, *pairs]


def check_dose_rows(steer: Sequence[SteerFile]) -> None:
    """UsageError naming the first row --dose cannot scale (anything but add rows and vectors)."""
    for file in steer:
        for row in file.rows:
            action = Action(row.action)
            if action is not Action.ADD:
                where = row.where(row.column("action")) if not isinstance(row, VectorRow) else ""
                raise UsageError(
                    f"{where or row.where()}: --dose (dose:) scales add rows and vectors, but "
                    f"this row is {action.value} (its value is already in activation units or "
                    "not proportional to the scale)",
                    hint="use --scale for steer files with clamp, ablate, project or "
                    "add_through_sae rows",
                )


def calibrated(
    config: RunConfig,
    steer: Sequence[SteerFile],
    model_id: str,
    device: str,
    tasks: TaskSet,
    events: RunEvents,
) -> tuple[RunConfig, DoseCalibration]:
    """``config`` with the scales its doses ask for, and the calibration behind them (the model
    is loaded for it and freed after)."""
    import gc

    from saeval.run.evaluation import steered_lm

    check_dose_rows(steer)
    if launched_size() > 1:
        raise UsageError(
            "--dose is not supported under a data-parallel launch (its calibration runs in one "
            "process)",
            hint="run it once in one process and pass the scales run.json records with --scale",
        )
    if config.kl_docs <= 0:
        raise UsageError(
            "--dose measures on the first --kl-docs documents: give --kl-docs 1 or more"
        )
    events.note(f"loading {model_id} on {device} to turn --dose into scales")
    rows = [row for file in steer for row in file.rows]
    lm = steered_lm(rows, model_id, device, config.dtype, config.batch_size)
    try:
        calibration = calibrate(lm, config, tasks)
    finally:
        del lm
        gc.collect()
    for line in calibration.lines():
        events.note(line)
    return replace(config, scales=calibration.scales), calibration


def calibrate(lm: SteeredHFLM, config: RunConfig, tasks: TaskSet) -> DoseCalibration:
    """Measure the mean dose of scale 1 on the calibration prompts and divide each dose by it."""
    from saeval.analysis.dose import summarize_dose
    from saeval.run.calibration import calibration_prompts
    from saeval.run.side_effects import batch_size_of
    from saeval.steering import dose

    prompts = calibration_prompts(lm, config, tasks)
    documents = prompts.documents
    recorded: dose.Recorded = []
    size = batch_size_of(lm)
    pad_id = lm.tokenizer.pad_token_id or 0
    ends = prompts.prompt_ends
    dose.probe(
        lm.model, lm.plan, documents, recorded, batch_size=size, pad_id=pad_id, prompt_ends=ends
    )
    summary = summarize_dose(dose.per_document(recorded, documents, size))
    if summary is None or not summary.mean > 0:
        raise UsageError(
            "--dose: the steer file changes no position of the calibration prompts at scale 1 "
            "(zero vectors, or rows steering only generated text)",
            hint="use --scale",
        )
    scales = tuple(_rounded(d / summary.mean) for d in config.doses)
    hooks = {name: hook.mean for name, hook in summary.hooks.items()}
    return DoseCalibration(
        config.doses, scales, summary.mean, hooks, len(documents), summary.tokens
    )


def _rounded(scale: float) -> float:
    """``scale`` to DIGITS significant digits."""
    if scale == 0:
        return 0.0
    return round(scale, DIGITS - 1 - math.floor(math.log10(abs(scale))))


def experiment_scales(
    experiment: Experiment,
    sets: Mapping[str, SteerSet],
    config: RunConfig,
    model_id: str,
    device: str,
    tasks: TaskSet,
) -> Experiment:
    """``experiment`` with the scales of each intervention that gives ``dose:``, calibrated on
    the experiment's tasks with one model load (each intervention's own plan); unchanged when
    none does."""
    import gc

    from saeval.run.evaluation import steered_lm
    from saeval.steering.plan import plan_rows
    from saeval.steering.sae_loading import row_loader

    dosed = [i for i in experiment.interventions if i.doses]
    if not dosed:
        return experiment
    for intervention in dosed:
        check_dose_rows(sets[intervention.name].files)
    rows = {i.name: [row for f in sets[i.name].files for row in f.rows] for i in dosed}
    lm = steered_lm(rows[dosed[0].name], model_id, device, config.dtype, config.batch_size)
    scales: dict[str, tuple[float, ...]] = {}
    try:
        for intervention in dosed:
            plan_of = rows[intervention.name]
            lm.plan = plan_rows(plan_of, row_loader(plan_of, device="cpu", dtype="float32"))
            found = calibrate(lm, replace(config, doses=intervention.doses), tasks)
            scales[intervention.name] = found.scales
    finally:
        del lm
        gc.collect()
    interventions = tuple(
        replace(i, scales=scales[i.name]) if i.name in scales else i
        for i in experiment.interventions
    )
    return replace(experiment, interventions=interventions)
