"""``run.json``: the typed, versioned manifest of one run, its JSON form and its one reader.

Fields (schema ``saeval.run/2``; ``saeval.run/1`` had ``"schema_version": 1`` instead of
``schema`` and every other field the same, and still reads)::

    schema           "saeval.run/2"
    name             the run folder's name
    status           started (folder made, nothing loaded) | running (model loaded) |
                     interrupted (Ctrl-C or SIGTERM) | failed (an error stopped it) | complete
    created, updated ISO 8601 UTC times
    command          the command line that started (or last resumed) the run
    spec             every option that determines the numbers (a resumed run must match it)
    spec_sha256      sha256 of `spec`
    steer_files      [{path, sha256, dialect, text, positions}]            SteerFileRecord
                     (positions: each row's positions mode, the run's default filled in)
    saes             the resolved SAEs (release, sae_id, hook_name, ...): each as
                     ``saeval.spec.sae_facts.ResolvedSae.to_dict`` writes it
    model            {id, revision, dtype, device, device_name, batch_size} ModelRecord
    tasks            [{name, kind, version, config_sha256, yaml_path}]: each as
                     ``saeval.spec.tasks.TaskSpec`` (``dataclasses.asdict``)
    limit, num_fewshot, seeds {random, numpy, torch, fewshot}, apply_chat_template, gen_kwargs
    scales           the steering strengths
    dose             with --dose: {doses, scales, per_unit_scale, hooks, documents, tokens}, the
                     requested doses and the scales they became (``saeval.run.dose_scale``)
    configurations   {name: {scale, stamp}}                                ConfigurationRecord
    completed        [{configuration, task, seconds, finished, results, samples,
                       baseline_key, reused_from}]  one record per finished (configuration, task)
    timings          {model_load_s, total_s}; per-task seconds are in `completed`
    packages         versions of saeval, lm_eval, sae_lens, transformers, torch
    python, platform, git_revision (of the working directory, if it is a git checkout)
    errors           [{time, configuration, task, type, message, traceback}]  ErrorRecord
    file_sha256      {"<configuration>/<file name>": sha256} of every results, samples and
                     side-effects file, recorded when it is written (``saeval.records.checksums``;
                     absent in run folders of older saevals: their files are unverified)
    file_sha256_replaced  {"<configuration>/<results file>": sha256} the file had before the
                     write in progress replaces it: a process killed between the file and
                     run.json leaves either content, both saeval's own (empty between writes)
    comparison       {files: [...]} file names, once written
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from saeval.errors import ResultsError
from saeval.records.json_file import load_json
from saeval.records.run_folder import MANIFEST
from saeval.records.schema import LEGACY_KEY, schema_id, schema_of

KIND = "run"
VERSION = 2
SCHEMA = schema_id(KIND, VERSION)
_HEAD = ("schema", "name", "status", "created", "updated", "command")


class RunStatus(StrEnum):
    """Where a run stands."""

    STARTED = "started"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    COMPLETE = "complete"


def now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    side_effects: list[str] = field(default_factory=list)  # KL and generation-quality files


@dataclass(frozen=True)
class SteerFileRecord:
    """One steer file as the run read it."""

    path: str
    sha256: str
    dialect: str
    text: str
    positions: list[str] = field(default_factory=list)  # each row's mode, in file order


@dataclass
class ModelRecord:
    """The model a run evaluates; revision, loaded dtype and device name once it is loaded."""

    id: str
    revision: str | None = None
    dtype: str = "auto"
    device: str = "cpu"
    device_name: str | None = None
    batch_size: str | None = None


@dataclass(frozen=True)
class ConfigurationRecord:
    """One configuration folder: its steering scale (None: baseline) and file time stamp."""

    scale: float | None
    stamp: str


@dataclass(frozen=True)
class ErrorRecord:
    """An error that stopped (configuration, task), with its traceback."""

    time: str
    configuration: str | None
    task: str | None
    type: str
    message: str
    traceback: str


@dataclass
class Manifest:
    """``run.json``: see the module docstring for every field."""

    name: str
    spec: dict[str, Any]
    spec_sha256: str
    command: str
    steer_files: list[SteerFileRecord]
    saes: list[dict[str, Any]]
    model: ModelRecord
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
    schema: str = SCHEMA
    status: str = RunStatus.STARTED.value
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    configurations: dict[str, ConfigurationRecord] = field(default_factory=dict)
    completed: list[TaskRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    file_sha256: dict[str, str] = field(default_factory=dict)
    file_sha256_replaced: dict[str, str] = field(default_factory=dict)
    dose: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-able data, head fields first."""
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        for name in ("steer_files", "completed", "errors"):
            data[name] = [asdict(record) for record in data[name]]
        data["model"] = asdict(self.model)
        data["configurations"] = {k: asdict(v) for k, v in self.configurations.items()}
        return {key: data.pop(key) for key in _HEAD} | data

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Manifest:
        """Rebuild a manifest read from ``path`` (schema 1 or 2; the result is schema 2);
        ResultsError if it is not one we can read."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{path}: not a saeval run manifest (not a JSON object)")
        schema_of(data, KIND, (1, VERSION), path)
        current = {key: value for key, value in data.items() if key != LEGACY_KEY}
        try:
            return cls(**(_typed(current) | {"schema": SCHEMA}))
        except (TypeError, AttributeError) as error:
            raise ResultsError(f"{path}: not a saeval run manifest ({error})") from None


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the run folder ``folder``; ResultsError if it cannot be read."""
    path = folder / MANIFEST
    return Manifest.from_dict(load_json(path, "manifest"), path)


def _typed(data: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's fields with every record rebuilt as its dataclass."""
    typed = dict(data)
    typed["steer_files"] = [SteerFileRecord(**r) for r in data.get("steer_files", [])]
    typed["model"] = ModelRecord(**data.get("model", {}))
    typed["configurations"] = {
        name: ConfigurationRecord(**r) for name, r in data.get("configurations", {}).items()
    }
    typed["completed"] = [TaskRecord(**r) for r in data.get("completed", [])]
    typed["errors"] = [ErrorRecord(**r) for r in data.get("errors", [])]
    return typed


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """sha256 of a JSON-able mapping in canonical form."""
    text = json.dumps(spec, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
