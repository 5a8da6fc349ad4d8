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
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np

DOSE_POSITIONS = (
    "every steered position of the conditioning text (first request of each document) but "
    "the first, which is reported apart"
)


DOSE_HEADER = "dose"  # a table's column (``<B label> dose`` in a comparison)
DOSE_UNIT = "dose: mean ||h' - h|| / ||h|| over the steered positions (p95 in the files)"


@dataclass(frozen=True)
class HookDose:
    """The dose at one hook point: mean and p95 over steered positions after the first, the
    mean at the first positions (None where none was steered), how many positions counted."""

    mean: float | None
    p95: float | None
    first: float | None
    tokens: int


@dataclass(frozen=True)
class DoseSummary:
    """The dose of one configuration on one task, pooled over its hook points."""

    mean: float
    p95: float
    first: float | None
    tokens: int
    hooks: Mapping[str, HookDose] = field(default_factory=dict)


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


def dose_record(
    doc_ids: Sequence[int], per_document: Sequence[Mapping[str, Sequence[float]]]
) -> dict[str, Any] | None:
    """The JSON form in a side-effect file, beside ``kl``: the summary, each hook point's, and
    per document its doc_id, the sum of its ratios after the first position and how many;
    None where nothing was steered."""
    summary = summarize_dose(per_document)
    if summary is None:
        return None
    documents = []
    for doc_id, doc in zip(doc_ids, per_document, strict=True):
        values = [v for hook in doc.values() for v in hook[1:] if not math.isnan(v)]
        documents.append({"doc_id": int(doc_id), "sum": float(sum(values)), "tokens": len(values)})
    return {
        "documents": documents,
        "mean": summary.mean,
        "p95": summary.p95,
        "first": summary.first,
        "tokens": summary.tokens,
        "hooks": {name: asdict(hook) for name, hook in summary.hooks.items()},
        "positions": DOSE_POSITIONS,
    }


def read_dose(data: Mapping[str, Any] | None) -> DoseSummary | None:
    """The summary of a side-effect file's ``dose`` (None where absent); ValueError for values
    that are not finite."""
    if data is None:
        return None
    hooks = {name: HookDose(**values) for name, values in data.get("hooks", {}).items()}
    first = data.get("first")
    summary = DoseSummary(
        mean=float(data["mean"]),
        p95=float(data["p95"]),
        first=None if first is None else float(first),
        tokens=int(data["tokens"]),
        hooks=hooks,
    )
    if not all(math.isfinite(value) for value in (summary.mean, summary.p95, first or 0.0)):
        raise ValueError("a dose value is not finite")
    return summary


def pooled_dose(summaries: Sequence[DoseSummary]) -> float | None:
    """The position-weighted mean dose over several tasks' summaries (None without any)."""
    tokens = sum(summary.tokens for summary in summaries)
    if not tokens:
        return None
    return sum(summary.mean * summary.tokens for summary in summaries) / tokens


class DoseColumns(TypedDict):
    """The dose columns of a comparison row."""

    dose: float | None
    dose_p95: float | None


def dose_fields(summary: DoseSummary | None) -> DoseColumns:
    """A comparison row's dose columns from a task's summary (None when not measured)."""
    if summary is None:
        return DoseColumns(dose=None, dose_p95=None)
    return DoseColumns(dose=summary.mean, dose_p95=summary.p95)


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
