"""Read a task's side-effect file (``saeval.run.side_effects``).

Generation measures become per-document metrics of the task (``gen_ppl``, ``distinct_2``,
``repetition_4``, ``gen_tokens``: the generation's length in tokens; filter ``none``) with a
mean and its standard error, so a comparison pairs them document by document like any other
continuous metric (paired t). KL is a property of the steered side alone (it is 0 for the
baseline by definition): the task's ``kl`` summary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saeval.analysis.dose import DoseSummary, read_dose
from saeval.analysis.side_effects import KlSummary
from saeval.errors import ResultsError

GENERATION_METRICS = {
    "gen_ppl": False,
    "distinct_2": True,
    "repetition_4": False,
    "gen_tokens": None,
}
_FILTER = "none"


@dataclass(frozen=True)
class SideEffects:
    """What a side-effect file holds: the KL summary and per-document generation measures."""

    kl: KlSummary | None
    generation: Mapping[int, Mapping[str, float]]  # doc_id -> {"gen_ppl,none": value, ...}
    dose: DoseSummary | None = None  # ||h' - h|| / ||h|| of the steered positions, beside the KL


def read_side_effects(path: Path) -> SideEffects:
    """The side effects in ``path``; ResultsError naming the file for anything unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kl = _kl(data.get("kl"))
        generation = _generation(data.get("generation") or [])
        dose = read_dose(data.get("dose"))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ResultsError(f"{path}: not a saeval side-effect file ({error})") from None
    return SideEffects(kl=kl, generation=generation, dose=dose)


def _kl(data: Mapping[str, Any] | None) -> KlSummary | None:
    if data is None:
        return None
    summary = KlSummary(
        mean_kl=float(data["mean"]),
        ci_low=None if data["ci_low"] is None else float(data["ci_low"]),
        ci_high=None if data["ci_high"] is None else float(data["ci_high"]),
        p95=float(data["p95"]),
        tokens=int(data["tokens"]),
        documents=len(data["documents"]),
    )
    numbers = [summary.mean_kl, summary.p95, summary.ci_low or 0.0, summary.ci_high or 0.0]
    if not all(math.isfinite(value) for value in numbers):
        raise ValueError("a KL value is not finite")
    return summary


def _generation(rows: list[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    found: dict[int, dict[str, float]] = {}
    for row in rows:
        values = {}
        for name in GENERATION_METRICS:
            value = row.get(name)
            if value is not None:
                if not math.isfinite(float(value)):
                    raise ValueError(f"document {row['doc_id']}: {name} is not finite")
                values[f"{name},{_FILTER}"] = float(value)
        found[int(row["doc_id"])] = values
    return found


def generation_means(effects: SideEffects) -> dict[str, tuple[float, float | None]]:
    """Per generation measure ("gen_ppl,none", ...): its mean over the documents that have it
    and the standard error sd / sqrt(n) (None for one document)."""
    means = {}
    for name in GENERATION_METRICS:
        key = f"{name},{_FILTER}"
        values = np.array([doc[key] for doc in effects.generation.values() if key in doc])
        if values.size:
            stderr = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
            means[key] = (float(values.mean()), stderr)
    return means
