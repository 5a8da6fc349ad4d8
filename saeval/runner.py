"""`saeval run` as a library call: check everything, load the model once, evaluate, compare.

Order of work: read and resolve the steer files, check the device and the task names (all
before any model is loaded), create or reopen the run folder, load the model once, then for each
configuration (baseline, then each strength) and each task call ``lm_eval.simple_evaluate`` and
save the result the moment it finishes. The baseline of a task comes from the cache when its
key matches (see ``saeval.store``). Ctrl-C and SIGTERM mark the run interrupted and keep every
finished (configuration, task); ``--resume`` continues it. Finally the comparison of the
baseline with each strength is written next to the results.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from saeval.device import check_device
from saeval.environment import collect_env_once, model_facts
from saeval.errors import (
    DeviceError,
    ResolutionError,
    ResultsError,
    SaevalError,
    TaskError,
    UsageError,
)
from saeval.interrupts import RunInterrupted, Sigterm, interrupted
from saeval.report import Report, write_comparison
from saeval.run_folder import open_run_folder
from saeval.store import (
    BASELINE,
    MANIFEST,
    BaselineCache,
    RunStore,
    Status,
    TaskOutput,
    TaskRecord,
    baseline_key,
    configuration_name,
    task_output,
)
from saeval.tasks import TaskSet, validate_tasks

if TYPE_CHECKING:
    from saeval.harness import SteeredHFLM
    from saeval.steer_file import SteerFile

__all__ = [
    "RunConfig",
    "RunEvents",
    "RunInterrupted",
    "RunResult",
    "check_device",
    "run",
    "write_comparison",
]

LM_EVAL_SEEDS = {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}
BOOTSTRAP_ITERS = 100_000  # lm-eval's default: stderrs match a plain `lm_eval` run


@dataclass(frozen=True)
class RunConfig:
    """The options of `saeval run`, one field per command-line option."""

    steer_files: tuple[Path, ...]
    tasks: tuple[str, ...]
    model: str | None = None
    device: str | None = None  # None: cuda:0 when a GPU is visible, else cpu
    dtype: str = "auto"
    batch_size: str = "8"  # "auto" or a number
    limit: int | float | None = None  # a float below 1 is a fraction of each task
    num_fewshot: int | None = None
    seed: int | None = None  # None: lm-eval's seeds (0, 1234, 1234, 1234)
    include_path: tuple[Path, ...] = ()
    output: Path = Path("results")
    name: str | None = None
    scales: tuple[float, ...] = (1.0,)
    margin: float = 0.02
    no_baseline: bool = False
    resume: bool = False
    apply_chat_template: bool = False
    gen_kwargs: str | None = None

    @property
    def seeds(self) -> dict[str, int]:
        """The four seeds lm-eval takes (python, numpy, torch, few-shot sampler)."""
        return dict(LM_EVAL_SEEDS) if self.seed is None else dict.fromkeys(LM_EVAL_SEEDS, self.seed)


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its folder, configuration folders, the report and its files."""

    folder: Path
    manifest: Path
    configurations: dict[str, Path]
    reused: tuple[str, ...]  # tasks whose baseline came from the cache
    report: Report | None  # baseline vs steered, or the sweep over strengths; None without baseline
    files: tuple[Path, ...]  # comparison.{md,csv,json} and sweep plots


class RunEvents(Protocol):
    """What a run reports while it works (the CLI draws progress from these)."""

    def note(self, message: str) -> None:
        """A one-line status message."""

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """A (configuration, task) evaluation began."""

    def task_finished(self, record: TaskRecord) -> None:
        """A (configuration, task) was saved (evaluated, or reused from the baseline cache)."""


class _Silent:
    """RunEvents that ignore everything."""

    def note(self, message: str) -> None:
        """Ignore the message."""

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        """Ignore the start."""

    def task_finished(self, record: TaskRecord) -> None:
        """Ignore the record."""


@dataclass(frozen=True)
class _Step:
    configuration: str
    scale: float | None
    task: str


def run(config: RunConfig, events: RunEvents | None = None) -> RunResult:
    """Evaluate the baseline and each steering strength on every task; save and compare."""
    events = events or _Silent()
    steer = _read_steer_files(config.steer_files)
    saes, inferred = _resolve(config, steer)
    model_id = _model_id(config.model) or inferred
    if model_id is None:
        raise UsageError(
            "no --model given and the SAEs do not name their base model", hint="pass --model"
        )
    device = check_device(config.device)
    _check_options(config)
    tasks = validate_tasks(config.tasks, config.include_path)
    store = open_run_folder(config, steer, saes, model_id, device, tasks)
    if config.resume:
        _note_resume(store, events)
    with Sigterm() as sigterm:
        return _run_in(store, config, steer, model_id, device, tasks, events, sigterm)


def _note_resume(store: RunStore, events: RunEvents) -> None:
    """Say what a resumed run keeps, and which finished tasks lost files and will run again."""
    missing = store.forget_missing()
    events.note(f"resuming {store.folder} ({len(store.manifest.completed)} results kept)")
    if missing:
        rerun = ", ".join(f"{r.configuration}/{r.task}" for r in missing)
        events.note(f"files missing, running again: {rerun}")


def _model_id(model: str | None) -> str | None:
    """The Hugging Face id of --model (catalog aliases mapped); a local folder as given."""
    from saeval.catalog import hf_model_id

    if model is None or Path(model).expanduser().is_dir():
        return model
    return hf_model_id(model)


def _check_options(config: RunConfig) -> None:
    """Reject option values that lm-eval would only reject after the model is loaded."""
    if config.limit is not None and config.limit <= 0:
        raise UsageError(f"--limit must be positive, got {config.limit}")
    if config.num_fewshot is not None and config.num_fewshot < 0:
        raise UsageError(f"--num-fewshot must be 0 or more, got {config.num_fewshot}")
    if not config.scales:
        raise UsageError("--scale needs at least one strength")
    if len(set(config.scales)) != len(config.scales):
        raise UsageError(f"--scale lists a strength twice: {','.join(map(str, config.scales))}")
    if config.batch_size != "auto" and not (config.batch_size.isdigit() and int(config.batch_size)):
        raise UsageError(
            f"--batch-size must be 'auto' or a positive number, got {config.batch_size!r}"
        )
    if config.dtype not in ("auto", "bfloat16", "float16", "float32"):
        raise UsageError(
            f"--dtype must be auto, bfloat16, float16 or float32, got {config.dtype!r}"
        )


def _read_steer_files(paths: Sequence[Path]) -> list[SteerFile]:
    """Read every steer file (SteerFileError lists all problems of the first bad file)."""
    from saeval.steer_file import read_steer_file

    if not paths:
        raise UsageError("no steer file given")
    return [read_steer_file(path) for path in paths]


def _resolve(
    config: RunConfig, steer: Sequence[SteerFile]
) -> tuple[list[dict[str, Any]], str | None]:
    """Resolve the SAEs offline: their descriptions and the base model they agree on."""
    from saeval.resolve import resolve

    resolution = resolve(steer, model=config.model)
    if not resolution.ok:
        problems = resolution.problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ResolutionError(f"{problems[0]}{more}", hint="saeval validate lists every problem")
    saes = {(r.sae.release, r.sae.sae_id): r.sae.to_dict() for r in resolution.rows if r.sae}
    return list(saes.values()), resolution.base_model


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
        if pending:
            lm = _load_model(store, config, steer, model_id, device, events)
            store.set_status(Status.RUNNING)
            for step in pending:
                sigterm.check()
                where = (step.configuration, step.task)
                _run_step(store, lm, step, steps, config, tasks, events)
            where = None
        sigterm.check()
        result = _finish(store, config, steps)
    except KeyboardInterrupt as interrupt:
        raise interrupted(store, interrupt) from None
    except SaevalError as error:
        _failed(store, error, where)
        raise
    except Exception as error:
        _failed(store, error, where)
        raise _wrapped(store, error, where) from error
    timings = store.manifest.timings
    timings["total_s"] = round(timings.get("total_s", 0.0) + time.perf_counter() - started, 3)
    store.set_status(Status.COMPLETE)
    if result.files:
        events.note(f"comparison written to {result.files[0]}")
    return result


def _steps(config: RunConfig, task_names: Sequence[str]) -> list[_Step]:
    """Every (configuration, task) in order: the baseline first, then each strength."""
    scales: list[float | None] = [] if config.no_baseline else [None]
    scales += list(config.scales)
    return [
        _Step(configuration_name(scale, config.scales), scale, task)
        for scale in scales
        for task in task_names
    ]


def _load_model(
    store: RunStore,
    config: RunConfig,
    steer: Sequence[SteerFile],
    model_id: str,
    device: str,
    events: RunEvents,
) -> SteeredHFLM:
    """Build the steer plan and load the model once (steering off); record what was loaded."""
    from saeval.harness import SteeredHFLM
    from saeval.plan import plan_rows
    from saeval.saes import load_sae

    events.note(f"loading {model_id} on {device}")
    started = time.perf_counter()
    plan = plan_rows(
        (row for file in steer for row in file.rows),
        lambda key: load_sae(key[0], key[1], device="cpu", dtype="float32"),
    )
    try:
        lm = SteeredHFLM(
            pretrained=model_id,
            plan=plan,
            scale=None,
            device=device,
            dtype=config.dtype,
            batch_size=config.batch_size,
        )
    except (OSError, ValueError) as error:
        raise ResolutionError(f"cannot load model {model_id}: {error}") from None
    facts = model_facts(lm, model_id, device, config.batch_size)
    before = store.manifest.model.get("revision")
    if before is not None and before != facts["revision"]:
        raise ResultsError(
            f"{model_id} changed since {store.folder} started (revision {before} -> "
            f"{facts['revision']})",
            hint="start a new run without --resume",
        )
    store.manifest.timings["model_load_s"] = round(time.perf_counter() - started, 3)
    store.manifest.model.update(facts)
    store.save()
    return lm


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
    key = inputs = None
    if step.scale is None:
        inputs = _baseline_inputs(store, config, tasks, step.task)
        key = baseline_key(inputs)
        reused = _reuse_baseline(store, config.output, step.task, key, events)
        if reused is not None:
            events.task_finished(reused)
            return reused
    started = time.perf_counter()
    lm.set_scale(step.scale)
    output = _evaluate(lm, step.task, config, tasks)
    record = store.save_task(
        step.configuration, step.task, output, time.perf_counter() - started, key
    )
    if key is not None and inputs is not None:
        BaselineCache(config.output).put(key, output, inputs, store.folder.name)
    events.task_finished(record)
    return record


def _reuse_baseline(
    store: RunStore, output: Path, task: str, key: str, events: RunEvents
) -> TaskRecord | None:
    """Save the cached baseline of ``task`` into the run (and say so), if there is one."""
    cached = BaselineCache(output).get(key)
    if cached is None:
        return None
    result, meta = cached
    source = meta.get("run")
    events.note(f"baseline {task}: reused from the cache ({key[:12]}, computed by run {source})")
    return store.save_task(BASELINE, task, result, 0.0, key, reused_from=source)


def _baseline_inputs(
    store: RunStore, config: RunConfig, tasks: TaskSet, task: str
) -> dict[str, Any]:
    """Everything that determines one baseline task's numbers (the cache key's inputs)."""
    spec = next(s for s in tasks.specs if s.name == task)
    model = store.manifest.model
    packages = store.manifest.packages
    return {
        "model": model["id"],
        "revision": model["revision"],
        "dtype": model["dtype"],
        "device": model["device_name"],  # cpu, mps or the GPU's name
        "batch_size": config.batch_size,
        "task": {"name": spec.name, "version": spec.version, "config": spec.config_sha256},
        "num_fewshot": config.num_fewshot,
        "limit": config.limit,
        "seeds": config.seeds,
        "apply_chat_template": config.apply_chat_template,
        "gen_kwargs": config.gen_kwargs,
        "bootstrap_iters": BOOTSTRAP_ITERS,
        "packages": {name: packages.get(name) for name in ("lm_eval", "transformers", "torch")},
    }


def _evaluate(lm: SteeredHFLM, task: str, config: RunConfig, tasks: TaskSet) -> TaskOutput:
    """One ``simple_evaluate`` call on one task, with samples logged, at the model's scale."""
    from dataclasses import asdict as fields_of

    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import sanitize_model_name

    collect_env_once()
    tracker = EvaluationTracker()
    seeds = config.seeds
    results = simple_evaluate(
        model=lm,
        tasks=[task],
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        device=str(lm.device),
        limit=config.limit,
        log_samples=True,
        bootstrap_iters=BOOTSTRAP_ITERS,
        evaluation_tracker=tracker,
        apply_chat_template=config.apply_chat_template,
        gen_kwargs=config.gen_kwargs,
        task_manager=tasks.manager,
        random_seed=seeds["random"],
        numpy_random_seed=seeds["numpy"],
        torch_random_seed=seeds["torch"],
        fewshot_random_seed=seeds["fewshot"],
    )
    if results is None:
        raise TaskError(f"lm-eval returned no results for {task} (not rank 0?)")
    general = tracker.general_config_tracker
    general.log_end_time()
    general.model_source = "sae_steered"
    general.model_name = str(lm.model.name_or_path)
    general.model_name_sanitized = sanitize_model_name(general.model_name)
    return task_output(results, fields_of(general))


def _finish(store: RunStore, config: RunConfig, steps: Sequence[_Step]) -> RunResult:
    """Write the comparison files (when there is a baseline) and describe the run."""
    report: Report | None = None
    files: list[Path] = []
    if not config.no_baseline:
        report, files = write_comparison(store.folder, config.margin)
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


def _failed(store: RunStore, error: BaseException, where: tuple[str, str] | None) -> None:
    """Record the error and mark the run failed (finished results stay)."""
    store.add_error(error, where, traceback.format_exc())
    store.set_status(Status.FAILED)


def _wrapped(store: RunStore, error: Exception, where: tuple[str, str] | None) -> SaevalError:
    """A one-line error for an unexpected exception (out of memory gets its own hint)."""
    import torch

    place = f" ({where[0]}, {where[1]})" if where else ""
    resume = f"finished results are kept: rerun with --resume --name {store.folder.name}"
    oom = isinstance(error, RuntimeError) and "out of memory" in str(error)  # MPS says only this
    if isinstance(error, torch.OutOfMemoryError) or oom:
        return DeviceError(
            f"out of memory{place}",
            hint=f"{resume} once memory is free, or start a new run with a smaller "
            "--batch-size or --dtype bfloat16 (--resume keeps the batch size and dtype)",
        )
    return TaskError(
        f"{type(error).__name__}{place}: {error}",
        hint=f"the traceback is in {store.folder / 'run.json'} (errors); {resume}",
    )
