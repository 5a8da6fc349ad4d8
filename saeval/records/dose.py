"""The ``dose`` entry of a side-effects file (``saeval.records.side_effects``), beside ``kl``:
``||h' - h|| / ||h||`` of the steered positions, summarised (``saeval.analysis.dose``)::

    dose   null (the baseline; nothing steered on the measured positions) or
           {documents: [{doc_id, sum, tokens}],    per document: the sum of its ratios after
                                                   the first position, and how many
            mean, p95, first, tokens,              the summary (``DoseSummary``)
            hooks: {hook_name: {mean, p95, first, tokens}},  each hook point's own
            positions}                             what was measured

A comparison row flattens the summary into its ``dose`` columns (``dose_columns``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

DOSE_POSITIONS = (
    "every steered position of the conditioning text (first request of each document) but "
    "the first, which is reported apart"
)


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


def dose_record(
    documents: Sequence[tuple[int, float, int]], summary: DoseSummary
) -> dict[str, Any]:
    """The ``dose`` entry from (doc_id, sum of ratios, positions) per document and the summary."""
    return {
        "documents": [
            {"doc_id": doc_id, "sum": total, "tokens": tokens}
            for doc_id, total, tokens in documents
        ],
        "mean": summary.mean,
        "p95": summary.p95,
        "first": summary.first,
        "tokens": summary.tokens,
        "hooks": {name: asdict(hook) for name, hook in summary.hooks.items()},
        "positions": DOSE_POSITIONS,
    }


def read_dose(data: Mapping[str, Any] | None) -> DoseSummary | None:
    """The summary of a side-effects file's ``dose`` (None where absent); ValueError for values
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


class DoseColumns(TypedDict):
    """A comparison row's dose columns: the summary's mean and p95."""

    dose: float | None
    dose_p95: float | None


def dose_columns(summary: DoseSummary | None) -> DoseColumns:
    """A comparison row's dose columns from a task's summary (None when not measured)."""
    if summary is None:
        return DoseColumns(dose=None, dose_p95=None)
    return DoseColumns(dose=summary.mean, dose_p95=summary.p95)
