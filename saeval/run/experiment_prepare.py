"""An experiment made ready to run: every steer file read and resolved, one model, the task names
and options checked (all before any model loads), and its run folder opened.

The run folder is a ``saeval run`` folder (``saeval.run.folder``: ``run.json`` with the spec of
every option that determines the numbers, the lock, ``--resume`` that must match) plus
``experiment.json``: the experiment file's text and the *definition* the workers run (model,
tasks, options, each intervention's steer files with their sha256 and strengths, every
configuration with its control seed, and the report settings). A resumed experiment must have
the same definition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from saeval.analysis.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN
from saeval.atomic import write_atomic
from saeval.errors import ResolutionError, UsageError
from saeval.records.experiment_folder import EXPERIMENT_FILE, configurations, units
from saeval.records.experiment_record import ExperimentRecord, read_definition
from saeval.records.json_file import json_text
from saeval.run.config import RunConfig
from saeval.run.dose_scale import experiment_scales
from saeval.run.folder import open_run_folder
from saeval.run.steer_set import SteerSet, model_id_of, read_steer_set
from saeval.run.store import RunStore
from saeval.spec.chat_template import check_local_template
from saeval.spec.experiment import Experiment
from saeval.spec.experiment_interventions import Intervention, compared_with
from saeval.spec.options import declared
from saeval.spec.sae_facts import ResolvedSae
from saeval.spec.steer_file import SteerFile
from saeval.spec.tasks import TaskSet, validate_tasks

DEFAULT_CONTROL_SEED = 0  # the experiment's seed, when it sets none, for its controls


@dataclass(frozen=True)
class Prepared:
    """A checked experiment: its definition, the run options and what was read."""

    experiment: Experiment
    definition: dict[str, Any]
    config: RunConfig
    steer: list[SteerFile]
    saes: list[ResolvedSae]
    tasks: TaskSet


def prepare(
    experiment: Experiment, *, output: Path, name: str | None, resume: bool, device: str
) -> Prepared:
    """Read and resolve every steer file, agree on one model, check tasks and options."""
    sets = {
        i.name: read_steer_set(i.steer, experiment.model, i.positions)
        for i in experiment.interventions
        if i.steers
    }
    model_id = _one_model(experiment, sets)
    config = RunConfig.of(
        experiment.options,
        steer_files=experiment.steer_files,
        tasks=experiment.tasks,
        model=model_id,
        device=device,
        include_path=experiment.include_path,
        output=output,
        name=name,
        scales=_scales(experiment) or (1.0,),  # dose: interventions get theirs below
        margin=DEFAULT_MARGIN if experiment.margin is None else experiment.margin,
        resume=resume,
    )
    config.check()
    if config.apply_chat_template:
        check_local_template(model_id)
    tasks = validate_tasks(config.tasks, config.include_path)
    experiment = experiment_scales(experiment, sets, config, model_id, device, tasks)
    config = replace(config, scales=_scales(experiment))
    files = {str(f.path): f for steer_set in sets.values() for f in steer_set.files}
    saes = {(s.release, s.sae_id): s for steer_set in sets.values() for s in steer_set.saes}
    return Prepared(
        experiment,
        _definition(experiment, sets, model_id, config),
        config,
        list(files.values()),
        list(saes.values()),
        tasks,
    )


def _one_model(experiment: Experiment, sets: dict[str, SteerSet]) -> str:
    """The model every intervention steers (``model:`` or the one their SAEs name)."""
    if not sets:  # prompts alone
        model_id = model_id_of(experiment.model)
        if model_id is None:
            raise UsageError(
                f"{experiment.path}: no model: given, and no intervention has steer files that "
                "name one",
                hint="add model: to the experiment file, or pass --model",
            )
        return model_id
    models = {name: steer_set.model_id for name, steer_set in sets.items()}
    if len(set(models.values())) > 1:
        which = "; ".join(f"{name}: {model}" for name, model in models.items())
        raise ResolutionError(
            f"{experiment.path}: the interventions steer different models ({which})",
            hint="one experiment evaluates one model: set model: or split the experiment",
        )
    return next(iter(models.values()))


def _definition(
    experiment: Experiment, sets: dict[str, SteerSet], model_id: str, config: RunConfig
) -> dict[str, Any]:
    """What the workers run (JSON-able); a resumed experiment must define the same."""
    scales = {i.name: i.scales for i in experiment.interventions}
    by_name = {i.name: i for i in experiment.interventions}
    seed = DEFAULT_CONTROL_SEED if experiment.options.seed is None else experiment.options.seed
    prompts = {i.name: i.prompt for i in experiment.interventions if i.prompt is not None}
    configs = configurations(scales, experiment.random_controls, seed, prompts)
    return {
        "model": model_id,
        "target": list(experiment.target),
        "capability": list(experiment.capability),
        "include_path": [str(Path(p).resolve()) for p in experiment.include_path],
        "options": {item.name: getattr(config, item.name) for item in declared()},
        "interventions": {
            i.name: _intervention(i, sets, by_name) for i in experiment.interventions
        },
        "random_controls": experiment.random_controls,
        **({"control_match": match} if (match := experiment.control_match) != "norm" else {}),
        "control_seed": seed,
        "configurations": [config.to_dict() for config in configs],
        "units": [list(unit) for unit in units(configs, experiment.tasks)],
        "report": {
            "target_metric": experiment.target_metric,
            "capability_metric": experiment.capability_metric,
            "target_direction": experiment.target_direction,
            "margin": DEFAULT_MARGIN if experiment.margin is None else experiment.margin,
            "alpha": DEFAULT_ALPHA if experiment.alpha is None else experiment.alpha,
        },
    }


def _intervention(
    intervention: Intervention, sets: dict[str, SteerSet], by_name: dict[str, Intervention]
) -> dict[str, Any]:
    """One intervention's part of the definition (keys beyond the steer files only when set;
    ``compare_to`` as [steering intervention, strength])."""
    files = sets[intervention.name].files if intervention.steers else []
    paired = None if intervention.compare_to is None else compared_with(intervention, by_name)
    optional = {
        "doses": list(intervention.doses) or None,
        "positions": None if intervention.positions == "all" else intervention.positions,
        "prompt": intervention.prompt,
        "compare_to": None if paired is None else list(paired),
    }
    return {
        "steer": [str(f.path.resolve()) for f in files],
        "steer_sha256": [f.sha256 for f in files],
        "scales": list(intervention.scales),
        **{key: value for key, value in optional.items() if value is not None},
    }


def _scales(experiment: Experiment) -> tuple[float, ...]:
    """Every strength of the experiment's interventions, in order."""
    return tuple(sorted({s for i in experiment.interventions for s in i.scales}))


def open_experiment_folder(prepared: Prepared, device: str) -> RunStore:
    """A new experiment run folder (named ``<yaml stem>-<date>-<time>`` unless --name), or
    the one --resume continues, whose definition must be this one; locked until closed."""
    config = prepared.config
    if not config.resume and config.name is None:
        config = _named(config, prepared.experiment.path.stem)
    model_id = prepared.definition["model"]
    store = open_run_folder(config, prepared.steer, prepared.saes, model_id, device, prepared.tasks)
    try:
        _record_definition(store, prepared)
    except BaseException:
        store.close()
        raise
    return store


def _named(config: RunConfig, stem: str) -> RunConfig:
    """``config`` with the default name of a new experiment run (a counter if it exists)."""
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    counter = 1
    while (config.output / (base if counter == 1 else f"{base}-{counter}")).exists():
        counter += 1
    return replace(config, name=base if counter == 1 else f"{base}-{counter}")


def _record_definition(store: RunStore, prepared: Prepared) -> None:
    """Write experiment.json into a new run; check a resumed run's against this one."""
    path = store.folder / EXPERIMENT_FILE
    experiment = prepared.experiment
    if prepared.config.resume:
        before = read_definition(store.folder)
        changed = sorted(
            key
            for key in set(before) | set(prepared.definition)
            if before.get(key) != prepared.definition.get(key)
        )
        if changed:
            raise UsageError(
                f"{store.folder} ran another experiment definition ({', '.join(changed)} differ)",
                hint="resume with the same experiment file, or start a new run without --resume",
            )
        return
    record = ExperimentRecord(
        str(experiment.path), experiment.sha256, experiment.text, prepared.definition
    )
    write_atomic(path, json_text(record.to_dict()))
