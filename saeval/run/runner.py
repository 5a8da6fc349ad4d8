"""`saeval run` as a library call: check everything, load the model once, evaluate, compare.

Order of work: read and resolve the steer files, check the device and the task names (all
before any model is loaded), create or reopen the run folder, load the model once, then for each
configuration (baseline, then each strength) and each task call ``lm_eval.simple_evaluate`` and
save the result the moment it finishes. The baseline of a task comes from the cache when its
key matches (see ``saeval.run.store``). Ctrl-C and SIGTERM mark the run interrupted and keep every
finished (configuration, task); ``--resume`` continues it. Finally the comparison of the
baseline with each strength is written next to the results.
"""

from __future__ import annotations

import errno
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from saeval.analysis.report import Report
from saeval.analysis.report_files import write_comparison
from saeval.errors import DeviceError, ResultsError, SaevalError, SteeringError, TaskError
from saeval.records.run_folder import BASELINE, MANIFEST, configuration_name
from saeval.records.run_record import Status, TaskRecord
from saeval.run import evaluation, ranks
from saeval.run.baseline_cache import BaselineCache, baseline_inputs, baseline_key
from saeval.run.config import RunConfig, RunEvents, RunResult, SilentEvents
from saeval.run.device import check_device
from saeval.run.dose_scale import calibrated
from saeval.run.folder import open_run_folder
from saeval.run.interrupts import Sigterm, interrupted
from saeval.run.positions_check import single_token_tasks, steers_generated_only, warning
from saeval.run.quiet import quiet_lm_eval
from saeval.run.side_effects import side_effect_texts
from saeval.run.steer_set import read_steer_set
from saeval.run.store import RunStore
from saeval.spec.chat_template import check_local_template
from saeval.spec.tasks import TaskSet, validate_tasks

if TYPE_CHECKING:
    from saeval.spec.steer_file import SteerFile
    from saeval.steering.lm_eval_model import SteeredHFLM
    from saeval.steering.shared_prefix import SharedAnswers


@dataclass(frozen=True)
class _Step:
    configuration: str
    scale: float | None
    task: str


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
    if not ranks.is_main():  # data parallel: rank 0 writes the run folder, the others follow
        return ranks.follow(config, steer, model_id, device, tasks)
    store = open_run_folder(config, steer, saes, model_id, device, tasks)  # locked until done
    if calibration is not None:
        store.manifest.dose = calibration.to_dict()
    with store, Sigterm() as sigterm, quiet_lm_eval(events.requests_done):
        if config.resume:
            _note_resume(store, events)
        return _run_in(store, config, steer, model_id, device, tasks, events, sigterm)


def _note_resume(store: RunStore, events: RunEvents) -> None:
    """Say what a resumed run keeps, and which finished tasks lost files and will run again."""
    notes = store.forget_damaged()
    events.note(f"resuming {store.folder} ({len(store.manifest.completed)} results kept)")
    for note in notes:
        events.note(note)


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
    steps = _steps(config, tasks.names)
    started = time.perf_counter()
    where: tuple[str, str] | None = None
    try:
        pending = [step for step in steps if store.record(step.configuration, step.task) is None]
        ranks.announce(store.folder, [(s.configuration, s.scale, s.task) for s in pending])
        if pending:
            lm = evaluation.load_model(store, config, steer, model_id, device, events)
            _warn_generated_positions(lm, steer, tasks, events)
            ranks.split_documents(lm)
            store.set_status(Status.RUNNING)
            shared = _shared_passes(
                pending, config.shared_prefix and lm.world_size == 1, config.kl_docs
            )
            for task in shared:
                events.group_started(task, [s.configuration for s in pending if s.task == task])
            for step in pending:
                sigterm.check()
                where = (step.configuration, step.task)
                with lm.sharing(shared.get(step.task)):
                    _run_step(store, lm, step, steps, config, tasks, events)
                if step.task in shared:
                    shared[step.task].finished(step.scale)
            where = None
        sigterm.check()
        result = _finish(store, config, steps)
    except KeyboardInterrupt as interrupt:
        raise interrupted(store, interrupt) from None
    except SaevalError as error:
        _note_unsaved(error, _failed(store, error, where))
        raise _located(error, where) from None
    except Exception as error:
        raise _wrapped(store, error, where, _failed(store, error, where)) from error
    timings = store.manifest.timings
    timings["total_s"] = round(timings.get("total_s", 0.0) + time.perf_counter() - started, 3)
    store.set_status(Status.COMPLETE)
    if result.files:
        events.note(f"comparison written to {result.files[0]}")
    return result


def _warn_generated_positions(
    lm: SteeredHFLM, steer: Sequence[SteerFile], tasks: TaskSet, events: RunEvents
) -> None:
    """Say before evaluating when rows steering only generated positions would change nothing
    (``saeval.run.positions_check``)."""
    if steers_generated_only(steer):
        found = single_token_tasks(lm, tasks)
        if found:
            events.note(warning(found))


def _steps(config: RunConfig, task_names: Sequence[str]) -> list[_Step]:
    """Every (configuration, task) in order: the baseline first, then each strength."""
    scales: list[float | None] = [] if config.no_baseline else [None]
    scales += list(config.scales)
    return [
        _Step(configuration_name(scale, config.scales), scale, task)
        for scale in scales
        for task in task_names
    ]


def _shared_passes(
    pending: Sequence[_Step], shared_prefix: bool, kl_docs: int
) -> dict[str, SharedAnswers]:
    """Per task, the answers its pending configurations share (shared-prefix evaluation: the
    first one evaluated answers every request for all of them, and measures their KL when
    ``kl_docs``); none with ``--no-shared-prefix`` or a single configuration."""
    from saeval.steering.shared_prefix import SharedAnswers

    if not shared_prefix:
        return {}
    scales: dict[str, list[float | None]] = {}
    for step in pending:
        scales.setdefault(step.task, []).append(step.scale)
    measure_kl = kl_docs > 0
    return {
        task: SharedAnswers(group, measure_kl) for task, group in scales.items() if len(group) > 1
    }


def _run_step(
    store: RunStore,
    lm: SteeredHFLM,
    step: _Step,
    steps: Sequence[_Step],
    config: RunConfig,
    tasks: TaskSet,
    events: RunEvents,
) -> TaskRecord:
    """Evaluate (or take from the cache) one (configuration, task) and save it at once."""
    store.configuration_dir(step.configuration, step.scale)
    events.task_started(step.configuration, step.task, steps.index(step) + 1, len(steps))
    key = inputs = reused = None
    if step.scale is None:
        spec = next(s for s in tasks.specs if s.name == step.task)
        inputs = baseline_inputs(store.manifest, config, spec)
        key = baseline_key(inputs)
        reused = _reuse_baseline(store, lm, config, step.task, key, events)
    ranks.share(reused is None)  # data parallel: the other ranks evaluate it too, or skip it
    if reused is not None:
        events.task_finished(reused)
        return reused
    started = time.perf_counter()
    lm.set_scale(step.scale)
    output = evaluation.evaluate(lm, step.task, config, tasks)
    seconds = time.perf_counter() - started
    effects = side_effect_texts(lm, output, step.scale, config.kl_docs, events.measured)
    record = store.save_task(
        step.configuration, step.task, output, seconds, key, side_effects=effects
    )
    if key is not None and inputs is not None:
        BaselineCache(config.output).put(
            key,
            output,
            inputs,
            store.folder.name,
            on_unusable=lambda why: events.note(
                f"baseline cache not written ({why}); the run goes on without it"
            ),
        )
    events.task_finished(record)
    return record


def _reuse_baseline(
    store: RunStore, lm: SteeredHFLM, config: RunConfig, task: str, key: str, events: RunEvents
) -> TaskRecord | None:
    """Save the cached baseline of ``task`` into the run (and say so), if there is one."""

    def damaged(why: str) -> None:
        events.note(f"cached baseline {key[:12]} of {task} was damaged ({why}); computing it again")

    cached = BaselineCache(config.output).get(key, on_damaged=damaged)
    if cached is None:
        return None
    result, meta = cached
    source = meta.get("run")
    events.note(f"baseline {task}: reused from the cache ({key[:12]}, computed by run {source})")
    effects = side_effect_texts(lm, result, None, config.kl_docs, events.measured)
    return store.save_task(BASELINE, task, result, 0.0, key, source, effects)


def _finish(store: RunStore, config: RunConfig, steps: Sequence[_Step]) -> RunResult:
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
        configurations={step.configuration: store.folder / step.configuration for step in steps},
        reused=tuple(dict.fromkeys(reused)),
        report=report,
        files=tuple(files),
    )


def _failed(store: RunStore, error: BaseException, where: tuple[str, str] | None) -> str | None:
    """Record the error and mark the run failed (finished results stay); why run.json could
    not be updated (a full disk), else None."""
    return store.record_end(Status.FAILED, error, where, traceback.format_exc())


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
