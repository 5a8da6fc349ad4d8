"""`saeval kl` as a library call: how much a steer set perturbs the model on a corpus, per scale.

Each text is tokenized with the model tokenizer's defaults (special tokens as the tokenizer adds
them) and cut only at the model's context length; the model is loaded once and runs each
batch twice per scale (unsteered, steered). No lm-eval evaluation is involved.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saeval.analysis.side_effects import summarize_kl
from saeval.records.side_effects import KlSummary
from saeval.run.device import check_device
from saeval.run.evaluation import steered_lm
from saeval.run.steer_set import read_steer_set
from saeval.spec.corpus import read_texts


@dataclass(frozen=True)
class KlMeasurement:
    """KL(unsteered || steered) on a corpus at one steering scale."""

    scale: float
    summary: KlSummary
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``saeval kl --format json`` prints, one entry per scale: the KL
        summary in its one shape (``saeval.records.side_effects``), its document count and time."""
        return {
            "scale": self.scale,
            **self.summary.to_dict(),
            "documents": self.summary.documents,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class KlReport:
    """Every scale's measurement, with what was measured on."""

    model_id: str
    texts: int
    truncated: int  # texts cut at the model's context length
    measurements: tuple[KlMeasurement, ...]


def measure_kl(
    steer_files: Sequence[Path],
    texts: Path,
    *,
    model: str | None = None,
    device: str | None = None,
    scales: Sequence[float] = (1.0,),
    dtype: str = "auto",
    batch_size: int = 4,
) -> KlReport:
    """KL(unsteered || steered) on every position of every text, for each scale."""
    from saeval.steering.divergence import kl_per_position

    steer = read_steer_set(steer_files, model)
    corpus = read_texts(texts)
    rows = [row for file in steer.files for row in file.rows]
    lm = steered_lm(rows, steer.model_id, check_device(device), dtype, batch_size)
    encoded = [lm.tokenizer(text)["input_ids"] for text in corpus]
    limit = int(lm.max_length)
    documents = [ids[:limit] for ids in encoded]
    pad_id = lm.tokenizer.pad_token_id or 0
    measurements = []
    for scale in scales:
        started = time.perf_counter()
        edits = lm.plan.edits(scale)
        per_position = kl_per_position(
            lm.model, documents, edits, batch_size=batch_size, pad_id=pad_id
        )
        seconds = time.perf_counter() - started
        measurements.append(KlMeasurement(scale, summarize_kl(per_position), seconds))
    truncated = sum(len(ids) > limit for ids in encoded)
    return KlReport(steer.model_id, len(corpus), truncated, tuple(measurements))
