"""`saeval latents` as a library call: activation statistics of a steer file's SAE latents.

Texts are tokenized with the model tokenizer's defaults and cut at the model's context length,
as in ``saeval kl``. The model is loaded once, unsteered; each distinct SAE is loaded once
(through sae_lens) and every one of its latent rows is read at the row's hook point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from saeval.errors import UsageError
from saeval.run.device import check_device
from saeval.run.evaluation import steered_lm
from saeval.run.steer_set import read_steer_set
from saeval.spec.steer_file import SteerRow
from saeval.steering.latent_stats import LatentStats


@dataclass(frozen=True)
class LatentRow:
    """One steer row's latent and its statistics on the corpus."""

    row: SteerRow
    stats: LatentStats

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``saeval latents --format json`` prints, one entry per row."""
        row = self.row
        return {
            "file": row.file,
            "line": row.line,
            "sae_release": row.sae_release,
            "sae_id": row.sae_id,
            "action": row.written_action,
            "coefficient": row.coefficient,
            **asdict(self.stats),
            "coefficient_2x_max": self.stats.coefficient_2x_max,
        }


@dataclass(frozen=True)
class LatentsReport:
    """Every latent row's statistics, with what they were measured on."""

    model_id: str
    texts: int
    truncated: int  # texts cut at the model's context length
    bos_excluded: bool  # whether texts start with a BOS token, left out of every statistic
    rows: tuple[LatentRow, ...]
    skipped: tuple[str, ...]  # rows that are not sae_lens SAE latents ("demo.csv:3")


def measure_latents(
    steer_files: Sequence[Path],
    corpus: Sequence[str],
    *,
    model: str | None = None,
    device: str | None = None,
    dtype: str = "auto",
    batch_size: int = 4,
    top: int = 3,
) -> LatentsReport:
    """Max, p99, firing frequency, ||W_dec[i]||, mean ||h|| and top snippets per latent row."""
    steer = read_steer_set(steer_files, model)
    rows = [row for file in steer.files for row in file.rows]
    latent_rows = [row for row in rows if isinstance(row, SteerRow) and row.loader == "sae_lens"]
    if not latent_rows:
        raise UsageError(
            "the steer files have no SAE latent rows (sae_lens SAEs) to measure",
            hint="saeval latents reads rows with latent_idx, sae_release and sae_id",
        )
    lm = steered_lm([], steer.model_id, check_device(device), dtype, batch_size)
    encoded = [lm.tokenizer(text)["input_ids"] for text in corpus]
    limit = int(lm.max_length)
    documents = [ids[:limit] for ids in encoded]
    bos_id = lm.tokenizer.bos_token_id
    stats = _measure(lm, latent_rows, documents, bos_id, batch_size, top)
    return LatentsReport(
        model_id=steer.model_id,
        texts=len(corpus),
        truncated=sum(len(ids) > limit for ids in encoded),
        bos_excluded=bos_id is not None and any(doc[:1] == [bos_id] for doc in documents),
        rows=tuple(LatentRow(row, stats[_key(row)]) for row in latent_rows),
        skipped=tuple(row.where() for row in rows if row not in latent_rows),
    )


def _key(row: SteerRow) -> tuple[str, str, str | None, int]:
    return (row.sae_release, row.sae_id, row.hook, row.latent_idx)


def _measure(
    lm: Any,
    rows: Sequence[SteerRow],
    documents: Sequence[Sequence[int]],
    bos_id: int | None,
    batch_size: int,
    top: int,
) -> dict[tuple[str, str, str | None, int], LatentStats]:
    """Each distinct (SAE, hook, latent) of ``rows``, one SAE in memory at a time."""
    from saeval.steering.latent_stats import Probe, read_latents, summarize
    from saeval.steering.sae_loading import load_sae

    pad_id = lm.tokenizer.pad_token_id or 0
    by_sae: dict[tuple[str, str], list[SteerRow]] = {}
    for row in rows:
        by_sae.setdefault(row.sae_key, []).append(row)
    found = {}
    for (release, sae_id), sae_rows in by_sae.items():
        sae = load_sae(release, sae_id, device=str(lm.device))
        hooks: dict[str | None, list[int]] = {}
        for row in sae_rows:
            hooks.setdefault(row.hook, []).append(row.latent_idx)
        probes = [
            Probe(sae, hook or str(sae.cfg.metadata.hook_name), tuple(dict.fromkeys(latents)))
            for hook, latents in hooks.items()
        ]
        activations = read_latents(
            lm.model, documents, probes, bos_id=bos_id, batch_size=batch_size, pad_id=pad_id
        )
        for hook, probe, acts in zip(hooks, probes, activations, strict=True):
            for stats in summarize(
                probe, acts, documents, lm.tokenizer.decode, bos_id=bos_id, top=top
            ):
                found[(release, sae_id, hook, stats.latent_idx)] = stats
        del sae
    return found
