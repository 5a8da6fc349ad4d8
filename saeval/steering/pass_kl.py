"""KL to the unsteered model, taken from the multi-configuration pass that evaluates the
configurations (``saeval.steering.shared_prefix``) instead of two passes per configuration.

A row of saeval's request loop (``saeval.steering.loglikelihood_loop``) whose context is whole
(not cut on the left) holds at its first ``prompt_end`` positions exactly the pass
``kl_per_position`` makes over that context alone: the model is causal, the batch right-padded,
and the positions modes see those positions as prompt in both. So the output embedding is shown,
besides the positions each row keeps, every position of the context of each row measured (one
row per distinct context) in every copy; the baseline copy gives ``p``, each configuration's
copy ``q``, and ``KL(p || q) = sum_v p(v) (log p(v) - log q(v))`` at each position, in nats, in
float32, as ``saeval.steering.divergence`` computes it. torch is imported inside the functions."""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from saeval.steering.loglikelihood_loop import Batch

ContextKey = bytes  # a digest of a context's token ids


def context_key(tokens: Sequence[int]) -> ContextKey:
    """A 128-bit digest of a context's token ids."""
    return hashlib.blake2b(array("q", tokens).tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class Contexts:
    """The rows of one batch whose contexts are measured, and where their positions are."""

    rows: tuple[int, ...]  # batch rows, one per distinct context
    keys: tuple[ContextKey, ...]
    lengths: tuple[int, ...]  # tokens of each context: one KL value per token
    index: Tensor  # (positions,) long: the contexts' positions in one copy's flat (rows * length)


def contexts_of(batch: Batch, measured: Container[ContextKey]) -> Contexts | None:
    """The batch's rows with a whole context not in ``measured`` (one per context); None if
    there are none."""
    import torch

    rows: list[int] = []
    keys: list[ContextKey] = []
    lengths: list[int] = []
    for b, row in enumerate(batch.rows):
        if row.context is None:
            continue
        key = context_key(row.context)
        if key not in measured and key not in keys:
            rows.append(b)
            keys.append(key)
            lengths.append(len(row.context))
    if not rows:
        return None
    length = int(batch.input_ids.shape[1])
    index = torch.cat([torch.arange(n) + b * length for b, n in zip(rows, lengths, strict=True)])
    return Contexts(tuple(rows), tuple(keys), tuple(lengths), index.to(batch.input_ids.device))


def flat_positions(contexts: Contexts, copies: int, batch_rows: int, length: int) -> Tensor:
    """The contexts' positions in every copy of a flat ``(copies * rows * length)`` pass."""
    import torch

    offsets = torch.arange(copies, device=contexts.index.device) * (batch_rows * length)
    return (offsets[:, None] + contexts.index[None, :]).reshape(-1)


def kl_of_copies(context_logits: Tensor, copies: int, baseline: int) -> Tensor:
    """``(copies, positions)`` KL(p_baseline || p_copy) of the contexts' flat logits
    ``(copies * positions, vocab)``; the baseline's own row is 0."""
    import torch

    logits = context_logits.reshape(copies, -1, context_logits.shape[-1])
    log_p = logits[baseline].float().log_softmax(-1)
    values = []
    for copy in range(copies):
        log_q = logits[copy].float().log_softmax(-1)
        kl = torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="none")
        values.append(kl.sum(-1))
    return torch.stack(values)


def per_context(contexts: Contexts, values: list[float]) -> dict[ContextKey, list[float]]:
    """One copy's KL values split into each context's positions."""
    found: dict[ContextKey, list[float]] = {}
    start = 0
    for key, length in zip(contexts.keys, contexts.lengths, strict=True):
        found[key] = values[start : start + length]
        start += length
    return found
