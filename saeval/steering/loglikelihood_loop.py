"""saeval's loglikelihood request loop: HFLM's arithmetic, with only the logits it needs.

A request is what ``HFLM._loglikelihood_tokens`` receives: ``(request key, context_enc,
continuation_enc)`` (the key is None for a rolling window). As HFLM does, the model sees
``inp = (context + continuation)[-(max_length + 1):][:-1]`` in a right-padded batch without an
attention mask, sorted longest first; the answer is ``(sum of the continuation's log-probs,
whether the argmax is the continuation at every position)``, with ``log_softmax`` in HFLM's
``softmax_dtype``. Requests with the same ``inp`` (and the same context end) share one row, as
HFLM's one-token-continuation grouping does, and each row keeps only the logits of its longest
continuation (``keeping``: the output embedding sees only those positions), so a 262k
vocabulary never yields logits for the context.

Each batch is described by a ``Positions`` (``describing``) while its logits are computed, so
position-limited steering acts exactly on the prompt or the continuation. ``logits_of`` may
return the logits of several configurations of the same batch (the shared-prefix pass); each is
reduced to its answers as soon as it is produced. torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.steering.module_hooks import ModuleHook, registered
from saeval.steering.positions import Positions, describing

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

Request = tuple[Any, list[int], list[int]]  # (request key, context_enc, continuation_enc)
Answer = tuple[float, bool]  # (log-likelihood of the continuation, is_greedy)


@dataclass
class Row:
    """One distinct model input and the requests it answers."""

    tokens: tuple[int, ...]
    prompt_end: int  # where the (left-truncated) context ends; 0 for a rolling window
    requests: list[int] = field(default_factory=list)  # indices into the request list
    keep: int = 0  # the longest continuation among them: logits kept at the last ``keep``
    context: tuple[int, ...] | None = None  # the whole context at the first positions, if uncut


@dataclass(frozen=True)
class Batch:
    """Right-padded rows ready for one forward pass."""

    rows: Sequence[Row]
    input_ids: Tensor  # (rows, length), padded with 0 on the right
    keep: Tensor  # (rows, n) positions whose logits are kept (a row's short tail repeats)
    positions: Positions

    def tiled(self, copies: int) -> tuple[Tensor, Tensor]:
        """``input_ids`` and ``keep`` repeated ``copies`` times along the batch."""
        return self.input_ids.repeat(copies, 1), self.keep.repeat(copies, 1)


LogitsOf = Callable[[Batch], Iterable["Tensor"]]  # kept logits (rows, n, vocab) per configuration


def distinct_rows(requests: Sequence[Request], max_length: int) -> list[Row]:
    """The distinct inputs of ``requests``, longest first (HFLM's order)."""
    rows: dict[tuple[tuple[int, ...], int], Row] = {}
    for index, (key, context, continuation) in enumerate(requests):
        if not context or not continuation or len(continuation) > max_length:
            raise ValueError(
                f"request {index}: lm-eval needs a context, a continuation and at most "
                f"{max_length} continuation tokens (got {len(context)} and {len(continuation)})"
            )
        whole = context + continuation
        tokens = tuple(whole[-(max_length + 1) :][:-1])
        cut = len(whole) - 1 - len(tokens)  # tokens dropped on the left
        prompt_end = 0 if key is None else max(len(context) - cut, 0)
        whole_context = tuple(context) if key is not None and cut == 0 else None
        row = rows.setdefault((tokens, prompt_end), Row(tokens, prompt_end, context=whole_context))
        row.requests.append(index)
        row.keep = max(row.keep, len(continuation))
    return sorted(rows.values(), key=lambda row: (-len(row.tokens), row.tokens))


def batch_of(rows: Sequence[Row], device: torch.device | str) -> Batch:
    """Pad ``rows`` on the right and say which positions' logits each keeps."""
    import torch

    length = len(rows[0].tokens)
    width = max(row.keep for row in rows)
    ids = torch.zeros((len(rows), length), dtype=torch.long)
    keep = torch.empty((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row.tokens)] = torch.tensor(row.tokens, dtype=torch.long)
        tail = torch.arange(len(row.tokens) - row.keep, len(row.tokens))
        keep[b] = torch.cat([tail, tail[-1:].expand(width - row.keep)])
    ends = torch.tensor([len(row.tokens) for row in rows], dtype=torch.long)
    positions = Positions(
        start=torch.zeros(len(rows), dtype=torch.long, device=device),
        end=ends.to(device),
        prompt_end=torch.tensor([row.prompt_end for row in rows], device=device),
    )
    return Batch(rows, ids.to(device), keep.to(device), positions)


def score(
    requests: Sequence[Request],
    *,
    max_length: int,
    batch_size: int,
    logits_of: LogitsOf,
    configurations: int,
    device: torch.device | str,
    softmax_dtype: torch.dtype | None = None,
    done: Callable[[int], object] | None = None,
) -> list[list[Answer]]:
    """``answers[c][i]``: configuration ``c``'s answer to request ``i``; ``logits_of`` yields
    one kept-logits tensor per configuration for each batch; ``done(n)`` after each batch of
    ``n`` requests."""
    answers: list[list[Answer | None]] = [[None] * len(requests) for _ in range(configurations)]
    rows = distinct_rows(requests, max_length)
    for start in range(0, len(rows), batch_size):
        batch = batch_of(rows[start : start + batch_size], device)
        with describing(batch.positions):
            produced = 0
            for c, logits in enumerate(logits_of(batch)):
                _reduce(logits, batch, requests, answers[c], softmax_dtype)
                produced += 1
        assert produced == configurations, f"{produced} configurations of {configurations}"
        if done is not None:
            done(sum(len(row.requests) for row in batch.rows))
    return [[_answered(answer) for answer in per_configuration] for per_configuration in answers]


def _reduce(
    logits: Tensor,
    batch: Batch,
    requests: Sequence[Request],
    answers: list[Answer | None],
    softmax_dtype: torch.dtype | None,
) -> None:
    """Turn one configuration's kept logits into the answers of the batch's requests."""
    import torch
    import torch.nn.functional as F

    log_probs = F.log_softmax(logits, dim=-1, dtype=softmax_dtype)
    greedy = log_probs.argmax(dim=-1)
    for b, row in enumerate(batch.rows):
        for index in row.requests:
            continuation = requests[index][2]
            span = slice(row.keep - len(continuation), row.keep)
            target = torch.tensor(continuation, dtype=torch.long, device=log_probs.device)
            picked = log_probs[b, span].gather(-1, target[:, None]).squeeze(-1)
            answers[index] = (float(picked.sum()), bool((greedy[b, span] == target).all()))


def _answered(answer: Answer | None) -> Answer:
    assert answer is not None, "every request belongs to one row"
    return answer


@contextmanager
def keeping(model: nn.Module, keep: Tensor, extra: Tensor | None = None) -> Iterator[None]:
    """Calls of ``model`` inside return logits only at ``keep`` ((rows, n) positions): the
    output embedding (``lm_head``) sees only those positions' hidden states, so whatever the
    model does after it (Gemma's soft-capping) still applies, in every transformers version;
    and they build no KV cache. With ``extra`` (positions of the flat ``(rows * length)``
    pass) the logits are flat, ``(1, rows * n + len(extra), vocab)``: the kept ones, then those
    of the extra positions."""
    import torch

    head = model.get_output_embeddings()  # type: ignore[operator]
    if not isinstance(head, torch.nn.Module):
        raise TypeError(f"{type(model).__name__} has no output embedding to keep logits at")

    def no_cache(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, {**kwargs, "use_cache": False}

    def kept_only(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        kept = hidden.take_along_dim(keep[..., None], dim=1)
        if extra is None:
            return (kept, *args[1:])
        width = hidden.shape[-1]
        flat = hidden.reshape(-1, width).index_select(0, extra)
        return (torch.cat([kept.reshape(-1, width), flat])[None], *args[1:])

    with registered(
        ModuleHook(model, no_cache, on="input", with_kwargs=True),
        ModuleHook(head, kept_only, on="input"),
    ):
        yield
