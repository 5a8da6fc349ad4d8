"""lm-eval samples JSONL as per-document values, and what results and samples files must agree on.

A samples file holds one record per (document, filter); a document that appears twice for one
filter is an error naming both lines. Where a task's metric aggregates with ``mean``, the
results file's aggregate must be the mean of the per-document values beside it (a samples
file cut short or from another evaluation is said, not silently compared).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from saeval.analysis.results import DocSample, MetricValue
from saeval.errors import ResultsError
from saeval.records.json_file import parse_json, read_text

MEAN_AGGREGATIONS = frozenset({"mean", "nanmean"})
_NAN_MEAN = "nanmean"  # its per-document NaNs are documents without a value, not errors
NON_FINITE_HINT = "the evaluation that wrote it met NaN or infinity; its numbers mean nothing"


def read_samples(file: Path, aggregations: Mapping[str, str] | None = None) -> dict[int, DocSample]:
    """Read an lm-eval samples JSONL into per-document values ("acc,none" -> 1.0), leaving out
    the metrics whose ``aggregations`` entry is not a mean of these values (corpus-level ones).

    A NaN or infinite value is a ResultsError naming the line and document, except a NaN of a
    ``nanmean`` metric, which lm-eval leaves out of the aggregate: that document has no value.
    So is a document that appears twice for one filter (which answer would count?).
    """
    aggregations = aggregations or {}
    docs: dict[int, DocSample] = {}
    seen: dict[tuple[int, str], int] = {}  # (doc_id, filter) -> its line
    for line_number, record in jsonl_records(file):
        doc_id, doc_hash, values = _sample_values(file, line_number, record, aggregations)
        filter_name = str(record.get("filter", "none"))
        first = seen.setdefault((doc_id, filter_name), line_number)
        if first != line_number:
            raise ResultsError(
                f"{file}:{line_number}: doc_id {doc_id} appears again (first at line {first}, "
                f"filter {filter_name}); a samples file holds each document once",
                hint="the file was edited or two evaluations were appended into it; "
                "rerun the evaluation that wrote it",
            )
        previous = docs.get(doc_id)
        if previous is not None and previous.doc_hash != doc_hash:
            raise ResultsError(
                f"{file}:{line_number}: document {doc_id} appears with two different doc_hash"
            )
        merged = {**previous.values, **values} if previous else values
        docs[doc_id] = DocSample(doc_id=doc_id, doc_hash=doc_hash, values=merged)
    return docs


def aggregate_notes(
    file: Path,
    task: str,
    metrics: Mapping[str, MetricValue],
    samples: Mapping[int, DocSample],
    aggregations: Mapping[str, str],
) -> list[str]:
    """A note per ``mean`` metric whose aggregate in ``file`` is not the mean of the task's
    per-document values (other aggregations, perplexity or BLEU say, are not checked)."""
    notes = []
    for key, metric in metrics.items():
        if aggregations.get(key.partition(",")[0], "mean") != "mean" or not samples:
            continue
        values = [doc.values.get(key) for doc in samples.values()]
        if any(value is None for value in values):
            continue
        mean = math.fsum(value for value in values if value is not None) / len(values)
        if not math.isclose(mean, metric.value, rel_tol=1e-9, abs_tol=1e-12):
            notes.append(
                f"{file}: {task} {key} is {metric.value:.6g}, but the mean over the "
                f"{len(values)} documents of its samples file is {mean:.6g}: the results and "
                "samples files disagree (one was changed or comes from another evaluation)"
            )
    return notes


def jsonl_records(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_number, line in enumerate(read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json(line, file, line_number, "samples file")
        if not isinstance(record, dict):
            raise ResultsError(f"{file}:{line_number}: a sample must be a JSON object")
        yield line_number, record


def _sample_values(
    file: Path, line_number: int, record: Mapping[str, Any], aggregations: Mapping[str, str]
) -> tuple[int, str, dict[str, float]]:
    doc_id, doc_hash = record.get("doc_id"), record.get("doc_hash")
    names = record.get("metrics")
    if not isinstance(doc_id, int) or not isinstance(doc_hash, str) or not isinstance(names, list):
        raise ResultsError(
            f"{file}:{line_number}: not an lm-eval sample (needs doc_id, doc_hash and metrics)"
        )
    filter_name = str(record.get("filter", "none"))
    values: dict[str, float] = {}
    for name in names:
        value = record.get(name)
        aggregation = aggregations.get(name, "mean")
        if aggregation not in MEAN_AGGREGATIONS or not isinstance(value, bool | int | float):
            continue
        if not math.isfinite(value):
            if math.isnan(value) and aggregation == _NAN_MEAN:
                continue  # nanmean leaves it out of the aggregate: the document has no value
            raise ResultsError(
                f"{file}:{line_number}: {name} of document {doc_id} is {value}, "
                "not a finite number",
                hint=NON_FINITE_HINT,
            )
        values[f"{name},{filter_name}"] = float(value)
    return doc_id, doc_hash, values
