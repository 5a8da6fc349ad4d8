"""`saeval run EXPERIMENT.yaml` as a library call: many interventions against one baseline.

Order of work: read the experiment file (``saeval.spec.experiment``), read and resolve every
steer file, check the devices and task names (all before any model loads), open the run folder
(``saeval.run.experiment_prepare``), start the workers (``saeval.run.executors``: one per device,
or submitit jobs) and watch them until every unit is done or they all stopped, reporting each
unit as it starts and finishes. A worker that dies is recorded against the unit it held; the
others go on. Ctrl-C and SIGTERM stop every worker and mark the run interrupted; finished units
stay, and ``--resume`` runs only the missing ones. Last, the leaderboard and each intervention's
comparison are written (``saeval.run.experiment_report``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saeval.analysis.leaderboard import Leaderboard
from saeval.errors import TaskError, UsageError
from saeval.records.experiment_folder import NOTES_SUFFIX, WORKERS_DIR, worker_file
from saeval.records.run_folder import MANIFEST
from saeval.records.run_record import RunStatus, now
from saeval.run.config import RunEvents, SilentEvents
from saeval.run.data_parallel import launched_size
from saeval.run.device import check_device
from saeval.run.executors import Pool, make_pool
from saeval.run.experiment_prepare import Prepared, open_experiment_folder, prepare
from saeval.run.experiment_report import write_reports
from saeval.run.interrupts import Sigterm, interrupted
from saeval.run.store import RunStore
from saeval.run.unit_queue import claims, manifest_lock, reset_queue, shared_store
from saeval.run.units import note_resume
from saeval.spec.experiment import Experiment, read_experiment, with_overrides

POLL_S = 0.5


@dataclass(frozen=True)
class ExperimentOptions:
    """What the command line adds to (or replaces in) an experiment file; None: the file's."""

    output: Path = Path("results")
    name: str | None = None
    resume: bool = False
    model: str | None = None
    include_path: tuple[Path, ...] | None = None
    run_options: Mapping[str, Any] = field(default_factory=dict)  # by declared name
    devices: tuple[str, ...] | None = None
    executor: str | None = None
    slurm_partition: str | None = None
    slurm_gpus_per_job: int | None = None
    slurm_time_min: int | None = None
    slurm_jobs: int | None = None

    def applied(self, experiment: Experiment) -> Experiment:
        """``experiment`` with the options given here replacing its keys."""
        return with_overrides(
            experiment,
            model=self.model,
            include_path=self.include_path,
            devices=self.devices,
            executor=self.executor,
            slurm_partition=self.slurm_partition,
            slurm_gpus_per_job=self.slurm_gpus_per_job,
            slurm_time_min=self.slurm_time_min,
            slurm_jobs=self.slurm_jobs,
            **self.run_options,
        )


@dataclass(frozen=True)
class ExperimentResult:
    """What an experiment run produced: its folder, the leaderboard and the files written."""

    folder: Path
    leaderboard: Leaderboard
    files: tuple[Path, ...]
    reused: tuple[str, ...]  # tasks whose baseline came from the cache


class WorkerStopped(Exception):
    """A worker stopped (killed, out of memory, ...) while it held a unit."""


def run_experiment(
    path: Path, options: ExperimentOptions, events: RunEvents | None = None
) -> ExperimentResult:
    """Evaluate every unit of the experiment (only the missing ones with ``resume``), then
    write its reports."""
    events = events or SilentEvents()
    if launched_size() > 1:
        raise UsageError(
            f"{path}: an experiment places its own workers, one per device; it does not run "
            "under accelerate launch or torchrun",
            hint="pass --devices cuda:0,cuda:1,... (accelerate launch is for one steer file: "
            "saeval run STEER.csv --tasks ...)",
        )
    experiment = options.applied(read_experiment(path))
    devices = _devices(experiment)
    prepared = prepare(
        experiment,
        output=options.output,
        name=options.name,
        resume=options.resume,
        device=devices[0],
    )
    store = open_experiment_folder(prepared, devices[0])  # locked until done
    with store, Sigterm() as sigterm:
        if options.resume:
            note_resume(store, events)
        return _run_in(store, prepared, devices, events, sigterm)


def _devices(experiment: Experiment) -> tuple[str, ...]:
    """The workers' devices, checked against this machine (a Slurm job gets its own GPUs)."""
    if experiment.executor == "slurm":
        return ("cuda",) if experiment.slurm.gpus_per_job else ("cpu",)
    if not experiment.devices:
        return (check_device(None),)
    return tuple(check_device(device) for device in experiment.devices)


def _run_in(
    store: RunStore,
    prepared: Prepared,
    devices: tuple[str, ...],
    events: RunEvents,
    sigterm: Sigterm,
) -> ExperimentResult:
    """Run the missing units, then write the reports; record how the run ended."""
    units = [tuple(unit) for unit in prepared.definition["units"]]
    started, since = time.perf_counter(), now()
    try:
        pending = [u for u in units if store.record(*u) is None]
        if pending:
            experiment = prepared.experiment
            pool = make_pool(
                experiment.executor, store.folder, devices, experiment.slurm, len(pending)
            )
            reset_queue(store.folder, _workers(experiment, devices, len(pending)))
            with shared_store(store.folder) as fresh:
                fresh.set_status(RunStatus.RUNNING)
            events.note(f"{len(pending)} evaluations on {_placement(experiment, devices)}")
            _Watch(store, units, events).run(pool, sigterm)
        sigterm.check()
        store.manifest = RunStore.open(store.folder).manifest
        _check_complete(store, units, since)
        board, files = write_reports(store.folder, prepared.definition)
    except KeyboardInterrupt as interrupt:
        with manifest_lock(store.folder):
            store.manifest = RunStore.open(store.folder).manifest
            raise interrupted(store, interrupt) from None
    with shared_store(store.folder) as fresh:
        timings = fresh.manifest.timings
        timings["total_s"] = round(timings.get("total_s", 0.0) + time.perf_counter() - started, 3)
        fresh.manifest.comparison = {"files": [str(f.relative_to(store.folder)) for f in files]}
        fresh.set_status(RunStatus.COMPLETE)
    reused = [r.task for r in fresh.manifest.completed if r.reused_from is not None]
    return ExperimentResult(store.folder, board, tuple(files), tuple(dict.fromkeys(reused)))


def _workers(experiment: Experiment, devices: tuple[str, ...], pending: int) -> int:
    """How many workers take units: one per device, or per GPU of each Slurm job."""
    if experiment.executor == "slurm":
        jobs = max(1, min(experiment.slurm.jobs, pending))
        return jobs * max(1, experiment.slurm.gpus_per_job)
    return len(devices)


def _placement(experiment: Experiment, devices: tuple[str, ...]) -> str:
    """``2 workers (cpu, cpu)`` or ``a Slurm array of 4 jobs``, for the status line."""
    if experiment.executor == "slurm":
        return f"a Slurm array (up to {experiment.slurm.jobs} jobs)"
    via = " through submitit" if experiment.executor == "submitit-local" else ""
    count = len(devices)
    return f"{count} worker{'s' if count > 1 else ''} ({', '.join(devices)}){via}"


class _Watch:
    """Follows the run folder while the workers run: reports units, records dead workers.

    A worker claims a group of units of one task at once and evaluates them in order (the first
    one's pass answering the others when they share passes), so each worker's units are
    reported one at a time: its group is announced when the first starts, and its next unit
    starts when the one before finished (a unit's files written)."""

    def __init__(self, store: RunStore, units: list[tuple[str, ...]], events: RunEvents) -> None:
        self.store, self.units, self.events = store, units, events
        self.index = {(unit[0], unit[1]): i for i, unit in enumerate(units)}
        self.started: set[int] = set()
        self.grouped: set[int] = set()  # units announced in a group
        self.finished = {(r.configuration, r.task) for r in store.manifest.completed}
        self.errors = len(store.manifest.errors)
        self.stopped: set[str] = set()
        self.notes: dict[Path, int] = {}  # a worker's notes file -> the lines shown
        self.said: set[str] = set()

    def run(self, pool: Pool, sigterm: Sigterm) -> None:
        """Start the pool and follow it until no worker runs; stop it however this ends."""
        pool.start()
        try:
            while True:
                states = pool.states()  # before reading: a worker's last records are then seen
                sigterm.check()
                self.update()
                for state in states:
                    if state.failure and state.worker not in self.stopped:
                        self.stopped.add(state.worker)
                        self._stopped(state.worker, state.failure)
                if not any(state.running for state in states):
                    return
                time.sleep(POLL_S)
        finally:
            pool.stop()

    def update(self) -> None:
        """Report units that started or finished, and errors recorded, since the last look."""
        folder = self.store.folder
        claimed = claims(folder)
        manifest = RunStore.open(folder).manifest
        for record in manifest.completed:
            key = (record.configuration, record.task)
            if key not in self.finished:
                self.finished.add(key)
                self._start(self.index[key], [])  # done before it was seen running
                self.events.task_finished(record)
        self._start_next(claimed)
        for error in manifest.errors[self.errors :]:
            where = f"{error.configuration} ({error.task}): " if error.configuration else ""
            self.events.note(f"failed: {where}{error.type}: {error.message}")
        self.errors = len(manifest.errors)
        self.store.manifest = manifest
        self._notes()

    def _start_next(self, claimed: Mapping[int, str]) -> None:
        """Each worker with no unit running: report its next claimed unit started (with its
        group of that task, when it holds more than one unit of it)."""
        waiting: dict[str, list[int]] = {}  # worker -> its claimed units not yet started
        busy = set()
        for index, worker in sorted(claimed.items()):
            if not worker or self._done(index):
                continue
            if index in self.started:
                busy.add(worker)
            else:
                waiting.setdefault(worker, []).append(index)
        for worker, indices in waiting.items():
            if worker not in busy:
                task = self.units[indices[0]][1]
                self._start(indices[0], [i for i in indices if self.units[i][1] == task])

    def _done(self, index: int) -> bool:
        configuration, task = self.units[index]
        return (configuration, task) in self.finished

    def _start(self, index: int, group: list[int]) -> None:
        """Report unit ``index`` started (once), announcing ``group`` (its worker's units of
        its task still to do, itself first) first when there are several."""
        if index in self.started:
            return
        self.started.add(index)
        configuration, task = self.units[index]
        if len(group) > 1 and index not in self.grouped:
            self.grouped.update(group)
            self.events.group_started(task, [self.units[i][0] for i in group])
        self.events.task_started(configuration, task, index + 1, len(self.units))

    def _notes(self) -> None:
        """Show the workers' new messages (one that several workers wrote, once)."""
        for path in sorted((self.store.folder / WORKERS_DIR).glob(f"*{NOTES_SUFFIX}")):
            lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # whole lines only
            for line in lines[self.notes.get(path, 0) :]:
                if line not in self.said:
                    self.said.add(line)
                    self.events.note(line)
            self.notes[path] = len(lines)

    def _stopped(self, worker: str, why: str) -> None:
        """Record a stopped worker against each unit it held that did not finish."""
        held = [i for i, name in claims(self.store.folder).items() if name == worker]
        log = self.store.folder / WORKERS_DIR / worker_file(worker, ".log")
        with shared_store(self.store.folder) as fresh:
            for index in held:
                configuration, task = self.units[index]
                if fresh.record(configuration, task) is None:
                    error = WorkerStopped(f"worker {worker} {why} (its output: {log})")
                    fresh.add_error(error, (configuration, task), "")
        self.events.note(f"worker {worker} {why}; the others go on")


def _check_complete(store: RunStore, units: list[tuple[str, ...]], since: str) -> None:
    """TaskError (the run marked failed) unless every unit finished: how many did not, and the
    first error of this start."""
    missing = [unit for unit in units if store.record(*unit) is None]
    if not missing:
        return
    errors = [e for e in store.manifest.errors if e.time >= since]
    first = f": {errors[0].type}: {errors[0].message}" if errors else ""
    where = f" in {errors[0].configuration} ({errors[0].task})" if errors and errors[0].task else ""
    with manifest_lock(store.folder):
        store.record_end(RunStatus.FAILED)
    raise TaskError(
        f"{len(missing)} of {len(units)} evaluations did not finish{where}{first}",
        hint=f"{len(units) - len(missing)} results are kept; every error is in "
        f"{store.folder / MANIFEST} and the workers' output in {store.folder / WORKERS_DIR}; "
        f"after a fix, rerun with --resume --name {store.folder.name}",
    )
