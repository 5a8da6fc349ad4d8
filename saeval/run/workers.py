"""One worker of an experiment: load the model once, then take groups of (configuration, task)
units of one task from the run folder's queue until none is left, evaluating each group in one
shared pass and saving each unit the moment it finishes.

Workers are processes of their own (``python -m saeval.run.workers RUN WORKER DEVICE``, a
submitit job, a Slurm array task); everything they need is in the run folder
(``experiment.json`` and ``run.json``). A group is all pending units of a task, or a chunk of
them sized so that every worker gets one (``saeval.run.unit_queue.task_chunks``). Each
configuration's plan is built once per worker (a control's is drawn from its seed,
``saeval.steering.random_controls``); the unit evaluator (``saeval.run.units``) does the rest as in
``saeval run``: the baseline cache, the shared pass, side effects, saving under the manifest
lock. A failing unit is recorded and the worker goes on with the next one; the worker's
messages go to ``<run>/workers/<worker>.notes`` for the parent to show.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
    NOTES_SUFFIX,
    WORKERS_DIR,
    Configuration,
    control_file,
    worker_file,
)
from saeval.records.experiment_record import CONTROL_SCHEMA, WORKER_SCHEMA, read_definition
from saeval.records.json_file import json_text
from saeval.records.run_record import Manifest, now
from saeval.run import evaluation
from saeval.run.config import RunConfig, SilentEvents
from saeval.run.lm_eval_output import quiet_lm_eval
from saeval.run.unit_queue import claim, shared_store, task_chunks, workers
from saeval.run.units import Unit, UnitEvaluator, positions_note
from saeval.spec.options import from_record
from saeval.spec.steer_file import AnyRow, read_steer_file
from saeval.spec.steer_rows import with_default_positions
from saeval.spec.tasks import TaskSet, validate_tasks

if TYPE_CHECKING:
    from saeval.steering.plan import SteerPlan


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


class _Gone(Exception):
    """The parent process is gone: nobody would collect the results."""


class _Events(SilentEvents):
    """A worker's messages, one per line in ``<run>/workers/<worker>.notes``: the parent shows
    them (the same message from several workers once)."""

    def __init__(self, folder: Path, worker: str) -> None:
        self.path = folder / WORKERS_DIR / f"{worker}{NOTES_SUFFIX}"

    def note(self, message: str) -> None:
        """Append the message."""
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(" ".join(message.split()) + "\n")


class _Units:
    """The units of one worker: its model, its plans, and the groups of units it takes."""

    def __init__(
        self, folder: Path, worker: str, definition: dict[str, Any], config: RunConfig
    ) -> None:
        self.folder, self.worker, self.config = folder, worker, config
        self.definition = definition
        with shared_store(folder) as store:
            completed = store.manifest.completed
        self.finished = {(r.configuration, r.task) for r in completed}
        self.tasks = _checked_tasks(config, store.manifest)
        self.steer = {name: _rows(info) for name, info in definition["interventions"].items()}
        self.configurations = {c["name"]: Configuration(**c) for c in definition["configurations"]}
        self.plans: dict[tuple[str, int | None], SteerPlan] = {}
        self.events = _Events(folder, worker)
        self.evaluator = self._load()
        self.failures = 0

    def _load(self) -> UnitEvaluator:
        """Load the model once (no steering), record it in run.json, note positions that steer
        nothing; the unit evaluator on it."""
        device = self.config.device or "cpu"
        model = self.config.model or ""
        loaded = evaluation.load_model(self.config, [], model, device, SilentEvents())
        with shared_store(self.folder) as store:
            timing = f"model_load_s[{self.worker}]"
            evaluation.record_model(store.manifest, loaded, self.folder, timing)
            store.save()
        rows = [row for rows in self.steer.values() for row in rows]
        note = positions_note(loaded.lm, rows, self.tasks)
        if note is not None:
            self.events.note(note)
        return UnitEvaluator(
            loaded.lm,
            self.config,
            self.tasks,
            self.events,
            store.manifest,
            self.folder.name,
            functools.partial(shared_store, self.folder),
            failed=self._failed,
        )

    def run(self, parent: int | None) -> int:
        """Take groups of units of one task and evaluate each group in one shared pass until
        none is left; the number of units this worker finished."""
        pending = [
            (index, (name, task))
            for index, (name, task) in enumerate(self.definition["units"])
            if (name, task) not in self.finished
        ]
        chunks = task_chunks(pending, workers(self.folder))

        def between() -> None:
            if parent is not None and os.getppid() != parent:
                raise _Gone

        self.evaluator.between = between
        count = 0
        try:
            for lead in (True, False):  # groups first; then whatever no group took
                for chunk in chunks:
                    taken = self._claimed(chunk, lead)
                    if taken:
                        between()
                        count += self._group(taken)
        except _Gone:
            pass
        return count

    def _claimed(self, chunk: list[tuple[int, tuple[str, str]]], lead: bool) -> list[Unit]:
        """The units of ``chunk`` this worker claims: all that are free once it has claimed the
        first (``lead``), else each that is still free."""
        if lead and not claim(self.folder, chunk[0][0], self.worker):
            return []
        rest = chunk[1:] if lead else chunk
        indices = [chunk[0][0]] if lead else []
        indices += [index for index, _ in rest if claim(self.folder, index, self.worker)]
        units = dict(chunk)
        return [self._unit(*units[index]) for index in indices]

    def _unit(self, name: str, task: str) -> Unit:
        """The unit of (configuration ``name``, ``task``); its plan is built when it runs."""
        configuration = self.configurations[name]
        key = None if configuration.intervention is None else name
        return Unit(name, task, configuration.scale, key, prompt=configuration.prompt)

    def _group(self, units: list[Unit]) -> int:
        """Evaluate claimed units of one task together; how many finished."""
        failures = self.failures
        planned = []
        for unit in units:
            configuration = self.configurations[unit.configuration]
            if configuration.intervention is None or configuration.scale is None:
                planned.append(unit)  # the baseline, or a prompt alone (the model, asked)
                continue
            try:
                plan = self._plan(configuration)
                strength = self._strength(configuration)
                planned.append(dataclasses.replace(unit, plan=plan, runs_at=strength))
            except Exception as error:
                self._failed(unit, error)
        self.evaluator.evaluate(self.evaluator.reuse(planned))
        return len(units) - (self.failures - failures)

    def _plan(self, configuration: Configuration) -> SteerPlan:
        """The plan of an intervention or of one of its controls (built once per worker)."""
        from saeval.steering.plan import plan_rows
        from saeval.steering.random_controls import random_control
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

    def _strength(self, configuration: Configuration) -> float | None:
        """The strength a steered configuration runs at when it is not its own: the one a
        matched control's search found (``saeval.run.control_match``); else None."""
        from saeval.run.control_match import matched_strength

        scale = configuration.scale or 0.0
        match = self.definition.get("control_match", "norm")
        if configuration.control is None or match == "norm":
            return None
        name = configuration.intervention or ""
        plans = (self.plans[(name, None)], self.plans[(name, configuration.control)])
        asked = self.config
        if configuration.prompt is not None:
            asked = replace(self.config, system_instruction=configuration.prompt)
        lm = self.evaluator.lm
        return matched_strength(
            self.folder, configuration.name, plans, scale, match, lm, asked, self.tasks
        )

    def _failed(self, unit: Unit, error: Exception) -> None:
        """Record a failed unit in run.json (with its traceback) and free what it held."""
        self.failures += 1
        with shared_store(self.folder) as store:
            store.add_error(error, (unit.configuration, unit.task), traceback.format_exc())
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
