"""How far steering moves the model: per-position KL(p_unsteered || p_steered) on given tokens.

For each document (a list of token ids) the model runs twice on the same batch, once without
and once with the steering edits; at every position the KL divergence of the next-token
distributions, in nats, is ``sum_v p(v) (log p(v) - log q(v))`` with p unsteered and q steered.
Batches are right-padded with an attention mask, so a real token never attends to padding and
padding positions are cut off before anything is summed: a batch of mixed lengths gives the
same values as one document at a time. Logits are reduced to the per-position KL one batch at
a time, in float32, so only one batch of logits ever lives in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from saeval.steering.finite import guarding
from saeval.steering.hooks import Edit, attach
from saeval.steering.positions import Positions, describing

if TYPE_CHECKING:
    import torch
    from torch import nn

_T = TypeVar("_T")


def kl_per_position(
    model: nn.Module,
    documents: Sequence[Sequence[int]],
    edits: Mapping[str, Edit],
    *,
    batch_size: int = 4,
    pad_id: int = 0,
    prompt_ends: Sequence[int] | None = None,
    done: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """KL(unsteered || steered) at every position of every document, in nats (document order).
    Document ``i``'s first ``prompt_ends[i]`` tokens are conditioning text (prompt), the rest
    generated; None: every token is generated (a rolling text). Rows steering only some
    positions act accordingly; padding is never steered. ``done`` hears the documents done
    after each batch."""
    import torch

    ends = [0] * len(documents) if prompt_ends is None else list(prompt_ends)
    found: list[list[float]] = []
    batches = zip(_batches(documents, batch_size), _batches(ends, batch_size), strict=True)
    for batch, batch_ends in batches:
        ids, mask = _right_padded(batch, pad_id, _device(model))
        layout = _layout(batch, batch_ends, ids.device)
        with torch.no_grad(), guarding():
            log_p = _log_probs(model, ids, mask)
            with attach(model, edits), describing(layout):
                log_q = _log_probs(model, ids, mask)
            kl = torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="none")
            per_position = kl.sum(-1)
        found.extend(per_position[row, : len(doc)].tolist() for row, doc in enumerate(batch))
        if done is not None:
            done(len(found))
    return found


def continuation_nll(
    model: nn.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 4,
    pad_id: int = 0,
    done: Callable[[int], None] | None = None,
) -> list[tuple[float, int]]:
    """(negative log-likelihood sum, token count) of each continuation given its prompt, under
    ``model`` as it is (no steering edits); ``done`` hears the pairs done after each batch."""
    import torch

    found: list[tuple[float, int]] = []
    for batch in _batches(pairs, batch_size):
        ids, mask = _right_padded([[*p, *c] for p, c in batch], pad_id, _device(model))
        with torch.no_grad():
            log_p = _log_probs(model, ids, mask)
        for row, (prompt, continuation) in enumerate(batch):
            targets = torch.tensor(list(continuation), device=log_p.device)
            start = len(prompt) - 1  # position predicting the first continuation token
            picked = log_p[row, start : start + len(continuation)].gather(-1, targets[:, None])
            found.append((-float(picked.sum()), len(continuation)))
        if done is not None:
            done(len(found))
    return found


def _batches(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]


def _layout(
    batch: Sequence[Sequence[int]], prompt_ends: Sequence[int], device: torch.device
) -> Positions:
    """The positions of a right-padded batch: real from 0, prompt up to each prompt end."""
    import torch

    lengths = torch.tensor([len(doc) for doc in batch], dtype=torch.long, device=device)
    ends = torch.tensor(list(prompt_ends), dtype=torch.long, device=device).minimum(lengths)
    return Positions(start=torch.zeros_like(lengths), end=lengths, prompt_end=ends)


def _right_padded(
    batch: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids right-padded to the longest document, and the attention mask (1: real)."""
    import torch

    width = max(len(doc) for doc in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, doc in enumerate(batch):
        ids[row, : len(doc)] = torch.tensor(list(doc), dtype=torch.long)
        mask[row, : len(doc)] = 1
    return ids.to(device), mask.to(device)


def _log_probs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities (float32) at every position."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    return logits.float().log_softmax(-1)


def _device(model: nn.Module) -> torch.device:
    """Where the model's first parameter lives (inputs go there)."""
    return next(model.parameters()).device
