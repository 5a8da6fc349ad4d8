"""A task's side-effects file (``side_effects_<task>_<stamp>.json``), and the one KL summary shape.

Schema ``saeval.side_effects/1``::

    schema       "saeval.side_effects/1"
    kl           null (the baseline; KL not measured) or
                 {documents: [{doc_id, sum, tokens}],   per-document KL sum (nats) and positions
                  mean, ci_low, ci_high, p95, tokens,   the KL summary (``KlSummary.to_dict``)
                  positions, seconds}                   what was measured, and how long it took
    dose         null or ||h' - h|| / ||h|| of the same pass (``saeval.records.dose``)
    generation   null (not a generation task) or
                 [{doc_id, gen_ppl, distinct_2, repetition_4, gen_tokens}]  per document

The KL summary has this one shape wherever saeval writes it (``saeval kl --format json`` prints
it per scale); a comparison row flattens it into its ``kl`` columns (``kl_columns``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from saeval.errors import ResultsError
from saeval.records.dose import DoseSummary, read_dose
from saeval.records.json_file import load_json
from saeval.records.schema import schema_id, schema_of

KIND = "side_effects"
SCHEMA = schema_id(KIND, 1)
# each generation measure -> whether higher is better (None: neither; gen_tokens is a length)
GENERATION_MEASURES = {
    "gen_ppl": False,
    "distinct_2": True,
    "repetition_4": False,
    "gen_tokens": None,
}


@dataclass(frozen=True)
class KlSummary:
    """KL(unsteered || steered) over documents: token-weighted mean, its CI, p95, counts."""

    mean_kl: float
    ci_low: float | None
    ci_high: float | None
    p95: float
    tokens: int
    documents: int

    def to_dict(self) -> dict[str, Any]:
        """The summary's JSON form (its document count is the length of the list beside it)."""
        return {
            "mean": self.mean_kl,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p95": self.p95,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], documents: int) -> KlSummary:
        """The summary of ``to_dict``'s form; ValueError if a number is missing or not finite."""
        summary = cls(
            mean_kl=float(data["mean"]),
            ci_low=None if data["ci_low"] is None else float(data["ci_low"]),
            ci_high=None if data["ci_high"] is None else float(data["ci_high"]),
            p95=float(data["p95"]),
            tokens=int(data["tokens"]),
            documents=documents,
        )
        numbers = [summary.mean_kl, summary.p95, summary.ci_low or 0.0, summary.ci_high or 0.0]
        if not all(math.isfinite(value) for value in numbers):
            raise ValueError("a KL value is not finite")
        return summary


class KlColumns(TypedDict):
    """A comparison row's KL columns: the summary flattened (``mean`` is ``kl``)."""

    kl: float | None
    kl_ci_low: float | None
    kl_ci_high: float | None
    kl_p95: float | None


def kl_columns(summary: KlSummary | None) -> KlColumns:
    """A comparison row's KL columns from a task's summary (all None when not measured)."""
    if summary is None:
        return KlColumns(kl=None, kl_ci_low=None, kl_ci_high=None, kl_p95=None)
    return KlColumns(
        kl=summary.mean_kl,
        kl_ci_low=summary.ci_low,
        kl_ci_high=summary.ci_high,
        kl_p95=summary.p95,
    )


def kl_record(
    documents: Sequence[tuple[int, float, int]], summary: KlSummary, positions: str
) -> dict[str, Any]:
    """The ``kl`` entry of a side-effects file from (doc_id, KL sum, tokens) per document
    (``seconds`` is added once the measurement is timed)."""
    return {
        "documents": [
            {"doc_id": doc_id, "sum": total, "tokens": tokens}
            for doc_id, total, tokens in documents
        ],
        **summary.to_dict(),
        "positions": positions,
    }


def side_effects_record(
    kl: dict[str, Any] | None,
    generation: list[dict[str, Any]] | None,
    dose: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole file's record: its schema, the KL entry, the dose entry and the generation rows."""
    return {"schema": SCHEMA, "kl": kl, "dose": dose, "generation": generation}


@dataclass(frozen=True)
class SideEffects:
    """What a side-effects file holds: the KL summary and per-document generation measures."""

    kl: KlSummary | None
    generation: Mapping[int, Mapping[str, float]]  # doc_id -> {"gen_ppl": value, ...}
    dose: DoseSummary | None = None  # ||h' - h|| / ||h|| of the steered positions, beside the KL


def read_side_effects(path: Path) -> SideEffects:
    """The side effects in ``path``; ResultsError naming the file for anything unreadable."""
    data = load_json(path, "side-effects file")
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a saeval side-effect file (not a JSON object)")
    schema_of(data, KIND, (1,), path)
    try:
        kl = data.get("kl")
        summary = None if kl is None else KlSummary.from_dict(kl, len(kl["documents"]))
        generation = _generation(data.get("generation") or [])
        dose = read_dose(data.get("dose"))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ResultsError(f"{path}: not a saeval side-effect file ({error})") from None
    return SideEffects(kl=summary, generation=generation, dose=dose)


def _generation(rows: list[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    """Per document, each generation measure it has; ValueError for one that is not finite."""
    found: dict[int, dict[str, float]] = {}
    for row in rows:
        values = {}
        for name in GENERATION_MEASURES:
            value = row.get(name)
            if value is not None:
                if not math.isfinite(float(value)):
                    raise ValueError(f"document {row['doc_id']}: {name} is not finite")
                values[name] = float(value)
        found[int(row["doc_id"])] = values
    return found
