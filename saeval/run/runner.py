"""`saeval run` as a library call: check everything, load the model once, evaluate, compare.

Order of work: read and resolve the steer files, check the device and the task names (all
before any model is loaded), create or reopen the run folder, load the model once, then evaluate
every pending configuration (baseline, then each strength) of each task with the unit evaluator
(``saeval.run.units``: one shared pass per task, each result saved the moment it finishes, a
baseline from the cache when its key matches). Ctrl-C and SIGTERM mark the run interrupted and
keep every finished (configuration, task); ``--resume`` continues it. Finally the comparison of the
baseline with each strength is written next to the results.
"""

from __future__ import annotations

import contextlib
import errno
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from saeval.analysis.report import Report
from saeval.analysis.report_files import write_comparison
from saeval.errors import DeviceError, ResultsError, SaevalError, SteeringError, TaskError
from saeval.records.run_folder import MANIFEST, configuration_name
from saeval.records.run_record import RunStatus
from saeval.run import data_parallel, evaluation
from saeval.run.config import RunConfig, RunEvents, RunResult, SilentEvents
from saeval.run.device import check_device
from saeval.run.dose_scale import calibrated
from saeval.run.folder import open_run_folder
from saeval.run.interrupts import Sigterm, interrupted
from saeval.run.lm_eval_output import quiet_lm_eval
from saeval.run.steer_set import read_steer_set
from saeval.run.store import RunStore
from saeval.run.units import Unit, UnitEvaluator, note_resume, positions_note
from saeval.spec.chat_template import check_local_template
from saeval.spec.tasks import TaskSet, validate_tasks

if TYPE_CHECKING:
    from saeval.spec.steer_file import SteerFile
    from saeval.spec.steer_rows import AnyRow


def run(config: RunConfig, events: RunEvents | None = None) -> RunResult:
    """Evaluate the baseline and each steering strength on every task; save and compare."""
    events = events or SilentEvents()
    steer_set = read_steer_set(config.steer_files, config.model, config.positions)
    steer, saes, model_id = steer_set.files, steer_set.saes, steer_set.model_id
    device = check_device(config.device)
    config.check()
    if config.apply_chat_template:
        check_local_template(model_id)
    tasks = validate_tasks(config.tasks, config.include_path)
    calibration = None
    if config.doses:  # strengths in activation units: the scales they ask for (dose_scale.py)
        config, calibration = calibrated(config, steer, model_id, device, tasks, events)
    # data parallel: rank 0 writes the run folder, the others follow
    if not data_parallel.is_main():
        return data_parallel.follow(config, _rows(steer), model_id, device, tasks)
    store = open_run_folder(config, steer, saes, model_id, device, tasks)  # locked until done
    if calibration is not None:
        store.manifest.dose = calibration.to_dict()
    with store, Sigterm() as sigterm, quiet_lm_eval(events.requests_done):
        if config.resume:
            note_resume(store, events)
        return _run_in(store, config, steer, model_id, device, tasks, events, sigterm)


def _rows(steer: Sequence[SteerFile]) -> list[AnyRow]:
    return [row for file in steer for row in file.rows]


def _run_in(
    store: RunStore,
    config: RunConfig,
    steer: Sequence[SteerFile],
    model_id: str,
    device: str,
    tasks: TaskSet,
    events: RunEvents,
    sigterm: Sigterm,
) -> RunResult:
    """Load, evaluate and compare inside an open run folder; record how it ended."""
    units = _units(config, tasks.names)
    started = time.perf_counter()
    evaluator: UnitEvaluator | None = None
    try:
        pending = [unit for unit in units if store.record(unit.configuration, unit.task) is None]
        left: list[Unit] = []
        if pending:
            evaluator = _evaluator(store, config, _rows(steer), model_id, device, tasks, events)
            evaluator.between = sigterm.check
            left = evaluator.reuse(pending)
        data_parallel.announce(store.folder, left)  # data parallel: what every rank evaluates
        if evaluator is not None:
            evaluator.announce(left)
            evaluator.evaluate(left)
        sigterm.check()
        result = _finish(store, config, units)
    except KeyboardInterrupt as interrupt:
        raise interrupted(store, interrupt) from None
    except SaevalError as error:
        where = _where(evaluator)
        _note_unsaved(error, _failed(store, error, where))
        raise _located(error, where) from None
    except Exception as error:
        where = _where(evaluator)
        raise _wrapped(store, error, where, _failed(store, error, where)) from error
    timings = store.manifest.timings
    timings["total_s"] = round(timings.get("total_s", 0.0) + time.perf_counter() - started, 3)
    store.set_status(RunStatus.COMPLETE)
    if result.files:
        events.note(f"comparison written to {result.files[0]}")
    return result


def _evaluator(
    store: RunStore,
    config: RunConfig,
    rows: Sequence[AnyRow],
    model_id: str,
    device: str,
    tasks: TaskSet,
    events: RunEvents,
) -> UnitEvaluator:
    """Load the model (recorded in run.json), warn about positions that steer nothing, and
    mark the run running."""
    loaded = evaluation.load_model(config, rows, model_id, device, events)
    evaluation.record_model(store.manifest, loaded, store.folder, "model_load_s")
    store.save()
    note = positions_note(loaded.lm, rows, tasks)
    if note is not None:
        events.note(note)
    data_parallel.split_documents(loaded.lm)
    store.set_status(RunStatus.RUNNING)

    def opened() -> contextlib.AbstractContextManager[RunStore]:
        return contextlib.nullcontext(store)

    name = store.folder.name
    return UnitEvaluator(loaded.lm, config, tasks, events, store.manifest, name, opened)


def _where(evaluator: UnitEvaluator | None) -> tuple[str, str] | None:
    return None if evaluator is None else evaluator.where


def _units(config: RunConfig, task_names: Sequence[str]) -> list[Unit]:
    """Every (configuration, task) in order: the baseline first, then each strength."""
    scales: list[float | None] = [] if config.no_baseline else [None]
    scales += list(config.scales)
    pairs = [(scale, task) for scale in scales for task in task_names]
    return [
        Unit(configuration_name(scale, config.scales), task, scale, scale, None, index, len(pairs))
        for index, (scale, task) in enumerate(pairs, start=1)
    ]


def _finish(store: RunStore, config: RunConfig, units: Sequence[Unit]) -> RunResult:
    """Write the comparison files (when there is a baseline) and describe the run."""
    report: Report | None = None
    files: list[Path] = []
    if not config.no_baseline:
        report, files = write_comparison(
            store.folder, config.margin, config.relative_margin, config.margin_test
        )
        store.manifest.comparison = {"files": [path.name for path in files]}
    reused = [r.task for r in store.manifest.completed if r.reused_from is not None]
    return RunResult(
        folder=store.folder,
        manifest=store.folder / MANIFEST,
        configurations={unit.configuration: store.folder / unit.configuration for unit in units},
        reused=tuple(dict.fromkeys(reused)),
        report=report,
        files=tuple(files),
    )


def _failed(store: RunStore, error: BaseException, where: tuple[str, str] | None) -> str | None:
    """Record the error and mark the run failed (finished results stay); why run.json could
    not be updated (a full disk), else None."""
    return store.record_end(RunStatus.FAILED, error, where, traceback.format_exc())


def _note_unsaved(error: SaevalError, unsaved: str | None) -> None:
    """Put in the error's hint that run.json could not record it (when so)."""
    if unsaved is not None:
        error.hint = "; ".join(filter(None, [unsaved, error.hint]))


def _located(error: SaevalError, where: tuple[str, str] | None) -> SaevalError:
    """A steering error met in one (configuration, task), naming both: ``steered@2 (tiny_mc): ``."""
    if where is None or not isinstance(error, SteeringError):
        return error
    return SteeringError(f"{where[0]} ({where[1]}): {error.message}", hint=error.hint)


def _wrapped(
    store: RunStore, error: Exception, where: tuple[str, str] | None, unsaved: str | None
) -> SaevalError:
    """A one-line error for an unexpected exception, with a hint that holds for this run:
    --resume helps once the cause is gone, and keeps results only when some finished."""
    import torch

    place = f" ({where[0]}, {where[1]})" if where else ""
    resume = f"rerun with --resume --name {store.folder.name}"
    if store.manifest.completed:
        resume = f"finished results are kept: {resume}"
    oom = isinstance(error, RuntimeError) and "out of memory" in str(error)  # MPS says only this
    if isinstance(error, torch.OutOfMemoryError) or oom:
        wrapped: SaevalError = DeviceError(
            f"out of memory{place}",
            hint=f"{resume} once memory is free, or start a new run with a smaller "
            "--batch-size or --dtype bfloat16 (--resume keeps the batch size and dtype)",
        )
    elif isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        wrapped = ResultsError(
            f"cannot write the results{place}: {error.strerror}",
            hint=f"{resume} once the disk of {store.folder} has space again",
        )
    else:
        trace = "" if unsaved else f"the traceback is in {store.folder / MANIFEST} (errors); "
        fix = f"after a fix to {where[1]}'s YAML or data start a new run; " if where else ""
        wrapped = TaskError(
            f"{type(error).__name__}{place}: {error}",
            hint=f"{trace}{fix}after any other fix, {resume}",
        )
    _note_unsaved(wrapped, unsaved)
    return wrapped
