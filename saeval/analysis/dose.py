"""The dose of a steered configuration, summarised: ``||h' - h|| / ||h||`` per steered position.

The ratios come per document, hook point and position from ``saeval.steering.dose`` (NaN where
no row of the hook point steers). The first position of a document is reported apart: its
activation norm is an outlier in Gemma-family models (tens of times a typical token's), so its
ratio is tiny and would drag the mean. The summary's ``mean`` and ``p95`` pool every other
steered position of every hook point (with one hook point, its own mean); ``first`` is the mean
at the first positions; each hook point's own numbers are kept beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from saeval.records.dose import DoseSummary, HookDose, dose_record

DOSE_HEADER = "dose"  # a table's column (``<B label> dose`` in a comparison)
DOSE_UNIT = "dose: mean ||h' - h|| / ||h|| over the steered positions (p95 in the files)"


def summarize_dose(per_document: Sequence[Mapping[str, Sequence[float]]]) -> DoseSummary | None:
    """The summary of each document's ratios per hook point; None where no position after the
    first was steered (rows steering only generated text, on prompts)."""
    hook_names = list(dict.fromkeys(name for doc in per_document for name in doc))
    rest: dict[str, list[float]] = {name: [] for name in hook_names}
    first: dict[str, list[float]] = {name: [] for name in hook_names}
    for doc in per_document:
        for name, values in doc.items():
            steered = [v for v in values[:1] if not math.isnan(v)]
            first[name] += steered
            rest[name] += [v for v in values[1:] if not math.isnan(v)]
    pooled = [v for name in hook_names for v in rest[name]]
    if not pooled:
        return None
    hooks = {name: _hook(rest[name], first[name]) for name in hook_names}
    firsts = [v for name in hook_names for v in first[name]]
    return DoseSummary(
        mean=float(np.mean(pooled)),
        p95=float(np.percentile(pooled, 95)),
        first=float(np.mean(firsts)) if firsts else None,
        tokens=len(pooled),
        hooks=hooks,
    )


def _hook(rest: list[float], first: list[float]) -> HookDose:
    return HookDose(
        mean=float(np.mean(rest)) if rest else None,
        p95=float(np.percentile(rest, 95)) if rest else None,
        first=float(np.mean(first)) if first else None,
        tokens=len(rest),
    )


def dose_entry(
    doc_ids: Sequence[int], per_document: Sequence[Mapping[str, Sequence[float]]]
) -> dict[str, Any] | None:
    """The side-effects file's ``dose`` entry (``saeval.records.dose``) of each document's ratios
    per hook point: per document the sum of its ratios after the first position and how many,
    and the summary; None where nothing was steered."""
    summary = summarize_dose(per_document)
    if summary is None:
        return None
    documents = []
    for doc_id, doc in zip(doc_ids, per_document, strict=True):
        values = [v for hook in doc.values() for v in hook[1:] if not math.isnan(v)]
        documents.append((int(doc_id), float(sum(values)), len(values)))
    return dose_record(documents, summary)


def pooled_dose(summaries: Sequence[DoseSummary]) -> float | None:
    """The position-weighted mean dose over several tasks' summaries (None without any)."""
    tokens = sum(summary.tokens for summary in summaries)
    if not tokens:
        return None
    return sum(summary.mean * summary.tokens for summary in summaries) / tokens


class Dosed(Protocol):
    """A comparison row or sweep point: its dose columns."""

    @property
    def dose(self) -> float | None: ...

    @property
    def dose_p95(self) -> float | None: ...


def dose_text(row: Dosed, number: Callable[[float | None], str], compact: bool) -> str:
    """A dose cell, ``0.5123 (p95 0.8012)`` with ``number`` formatting each; the mean alone in
    the terminal table (``compact``)."""
    if compact or row.dose is None or row.dose_p95 is None:
        return number(row.dose)
    return f"{number(row.dose)} (p95 {number(row.dose_p95)})"


def is_dose_header(header: str) -> bool:
    """Whether a cell header is a dose column (``dose``, or ``<B label> dose``)."""
    return header == DOSE_HEADER or header.endswith(f" {DOSE_HEADER}")
