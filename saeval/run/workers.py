"""One worker of an experiment: load the model once, then take (configuration, task) units from
the run folder's queue until none is left, saving each the moment it finishes.

Workers are processes of their own (``python -m saeval.run.workers RUN WORKER DEVICE``, a
submitit job, a Slurm array task); everything they need is in the run folder
(``experiment.json`` and ``run.json``). A worker switches the steer plan of its one loaded model
per configuration (plans are built once and kept; a control's plan is drawn from its seed,
``saeval.steering.controls``), evaluates with ``saeval.run.evaluation.evaluate`` and measures
KL and generation quality (``saeval.run.side_effects``) like ``saeval run`` does, takes and
fills the baseline cache for baseline units, and records every result and every failure in
``run.json`` under the manifest lock (``saeval.run.unit_queue``).
A failing unit is recorded and the worker goes on with the next one.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.atomic import write_atomic
from saeval.errors import ResultsError, SaevalError
from saeval.records.experiment_folder import (
    CONTROLS_DIR,
    WORKERS_DIR,
    Configuration,
    control_file,
    worker_file,
)
from saeval.records.experiment_record import CONTROL_SCHEMA, WORKER_SCHEMA, read_definition
from saeval.records.json_file import json_text
from saeval.records.run_record import Manifest, now
from saeval.run import evaluation
from saeval.run.baseline_cache import BaselineCache, baseline_inputs, baseline_key
from saeval.run.config import RunConfig, SilentEvents
from saeval.run.lm_eval_format import TaskOutput
from saeval.run.quiet import quiet_lm_eval
from saeval.run.side_effects import side_effect_texts
from saeval.run.store import RunStore
from saeval.run.unit_queue import claim, shared_store
from saeval.spec.options import from_record
from saeval.spec.steer_file import AnyRow, read_steer_file
from saeval.spec.steer_rows import with_default_positions
from saeval.spec.tasks import TaskSet, validate_tasks

if TYPE_CHECKING:
    from saeval.steering.lm_eval_model import SteeredHFLM
    from saeval.steering.plan import SteerPlan


class _Detached(RunStore):
    """The run's store as ``load_model`` updates it, without writing ``run.json`` (the worker
    records the model it loaded under the manifest lock itself)."""

    def save(self) -> None:
        """Write nothing."""


def worker_config(definition: dict[str, Any], output: Path, device: str) -> RunConfig:
    """The options of ``saeval run`` every unit of the experiment is evaluated with."""
    return RunConfig.of(
        from_record(definition["options"]),
        steer_files=(),
        tasks=tuple(definition["target"] + definition["capability"]),
        model=definition["model"],
        device=device,
        include_path=tuple(Path(p) for p in definition["include_path"]),
        output=output,
    )


def work(folder: Path, worker: str, device: str, parent: int | None = None) -> int:
    """Run units until none is left (or the parent process ``parent`` is gone); the number of
    units this worker finished."""
    definition = read_definition(folder)
    config = worker_config(definition, folder.parent, device)
    started = time.perf_counter()
    record = {"worker": worker, "pid": os.getpid(), "host": socket.gethostname()}
    record |= {"device": device, "started": now(), "status": "loading"}
    _write_record(folder, worker, record)
    try:
        units = _Units(folder, worker, definition, config)
        record |= {"status": "running", "model_load_s": round(time.perf_counter() - started, 3)}
        _write_record(folder, worker, record)
        with quiet_lm_eval(lambda done, total: None):
            done = units.run(parent)
    except SaevalError as error:
        with shared_store(folder) as store:
            store.add_error(error, None, traceback.format_exc())
        _write_record(folder, worker, record | {"status": "failed", "error": error.message})
        raise
    _write_record(folder, worker, record | {"status": "finished", "finished": now(), "units": done})
    return done


def _write_record(folder: Path, worker: str, record: dict[str, Any]) -> None:
    path = folder / WORKERS_DIR / worker_file(worker, ".json")
    write_atomic(path, json_text({"schema": WORKER_SCHEMA, **record}))


class _Units:
    """The units of one worker: its model, its plans and how each unit is run and saved."""

    def __init__(
        self, folder: Path, worker: str, definition: dict[str, Any], config: RunConfig
    ) -> None:
        self.folder, self.worker, self.config = folder, worker, config
        self.definition = definition
        with shared_store(folder) as store:
            self.manifest = store.manifest
        self.tasks = _checked_tasks(config, self.manifest)
        self.steer = {name: _rows(info) for name, info in definition["interventions"].items()}
        self.configurations = {c["name"]: Configuration(**c) for c in definition["configurations"]}
        self.plans: dict[tuple[str, int | None], SteerPlan] = {}
        self.lm, self.facts = self._load()

    def _load(self) -> tuple[SteeredHFLM, Manifest]:
        """Load the model once (no steering) and record it in run.json if no worker has."""
        detached = _Detached(self.folder, self.manifest)
        device = self.config.device or "cpu"
        lm = evaluation.load_model(
            detached, self.config, [], self.config.model or "", device, SilentEvents()
        )
        with shared_store(self.folder) as store:
            if store.manifest.model.revision is None:
                store.manifest.model = detached.manifest.model
            store.manifest.timings[f"model_load_s[{self.worker}]"] = detached.manifest.timings[
                "model_load_s"
            ]
            store.save()
        return lm, detached.manifest

    def run(self, parent: int | None) -> int:
        """Take and run units in order until none is left; the number this worker finished."""
        finished = {(r.configuration, r.task) for r in self.manifest.completed}
        count = 0
        for index, (name, task) in enumerate(self.definition["units"]):
            if parent is not None and os.getppid() != parent:
                break  # the parent is gone: nobody would collect the results
            if (name, task) in finished or not claim(self.folder, index, self.worker):
                continue
            try:
                self._unit(self.configurations[name], task)
                count += 1
            except Exception as error:
                self._failed(error, name, task)
        return count

    def _unit(self, configuration: Configuration, task: str) -> None:
        """Evaluate one (configuration, task), or take a baseline from the cache; save it."""
        key = inputs = None
        if configuration.intervention is None:
            spec = next(s for s in self.tasks.specs if s.name == task)
            inputs = baseline_inputs(self.facts, self.config, spec)
            key = baseline_key(inputs)
            cached = BaselineCache(self.config.output).get(key)
            if cached is not None:
                self._save(configuration, task, cached[0], 0.0, key, cached[1].get("run"))
                return
            self.lm.set_scale(None)
        elif configuration.scale is None:
            self.lm.set_scale(None)  # a prompt alone: the unsteered model, asked
        else:
            self.lm.plan = self._plan(configuration)
            self.lm.set_scale(self._strength(configuration))
            self.lm.check_plan()
        started = time.perf_counter()
        output = evaluation.evaluate(self.lm, task, self._asked(configuration), self.tasks)
        self._save(configuration, task, output, time.perf_counter() - started, key, None)
        if key is not None and inputs is not None:
            BaselineCache(self.config.output).put(key, output, inputs, self.folder.name)

    def _save(
        self,
        configuration: Configuration,
        task: str,
        output: TaskOutput,
        seconds: float,
        key: str | None,
        reused_from: str | None,
    ) -> None:
        scale = self.lm.scale if configuration.scale is not None else None
        effects = side_effect_texts(self.lm, output, scale, self.config.kl_docs)
        with shared_store(self.folder) as store:
            store.configuration_dir(configuration.name, configuration.scale)
            store.save_task(configuration.name, task, output, seconds, key, reused_from, effects)

    def _plan(self, configuration: Configuration) -> SteerPlan:
        """The plan of an intervention or of one of its controls (built once per worker)."""
        from saeval.steering.controls import random_control
        from saeval.steering.plan import plan_rows
        from saeval.steering.sae_loading import row_loader

        name, control = configuration.intervention or "", configuration.control
        rows = self.steer[name]
        load = row_loader(rows, device="cpu", dtype="float32")
        if (name, None) not in self.plans:
            self.plans[(name, None)] = plan_rows(rows, load)
        if control is not None and (name, control) not in self.plans:
            drawn = random_control(rows, self.plans[(name, None)], load, configuration.seed or 0)
            description = {"intervention": name, "control": control, **drawn.describe()}
            path = self.folder / CONTROLS_DIR / control_file(name, control)
            write_atomic(path, json_text({"schema": CONTROL_SCHEMA, **description}))
            self.plans[(name, control)] = drawn.plan
        return self.plans[(name, control)]

    def _asked(self, configuration: Configuration) -> RunConfig:
        """The run's options with the configuration's prompt as lm-eval's system_instruction."""
        if configuration.prompt is None:
            return self.config
        return replace(self.config, system_instruction=configuration.prompt)

    def _strength(self, configuration: Configuration) -> float:
        """The strength a steered configuration runs at: its own, or the one a matched
        control's search found (``saeval.run.control_match``)."""
        from saeval.run.control_match import matched_strength

        scale = configuration.scale or 0.0
        match = self.definition.get("control_match", "norm")
        if configuration.control is None or match == "norm":
            return scale
        name = configuration.intervention or ""
        plans = (self.plans[(name, None)], self.plans[(name, configuration.control)])
        asked = self._asked(configuration)
        return matched_strength(
            self.folder, configuration.name, plans, scale, match, self.lm, asked, self.tasks
        )

    def _failed(self, error: Exception, configuration: str, task: str) -> None:
        """Record a failed unit in run.json (with its traceback) and free what it held."""
        with shared_store(self.folder) as store:
            store.add_error(error, (configuration, task), traceback.format_exc())
        if (self.config.device or "").startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _checked_tasks(config: RunConfig, manifest: Manifest) -> TaskSet:
    """The tasks, as the run recorded them when it started (a changed task is refused)."""
    tasks = validate_tasks(config.tasks, config.include_path)
    before = {spec["name"]: spec["config_sha256"] for spec in manifest.tasks}
    changed = [s.name for s in tasks.specs if before.get(s.name) != s.config_sha256]
    if changed:
        raise ResultsError(
            f"task {', '.join(changed)} changed since the experiment started (config or data)",
            hint="start a new run without --resume",
        )
    return tasks


def _rows(intervention: dict[str, Any]) -> list[AnyRow]:
    """An intervention's rows, from steer files that must not have changed since the start."""
    rows: list[AnyRow] = []
    for path, digest in zip(intervention["steer"], intervention["steer_sha256"], strict=True):
        steer = read_steer_file(path)
        if steer.sha256 != digest:
            raise ResultsError(
                f"{path} changed since the experiment started (sha256 {digest[:12]} -> "
                f"{steer.sha256[:12]})",
                hint="start a new run without --resume",
            )
        rows += with_default_positions(steer, intervention.get("positions", "all")).rows
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m saeval.run.workers RUN WORKER DEVICE [--parent PID] [--threads N]``."""
    parser = argparse.ArgumentParser(prog="python -m saeval.run.workers")
    parser.add_argument("folder", type=Path)
    parser.add_argument("worker")
    parser.add_argument("device")
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        work(args.folder, args.worker, args.device, args.parent)
    except SaevalError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
