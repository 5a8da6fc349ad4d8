"""lm-eval's own file formats: results JSON and samples JSONL as ``EvaluationTracker`` writes them.

Each configuration folder of a run holds what ``lm_eval --output_path OUT --log_samples`` writes
for a multi-task run, so lm-eval's own tools read it; one ``simple_evaluate`` call per task is
merged into the configuration's one results file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass
class TaskOutput:
    """What one ``simple_evaluate`` call produced: lm-eval's results and its per-task samples."""

    results: dict[str, Any]  # lm-eval's results dict without "samples"
    samples: dict[str, str]  # (sub)task -> JSONL text in EvaluationTracker's format


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
