"""Read one side of a comparison: a saeval run or configuration folder, or lm-eval's own output.

lm-eval 0.4.13's `EvaluationTracker` writes `<out>/<model name sanitized>/results_<iso time>.json`
and, with `--log_samples`, `samples_<task>_<iso time>.jsonl` beside it (same time stamp); with an
`--output_path` ending in `.json` it writes `<stem>_<iso time>.json` and the samples in its folder.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from saeval.analysis.results import DocSample, MetricValue, ResultSet, RunSides, TaskResult
from saeval.analysis.samples_io import NON_FINITE_HINT, aggregate_notes, read_samples
from saeval.analysis.side_effects import generation_means, generation_values
from saeval.errors import ResultsError, UsageError
from saeval.records.checksums import verify_configuration
from saeval.records.json_file import read_results_json
from saeval.records.run_folder import (
    BASELINE,
    configuration_scale,
    file_stamp,
    run_configurations,
    samples_file,
    side_effects_file,
)
from saeval.records.side_effects import GENERATION_MEASURES, read_side_effects

_RESULTS_GLOB = "results*.json"
_SKIP_KEYS = frozenset({"name", "alias", "sample_len", "sample_count", "samples"})
# lm-eval's default aggregation of its built-in metrics that are not a mean of per-document
# values; a loglikelihood task's per-document "perplexity" is the log-likelihood, for instance.
_DEFAULT_AGGREGATIONS = {
    "perplexity": "perplexity",
    "word_perplexity": "weighted_perplexity",
    "byte_perplexity": "weighted_perplexity",
    "bits_per_byte": "bits_per_byte",
    "f1": "f1",
    "mcc": "matthews_corrcoef",
    "bleu": "bleu",
    "chrf": "chrf",
    "ter": "ter",
    "brier_score": "brier_score",
}


def load_run(path: Path) -> RunSides:
    """Load a run folder's baseline and every steered configuration."""
    configs = run_configurations(path)
    if BASELINE not in configs:
        raise ResultsError(
            f"{path}: run folder has no baseline/ configuration",
            hint="compare two configuration folders explicitly: saeval compare A B",
        )
    steered: dict[float, ResultSet] = {}
    for name, folder in configs.items():
        scale = configuration_scale(name)
        if scale is not None:
            steered[scale] = load_side(folder, label=name)
    if not steered:
        raise ResultsError(
            f"{path}: run folder has no steered configuration",
            hint="a run folder holds baseline/ and steered/ (or steered@<scale>/) folders",
        )
    baseline = load_side(configs[BASELINE], label=BASELINE)
    return RunSides(run=path, baseline=baseline, steered=dict(sorted(steered.items())))


def load_side(path: Path, label: str | None = None) -> ResultSet:
    """Load a results JSON, a configuration folder or an lm-eval `--output_path` folder."""
    if not path.exists():
        raise ResultsError(f"{path}: no such file or folder")
    configs = run_configurations(path)
    if configs:
        choices = ", ".join(str(path / name) for name in configs)
        raise UsageError(
            f"{path} is a run folder with configurations {', '.join(configs)}: which one?",
            hint=f"name a configuration folder, one of: {choices}; "
            f"or give the run folder alone to compare baseline with steered",
        )
    files = [path] if path.is_file() else _results_files(path)
    checked = verify_configuration(files[0].parent)  # a run folder's files against run.json
    return _load_files(files, source=path, label=label or path.name, notes=checked)


def _results_files(folder: Path) -> list[Path]:
    """The lm-eval results files in a folder or in its model subfolders."""
    files = sorted(folder.glob(_RESULTS_GLOB))
    if not files:
        files = sorted(folder.glob(f"*/{_RESULTS_GLOB}"))
    if not files:
        raise ResultsError(
            f"{folder}: no lm-eval results file (results_*.json) in this folder or its subfolders",
            hint="pass a folder written by `lm_eval --output_path OUT --log_samples` "
            "or a results JSON file",
        )
    parents = sorted({file.parent for file in files})
    if len(parents) > 1:
        listed = ", ".join(str(parent) for parent in parents)
        raise ResultsError(
            f"{folder}: results of several models ({listed})",
            hint="name the model's folder",
        )
    return files


def _load_files(files: list[Path], *, source: Path, label: str, notes: list[str]) -> ResultSet:
    """Merge results files of one model: for each task, the newest file that has it."""
    ordered = sorted(files, key=lambda file: (file_stamp(file), file.stat().st_mtime))
    loaded = [(file, read_results_json(file)) for file in ordered]
    models = {_model_name(data) for _, data in loaded}
    if len(models) > 1:
        raise ResultsError(
            f"{source}: results files of different models ({', '.join(map(str, models))})",
            hint="name one results file",
        )
    tasks: dict[str, TaskResult] = {}
    used: dict[str, Path] = {}
    for file, data in loaded:
        for name, task in _tasks_of(file, data, notes).items():
            tasks[name] = task
            used[name] = file
    notes += _superseded_notes(ordered, used)
    newest = loaded[-1][1]
    return ResultSet(
        label=label,
        source=source,
        files=tuple(sorted(set(used.values()))),
        model_name=_model_name(newest),
        model_args=_model_args(newest),
        tasks=dict(sorted(tasks.items())),
        notes=tuple(notes),
    )


def _superseded_notes(ordered: list[Path], used: Mapping[str, Path]) -> list[str]:
    """Say which results files were set aside because a newer one covers their tasks."""
    if len(ordered) < 2:
        return []
    unused = [file.name for file in ordered if file not in used.values()]
    kept = sorted({file.name for file in used.values()})
    note = f"{ordered[-1].parent}: {len(ordered)} results files; using {', '.join(kept)}"
    return [note + (f" (newest per task; ignored {', '.join(unused)})" if unused else "")]


def _model_name(data: Mapping[str, Any]) -> str | None:
    name = data.get("model_name")
    if isinstance(name, str) and name:
        return name
    config = data.get("config")
    args = config.get("model_args") if isinstance(config, dict) else None
    if isinstance(args, dict) and isinstance(args.get("pretrained"), str):
        return str(args["pretrained"])
    return None


def _model_args(data: Mapping[str, Any]) -> str:
    config = data.get("config")
    args = config.get("model_args") if isinstance(config, dict) else None
    if isinstance(args, dict):
        return ",".join(f"{key}={value}" for key, value in args.items())
    return str(args) if args else ""


def _tasks_of(file: Path, data: Mapping[str, Any], notes: list[str]) -> dict[str, TaskResult]:
    """Every task and group of one results file, with samples where their JSONL is present;
    ``notes`` gets each aggregate that is not the mean of its samples."""
    subtasks = data.get("group_subtasks") or {}
    configs = data.get("configs") or {}
    versions = data.get("versions") or {}
    n_samples = data.get("n-samples") or {}
    better = data.get("higher_is_better") or {}
    stamp = file_stamp(file)
    tasks = {}
    for name, raw in data["results"].items():
        if not isinstance(raw, dict):
            raise ResultsError(f"{file}: results of task {name!r} is not an object")
        samples_file = _samples_file(file.parent, name, stamp) if name in configs else None
        aggregations = _aggregations(configs.get(name))
        samples = read_samples(samples_file, aggregations) if samples_file else None
        task = TaskResult(
            name=name,
            metrics=_metrics(file, name, raw),
            n=_task_n(raw, n_samples.get(name)),
            version=None if versions.get(name) is None else str(versions[name]),
            config_hash=_config_hash(configs.get(name)),
            higher_is_better=dict(better.get(name) or {}),
            subtasks=tuple(subtasks.get(name) or ()),
            samples=samples,
            samples_file=samples_file,
            alias=_alias(name, raw),
        )
        if samples:
            notes += aggregate_notes(file, name, task.metrics, samples, aggregations)
        effects = file.parent / side_effects_file(name, stamp)
        tasks[name] = _with_side_effects(task, effects) if effects.is_file() else task
    return tasks


def _alias(name: str, raw: dict[str, Any]) -> str | None:
    """lm-eval's alias of a task (its ``task_alias``, a subtask's after " - "), or None where
    it is only the task's name."""
    alias = str(raw.get("alias") or "").strip().removeprefix("- ").strip()
    return alias if alias and alias != name else None


def _with_side_effects(task: TaskResult, path: Path) -> TaskResult:
    """``task`` with its KL summary, and its generation measures as per-document metrics."""
    effects = read_side_effects(path)
    samples = dict(task.samples or {})
    for doc_id, values in generation_values(effects).items():
        if doc_id in samples:
            doc = samples[doc_id]
            samples[doc_id] = DocSample(doc.doc_id, doc.doc_hash, {**doc.values, **values})
    means = generation_means(effects)
    metrics = {**task.metrics, **{key: MetricValue(*mean) for key, mean in means.items()}}
    names = [key.partition(",")[0] for key in means]
    better = {**task.higher_is_better, **{name: GENERATION_MEASURES[name] for name in names}}
    kept = samples if task.samples is not None else None
    return replace(
        task,
        metrics=metrics,
        higher_is_better=better,
        samples=kept,
        kl=effects.kl,
        dose=effects.dose,
    )


def _aggregations(config: Any) -> dict[str, str]:
    """How a task aggregates its metrics: its metric_list, else lm-eval's defaults; metrics
    named in neither are means."""
    entries = config.get("metric_list") if isinstance(config, dict) else None
    given = {
        str(entry["metric"]): entry.get("aggregation")
        for entry in entries or []
        if isinstance(entry, dict) and "metric" in entry
    }
    names = set(given) | set(_DEFAULT_AGGREGATIONS)
    return {name: str(given.get(name) or _DEFAULT_AGGREGATIONS.get(name, "mean")) for name in names}


def _samples_file(folder: Path, task: str, stamp: str) -> Path | None:
    path = folder / samples_file(task, stamp)
    return path if path.is_file() else None


def _metrics(file: Path, task: str, raw: Mapping[str, Any]) -> dict[str, MetricValue]:
    """Aggregated metrics keyed "metric,filter", with "N/A" standard errors as None; a NaN or
    infinite value or standard error is a ResultsError (no report is built on it)."""
    metrics = {}
    for key, value in raw.items():
        if key in _SKIP_KEYS or "," not in key or "_stderr," in key:
            continue
        number = _number(file, task, key, value)
        if number is None:
            continue
        metric, _, filter_name = key.partition(",")
        stderr_key = f"{metric}_stderr,{filter_name}"
        stderr = _number(file, task, stderr_key, raw.get(stderr_key))
        metrics[key] = MetricValue(value=number, stderr=stderr)
    return metrics


def _number(file: Path, task: str, key: str, value: Any) -> float | None:
    """A metric's number (None for "N/A" and other non-numbers); ResultsError if not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        raise ResultsError(
            f"{file}: task {task!r} {key} is {value}, not a finite number",
            hint=NON_FINITE_HINT,
        )
    return float(value)


def _task_n(raw: Mapping[str, Any], counts: Any) -> int | None:
    if isinstance(counts, dict) and isinstance(counts.get("effective"), int):
        return int(counts["effective"])
    sample_len = raw.get("sample_len")
    return sample_len if isinstance(sample_len, int) else None


def _config_hash(config: Any) -> str | None:
    """A hash of the task config without `metadata` (lm-eval records the model there)."""
    if not isinstance(config, dict):
        return None
    relevant = {key: value for key, value in config.items() if key != "metadata"}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
