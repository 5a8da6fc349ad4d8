"""Per-document steerability of a multiple-choice task over a sweep of strengths.

For each document, ``y(s)`` is the log-probability of the target choice among the choices at
strength ``s``: ``ll[target] - logsumexp(ll)`` over the per-choice log-likelihoods lm-eval
logged (``filtered_resps``: ``[loglik, is_greedy]`` per choice). The target is the gold answer
(``target``: a choice index, or the text of one choice). The document's slope is the
least-squares slope of ``y`` against ``s`` over the baseline (``s = 0``) and the non-zero
strengths of one sign, in nats per unit of scale: positive means steering (towards larger
scales) makes the target choice more likely. Reported per sign with at least two strengths:
the median slope with a percentile bootstrap CI over documents, and the anti-steerable
fraction, documents whose slope has the opposite sign to the mean slope, with a Wilson interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from saeval.analysis.results import ResultSet
from saeval.analysis.samples_io import jsonl_records
from saeval.errors import ResultsError

BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
BOOTSTRAP_BATCH = 500  # resamples drawn at once: memory is BATCH x documents floats


@dataclass(frozen=True)
class DocSlope:
    """One document's least-squares slope (nats of target log-probability per unit of scale)."""

    doc_id: int
    target: int
    slope: float


@dataclass(frozen=True)
class Steerability:
    """One task's per-document slopes over the baseline and the strengths of one sign."""

    task: str
    scales: tuple[float, ...]  # the strengths fitted, 0 (the baseline) first
    n: int
    mean_slope: float
    median_slope: float
    median_ci_low: float | None
    median_ci_high: float | None
    anti_steerable: int  # documents whose slope has the opposite sign to the mean slope
    anti_fraction: float
    anti_ci_low: float
    anti_ci_high: float
    skipped: int  # documents left out: not logged at every strength, or no readable target
    slopes: tuple[DocSlope, ...]

    @property
    def negative(self) -> bool:
        """Whether the fitted strengths are the negative ones."""
        return self.scales[-1] < 0

    def to_dict(self) -> dict[str, Any]:
        """Every field, with the per-document slopes, for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class _Doc:
    """What one logged multiple-choice document gives: its hash, target and choice logliks."""

    doc_hash: str
    target: int | None
    logliks: tuple[float, ...]


def steerability(
    baseline: ResultSet, steered: Mapping[float, ResultSet], *, confidence: float = 0.95
) -> list[Steerability]:
    """One entry per multiple-choice task logged on every side and per sign of strength with
    at least two non-zero strengths (positive first)."""
    found = []
    for name, task in baseline.tasks.items():
        for sign in (1.0, -1.0):
            scales = sorted((s for s in steered if s * sign > 0), key=abs)
            files = [task.samples_file, *(_samples_of(steered[s], name) for s in scales)]
            if len(scales) < 2 or any(file is None for file in files):
                continue
            docs = [_read_choices(file) for file in files if file is not None]
            entry = _summarize(name, (0.0, *scales), docs, confidence) if docs[0] else None
            if entry is not None:
                found.append(entry)
    return found


def slopes_of(scales: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``values`` (documents x scales) against ``scales``."""
    x = np.asarray(scales, dtype=float)
    centred = x - x.mean()
    return np.asarray((values - values.mean(axis=1, keepdims=True)) @ centred / (centred @ centred))


def target_log_probability(logliks: Sequence[float], target: int) -> float:
    """log P(target choice | one of the choices): ``ll[target] - logsumexp(ll)``."""
    from scipy.special import logsumexp

    return float(logliks[target] - logsumexp(np.asarray(logliks, dtype=float)))


def _samples_of(side: ResultSet, task: str) -> Path | None:
    result = side.tasks.get(task)
    return None if result is None else result.samples_file


def _summarize(
    task: str, scales: tuple[float, ...], sides: list[dict[int, _Doc]], confidence: float
) -> Steerability | None:
    """Slopes of the documents logged with one hash and a target at every strength (None
    when no document is)."""
    first = sides[0]
    kept = [
        doc_id
        for doc_id, doc in sorted(first.items())
        if doc.target is not None and all(_same(doc, side.get(doc_id)) for side in sides[1:])
    ]
    if not kept:
        return None
    values = np.array(
        [[target_log_probability(s[d].logliks, _target(first[d])) for s in sides] for d in kept]
    )
    slopes = slopes_of(scales, values)
    mean = float(slopes.mean())
    anti = int(np.sum(np.sign(slopes) == -np.sign(mean))) if mean != 0 else 0
    low, high = _median_ci(slopes, confidence)
    wilson = _wilson(anti, len(kept), confidence)
    return Steerability(
        task=task,
        scales=scales,
        n=len(kept),
        mean_slope=mean,
        median_slope=float(np.median(slopes)),
        median_ci_low=low,
        median_ci_high=high,
        anti_steerable=anti,
        anti_fraction=anti / len(kept),
        anti_ci_low=wilson[0],
        anti_ci_high=wilson[1],
        skipped=len(first) - len(kept),
        slopes=tuple(
            DocSlope(d, _target(first[d]), float(s)) for d, s in zip(kept, slopes, strict=True)
        ),
    )


def _same(doc: _Doc, other: _Doc | None) -> bool:
    """Whether ``other`` is the same document with the same number of choices."""
    return (
        other is not None
        and other.doc_hash == doc.doc_hash
        and len(other.logliks) == len(doc.logliks)
    )


def _target(doc: _Doc) -> int:
    assert doc.target is not None
    return doc.target


def _median_ci(slopes: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the median over documents (scipy, fixed seed)."""
    if slopes.size < 2:
        return None, None
    if np.ptp(slopes) == 0:
        return float(slopes[0]), float(slopes[0])
    result = stats.bootstrap(
        (slopes,),
        np.median,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        batch=BOOTSTRAP_BATCH,
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of k out of n >= 1 (scipy's binomtest)."""
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def _read_choices(file: Path) -> dict[int, _Doc]:
    """The multiple-choice documents of a samples JSONL (first record per doc_id); empty when
    the task is not multiple choice (a record with fewer than two choices)."""
    docs: dict[int, _Doc] = {}
    for line, record in jsonl_records(file):
        doc_id = record.get("doc_id")
        if not isinstance(doc_id, int) or doc_id in docs:
            continue
        choices = _choices(record)
        responses = record.get("filtered_resps")
        if len(choices) < 2 or not isinstance(responses, list) or len(responses) != len(choices):
            return {}
        logliks = tuple(_loglik(file, line, response) for response in responses)
        target = _target_index(record.get("target"), choices)
        docs[doc_id] = _Doc(str(record.get("doc_hash")), target, logliks)
    return docs


def _choices(record: Mapping[str, Any]) -> list[str]:
    """The continuation text of each request of a record (one per choice)."""
    arguments = record.get("arguments")
    if not isinstance(arguments, dict):
        return []
    found = []
    for request in arguments.values():
        if not isinstance(request, dict) or not isinstance(request.get("arg_1"), str):
            return []
        found.append(str(request["arg_1"]))
    return found


def _loglik(file: Path, line: int, response: Any) -> float:
    """The log-likelihood of ``[loglik, is_greedy]`` (a string in lm-eval's JSONL)."""
    try:
        value = float(response[0])
    except (TypeError, ValueError, IndexError, KeyError):
        raise ResultsError(
            f"{file}:{line}: filtered_resps holds {response!r}, not [loglik, is_greedy]"
        ) from None
    if not math.isfinite(value):
        raise ResultsError(f"{file}:{line}: a choice's log-likelihood is {value}")
    return value


def _target_index(target: Any, choices: Sequence[str]) -> int | None:
    """The gold choice: an index (also written as a string), or the text of one choice."""
    if isinstance(target, int) and not isinstance(target, bool):
        return target if 0 <= target < len(choices) else None
    if isinstance(target, str):
        text = target.strip()
        if text.isdigit():
            return _target_index(int(text), choices)
        stripped = [choice.strip() for choice in choices]
        return stripped.index(text) if text in stripped else None
    return None
