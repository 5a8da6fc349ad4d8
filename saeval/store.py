"""The results folder of a run, its manifest, atomic writes, and the baseline cache.

Layout of one run::

    <output>/<run-name>/run.json               the manifest (schema below), rewritten at each step
    <output>/<run-name>/baseline/              lm-eval's own files, unchanged format:
        results_<stamp>.json                   every finished task of this configuration
        samples_<task>_<stamp>.jsonl           per-document records, one file per (sub)task
    <output>/<run-name>/steered/               the same for the steered model (`--scale 1`)
    <output>/<run-name>/steered@<scale>/       one folder per strength when `--scale` is not just 1
    <output>/<run-name>/comparison.{md,csv,json}
    <output>/.cache/baselines/<key>/           one cached baseline task (see `baseline_key`)

Each configuration folder is what ``lm_eval --output_path OUT --log_samples`` writes for a
multi-task run (one results file, samples sharing its time stamp), so lm-eval's own tools read it.
Every file is written to a temporary file in the same folder and moved into place with
``os.replace``. A (configuration, task) counts as finished once its record is in ``run.json``;
files of an unfinished task are overwritten when ``--resume`` reruns it.

Manifest fields (``run.json``, ``schema_version`` 1):

    schema_version   int, 1
    name             the run folder's name
    status           started (folder made, nothing loaded) | running (model loaded) |
                     interrupted (Ctrl-C or SIGTERM) | failed (an error stopped it) | complete
    created, updated ISO 8601 UTC times
    command          the command line that started (or last resumed) the run
    spec             every option that determines the numbers (a resumed run must match it)
    spec_sha256      sha256 of `spec`
    steer_files      [{path, sha256, dialect, text}]
    saes             the resolved SAEs (release, sae_id, hook_name, d_in, d_sae, ...)
    model            {id, revision, dtype, device, device_name, batch_size}
    tasks            [{name, kind, version, config_sha256, yaml_path}]
    limit, num_fewshot, seeds {random, numpy, torch, fewshot}, apply_chat_template, gen_kwargs
    scales           the steering strengths, configurations {name: {scale, stamp}}
    completed        [{configuration, task, seconds, finished, results, samples,
                       baseline_key, reused_from}]  one record per finished (configuration, task)
    timings          {model_load_s, total_s}; per-task seconds are in `completed`
    packages         versions of saeval, lm_eval, sae_lens, transformers, torch
    python, platform, git_revision (of the working directory, if it is a git checkout)
    errors           [{time, configuration, task, type, message, traceback}]
    comparison       {md, csv, json, plots: [...]} file names, once written

The baseline cache key (`baseline_key`) is the sha256 of everything that determines one baseline
task's numbers: model id + revision (or a local folder's fingerprint) + loaded dtype, device kind
(and GPU name), batch size, the task's name, version and config fingerprint (resolved YAML,
local data files and the Python files of its `!function` tags), num_fewshot, limit, the four
seeds, apply_chat_template, gen_kwargs, bootstrap_iters and the lm_eval, transformers and torch
versions. Batch size is in the key:
padding and batched kernels change log-likelihoods in the last bits and can flip near-tied
answers, so a baseline is reused only when computed exactly as the steered runs beside it are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from saeval.errors import ResultsError
from saeval.results_io import read_json

SCHEMA_VERSION = 1
MANIFEST = "run.json"
BASELINE = "baseline"
CACHE_DIR = ".cache/baselines"
_TMP = ".tmp"
_PER_TASK_KEYS = (
    "results",
    "groups",
    "group_subtasks",
    "configs",
    "versions",
    "n-shot",
    "higher_is_better",
    "n-samples",
    "task_hashes",
)
_MANIFEST_HEAD = ("schema_version", "name", "status", "created", "updated", "command")


class Status(StrEnum):
    """Where a run stands."""

    STARTED = "started"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    COMPLETE = "complete"


@dataclass
class TaskRecord:
    """One finished (configuration, task)."""

    configuration: str
    task: str
    seconds: float
    finished: str
    results: str  # results file name in the configuration folder
    samples: list[str]  # samples file names in the configuration folder
    baseline_key: str | None = None
    reused_from: str | None = None  # the run that computed a baseline taken from the cache


@dataclass
class TaskOutput:
    """What one ``simple_evaluate`` call produced: lm-eval's results and its per-task samples."""

    results: dict[str, Any]  # lm-eval's results dict without "samples"
    samples: dict[str, str]  # (sub)task -> JSONL text in EvaluationTracker's format


def now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def stamp() -> str:
    """A time stamp for lm-eval file names (EvaluationTracker's: ISO with ':' replaced)."""
    return datetime.now().isoformat().replace(":", "-")


def configuration_name(scale: float | None, scales: Iterable[float]) -> str:
    """``baseline`` (scale None), ``steered`` when the only scale is 1, else ``steered@<scale>``."""
    if scale is None:
        return BASELINE
    return "steered" if tuple(scales) == (1.0,) else f"steered@{str(scale).removesuffix('.0')}"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def dump_json(data: Any) -> str:
    """JSON the way lm-eval writes it (indent 2, numpy values and sets converted)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(data, indent=2, default=handle_non_serializable, ensure_ascii=False)


def samples_jsonl(samples: Iterable[dict[str, Any]]) -> str:
    """Per-document records as EvaluationTracker.save_results_samples writes them."""
    from lm_eval.utils import handle_non_serializable, sanitize_list

    lines = []
    for sample in samples:
        record = dict(sample)
        record["arguments"] = {
            f"gen_args_{i}": {f"arg_{j}": value for j, value in enumerate(argument)}
            for i, argument in enumerate(sample["arguments"])
        }
        record["resps"] = sanitize_list(sample["resps"])
        record["filtered_resps"] = sanitize_list(sample["filtered_resps"])
        record["target"] = str(sample["target"])
        lines.append(json.dumps(record, default=handle_non_serializable, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def task_output(results: dict[str, Any], tracker_fields: Mapping[str, Any]) -> TaskOutput:
    """Split simple_evaluate's return value into results (with task_hashes) and samples JSONL."""
    from lm_eval.utils import hash_string

    raw_samples = results.pop("samples", {}) or {}
    hashes = {
        task: hash_string(
            "".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in rows)
        )
        for task, rows in raw_samples.items()
    }
    results.update({"task_hashes": hashes}, **tracker_fields)
    samples = {task: samples_jsonl(rows) for task, rows in raw_samples.items()}
    return TaskOutput(results=results, samples=samples)


def merge_results(into: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Merge one task's lm-eval results into a configuration's (per-task maps joined)."""
    merged = {**into, **{k: v for k, v in new.items() if k not in _PER_TASK_KEYS}}
    for key in _PER_TASK_KEYS:
        if key in into or key in new:
            merged[key] = {**into.get(key, {}), **new.get(key, {})}
    if "date" in into:
        merged["date"] = into["date"]
    return merged


@dataclass
class Manifest:
    """``run.json``: see the module docstring for every field."""

    name: str
    spec: dict[str, Any]
    spec_sha256: str
    command: str
    steer_files: list[dict[str, Any]]
    saes: list[dict[str, Any]]
    model: dict[str, Any]
    tasks: list[dict[str, Any]]
    limit: int | float | None
    num_fewshot: int | None
    seeds: dict[str, int]
    apply_chat_template: bool
    gen_kwargs: str | None
    scales: list[float]
    packages: dict[str, str | None]
    python: str
    platform: str
    git_revision: str | None
    schema_version: int = SCHEMA_VERSION
    status: str = Status.STARTED.value
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    completed: list[TaskRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> Manifest:
        """Rebuild a manifest read from ``path``; ResultsError if it is not one we can read."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{path}: not a saeval run manifest (not a JSON object)")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultsError(
                f"{path}: manifest schema_version {version!r}, this saeval reads {SCHEMA_VERSION}"
            )
        fields = dict(data)
        try:
            fields["completed"] = [TaskRecord(**record) for record in data.get("completed", [])]
            return cls(**fields)
        except TypeError as error:
            raise ResultsError(f"{path}: not a saeval run manifest ({error})") from None


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """sha256 of a JSON-able mapping in canonical form."""
    text = json.dumps(spec, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RunStore:
    """One run folder: its manifest, configuration folders and completion records."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def create(cls, folder: Path, manifest: Manifest) -> RunStore:
        """Make a new run folder and write its first manifest."""
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ResultsError(
                f"{folder} already exists",
                hint="add --resume to continue it, or pick another --name",
            ) from None
        store = cls(folder, manifest)
        store.save()
        return store

    @classmethod
    def open(cls, folder: Path) -> RunStore:
        """Open an existing run folder (for --resume)."""
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResultsError(f"{folder} is not a saeval run folder (no {MANIFEST})") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ResultsError(f"{path}: cannot read the manifest ({error})") from None
        return cls(folder, Manifest.from_dict(data, path))

    def save(self) -> None:
        """Rewrite run.json atomically."""
        self.manifest.updated = now()
        data = asdict(self.manifest)
        ordered = {key: data.pop(key) for key in _MANIFEST_HEAD} | data
        write_atomic(self.folder / MANIFEST, json.dumps(ordered, indent=2) + "\n")

    def set_status(self, status: Status) -> None:
        """Record the run's status."""
        self.manifest.status = status.value
        self.save()

    def add_error(self, error: BaseException, where: tuple[str, str] | None, trace: str) -> None:
        """Record an error (with its traceback) against a (configuration, task)."""
        configuration, task = where or (None, None)
        self.manifest.errors.append(
            {
                "time": now(),
                "configuration": configuration,
                "task": task,
                "type": type(error).__name__,
                "message": str(error),
                "traceback": trace,
            }
        )
        self.save()

    def record(self, configuration: str, task: str) -> TaskRecord | None:
        """The completion record of (configuration, task), if it finished."""
        for record in self.manifest.completed:
            if record.configuration == configuration and record.task == task:
                return record
        return None

    def forget_missing(self) -> list[TaskRecord]:
        """Drop the records whose results or samples files are gone, so a resume reruns them."""
        missing = [record for record in self.manifest.completed if not self._on_disk(record)]
        if missing:
            self.manifest.completed = [r for r in self.manifest.completed if r not in missing]
            self.save()
        return missing

    def _on_disk(self, record: TaskRecord) -> bool:
        """Whether every file of a finished (configuration, task) is still there."""
        folder = self.folder / record.configuration
        return all((folder / name).is_file() for name in [record.results, *record.samples])

    def configuration_dir(self, configuration: str, scale: float | None) -> Path:
        """The configuration's folder (made, and registered in the manifest, on first use)."""
        if configuration not in self.manifest.configurations:
            self.manifest.configurations[configuration] = {"scale": scale, "stamp": stamp()}
            self.save()
        path = self.folder / configuration
        path.mkdir(exist_ok=True)
        return path

    def save_task(
        self,
        configuration: str,
        task: str,
        output: TaskOutput,
        seconds: float,
        baseline_key: str | None = None,
        reused_from: str | None = None,
    ) -> TaskRecord:
        """Write a finished task's samples, merge its results, then record it in run.json."""
        folder = self.folder / configuration
        when = self.manifest.configurations[configuration]["stamp"]
        names = []
        for subtask, text in output.samples.items():
            names.append(f"samples_{subtask}_{when}.jsonl")
            write_atomic(folder / names[-1], text)
        results_name = f"results_{when}.json"
        merged = merge_results(self._results(folder / results_name), output.results)
        write_atomic(folder / results_name, dump_json(merged))
        record = TaskRecord(
            configuration,
            task,
            round(seconds, 3),
            now(),
            results_name,
            names,
            baseline_key,
            reused_from,
        )
        self.manifest.completed.append(record)
        self.save()
        return record

    @staticmethod
    def _results(path: Path) -> dict[str, Any]:
        """The configuration's results so far ({} before its first task)."""
        return read_json(path) if path.exists() else {}


class BaselineCache:
    """``<output>/.cache/baselines/<key>/``: one baseline task's results, samples and key inputs."""

    def __init__(self, output: Path) -> None:
        self.root = output / CACHE_DIR

    def get(self, key: str) -> tuple[TaskOutput, dict[str, Any]] | None:
        """The cached output and its key record, or None (a damaged entry counts as absent)."""
        folder = self.root / key
        try:
            meta = json.loads((folder / "key.json").read_text(encoding="utf-8"))
            results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            samples = {
                task: (folder / f"samples_{task}.jsonl").read_text(encoding="utf-8")
                for task in meta["samples"]
            }
        except (OSError, ValueError, KeyError):
            return None
        return TaskOutput(results=results, samples=samples), meta

    def put(self, key: str, output: TaskOutput, inputs: Mapping[str, Any], run: str) -> None:
        """Store a baseline task under ``key`` (first writer wins; the folder appears whole)."""
        final = self.root / key
        if final.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP}-{key[:12]}-"))
        meta = {"key": key, "inputs": dict(inputs), "run": run, "created": now()}
        meta["samples"] = sorted(output.samples)
        try:
            (building / "results.json").write_text(dump_json(output.results), encoding="utf-8")
            for task, text in output.samples.items():
                (building / f"samples_{task}.jsonl").write_text(text, encoding="utf-8")
            (building / "key.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            os.rename(building, final)
        except OSError:
            if not final.exists():
                raise
        finally:
            shutil.rmtree(building, ignore_errors=True)


def baseline_key(inputs: Mapping[str, Any]) -> str:
    """The cache key (sha256) of a baseline task's key inputs."""
    return spec_sha256({"cache_schema": 1, **inputs})
