"""One generation loop for several configurations: the prompts of a batch tiled to one copy per
configuration, the unsteered layers of the prefill computed once.

``generate_shared`` runs a ``generate`` callable (lm-eval's own ``HFLM._model_generate``, so its
generation kwargs, stopping criteria and pad token apply unchanged) on ``k`` copies of a
left-padded batch of prompts. While it runs (``generating``):

- the first forward call (the prefill) computes the layers below the earliest hook once, as the
  loglikelihood pass does (``shared_prefix.shared_once``); when it returns, those layers' KV
  cache is tiled to every copy, so each decoding step runs every copy through every layer (the
  copies' tokens differ from the first generated token on);
- configuration ``c``'s edits act on copy ``c``; each forward call is described by one copy's
  ``Positions``: the prefill as the prompt, each later call as one generated token.

lm-eval ends a generation when every row of the batch has met the same stop sequence, every row
has produced an EOS token (later tokens are padding) or ``max_length`` is reached; the tiled
batch runs until every copy would have ended, so each copy is cut to the width its own
generation would have had (``own_width``). Under greedy decoding each copy's tokens then equal
those of its configuration's separate generation, token for token; sampled copies draw their
own random numbers, so they differ from a separate generation's draws.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.steering.finite import guarding
from saeval.steering.hooks import attach, decoder_layers
from saeval.steering.module_hooks import ModuleHook, registered
from saeval.steering.positions import (
    Positions,
    decoding_step,
    describing_calls,
    prompt_positions,
)
from saeval.steering.shared_prefix import (
    HookEdits,
    RequestKey,
    Scale,
    SharedAnswers,
    halves_on_oom,
    per_copy,
    shared_layers,
    shared_once,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

Generate = Callable[["Tensor", "Tensor"], "Tensor"]  # (input ids, attention mask) -> output ids
OwnWidth = Callable[["Tensor"], int]  # one configuration's output ids -> its generation's width


def generate_shared(
    model: nn.Module,
    configurations: Sequence[HookEdits],
    context: Tensor,
    attention_mask: Tensor,
    generate: Generate,
    own_width: OwnWidth,
) -> list[Tensor]:
    """Output ids (prompt and generated tokens) of ``context`` for each configuration, all from
    one generation of the tiled batch; a group that runs out of memory is halved and retried."""
    outputs: list[Tensor | None] = [None] * len(configurations)

    def forward(group: Sequence[HookEdits]) -> Tensor:
        copies = len(group)
        ids, mask = context.repeat(copies, 1), attention_mask.repeat(copies, 1)
        with generating(model, group, attention_mask):
            return generate(ids, mask)

    for index, output in halves_on_oom(configurations, forward):
        outputs[index] = output[:, : own_width(output)]
    assert all(output is not None for output in outputs), "one output per configuration"
    return [output for output in outputs if output is not None]


def shared_output(
    shared: SharedAnswers,
    scale: Scale,
    key: RequestKey,
    generate_all: Callable[[list[Scale]], list[Tensor]],
) -> Tensor | None:
    """Configuration ``scale``'s output ids of batch ``key``: the first configuration of
    ``shared`` to meet the batch generates it for all of them (``generate_all``, every finite
    check read once after it); None after a steering error there (each then generates alone)."""
    if shared.generation(scale, key) is None and not shared.broken:
        scales = list(shared.scales)
        try:
            with guarding():
                outputs = generate_all(scales)
        except SteeringError:
            shared.broken = True
        else:
            shared.store_generations(scales, key, outputs)
    return shared.generation(scale, key)


def eos_ids(kwargs: dict[str, Any], default: int | list[int] | None) -> list[int]:
    """The EOS ids a generation stops at: ``eos_token_id`` of its kwargs, else ``default``."""
    eos = kwargs.get("eos_token_id", default)
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


@contextmanager
def generating(
    model: nn.Module, configurations: Sequence[HookEdits], attention_mask: Tensor
) -> Iterator[int]:
    """While open, one ``generate`` over ``len(configurations)`` copies of the prompts whose
    (one copy's) mask is ``attention_mask`` computes the prefill's shared layers once, tiles their
    KV cache after it and steers copy ``c`` by configuration ``c``; yields the shared layers."""
    rows, copies = attention_mask.shape[0], len(configurations)
    names = list(dict.fromkeys(name for edits in configurations for name in edits))
    layers = decoder_layers(model)
    shared = shared_layers(model, names) if copies > 1 and layers is not None else 0

    def prefilled(module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        for handle in handles:  # these hooks: the decoding steps run every copy through every layer
            handle.remove()
        _tile_cache(_cache_of(kwargs, output), shared, rows, copies)

    prefill: list[ModuleHook] = []
    if shared and layers is not None:
        prefill += shared_once(layers[:shared], copies, rows)
        prefill.append(ModuleHook(model, prefilled, with_kwargs=True))
    edits = {name: per_copy(configurations, name, rows) for name in names}
    with (
        registered(*prefill) as handles,
        attach(model, edits),
        describing_generation(model, attention_mask),
    ):
        yield shared


def _cache_of(kwargs: dict[str, Any], output: Any) -> Any:
    """The KV cache a forward call filled (``cache`` in transformers 5.2x, else
    ``past_key_values``); None without one."""
    for name in ("cache", "past_key_values"):
        found = kwargs.get(name)
        if found is None:
            found = getattr(output, name, None)
        if found is not None:
            return found
    return None


def _tile_cache(cache: Any, shared: int, rows: int, copies: int) -> None:
    """Repeat the cache of the first ``shared`` layers (one copy of ``rows`` rows) ``copies``
    times along the batch, copy after copy, as the other layers hold them."""
    if cache is None:  # no KV cache: every decoding step runs the whole sequence again
        return
    import torch

    cache_layers = getattr(cache, "layers", None)
    if cache_layers is None:
        raise SteeringError(
            f"the {type(cache).__name__} KV cache has no per-layer entries to tile for the "
            "configurations of a shared generation",
            hint="rerun with --no-shared-prefix",
        )
    index = None
    for layer in cache_layers[:shared]:
        if index is None:
            index = torch.arange(rows, device=layer.keys.device).repeat(copies)
        layer.batch_select_indices(index)


def describing_generation(model: nn.Module, attention_mask: Tensor) -> AbstractContextManager[None]:
    """Describe every forward call of one ``generate`` over prompts with ``attention_mask``
    (batch, pos): the prefill as the prompt, each later call (one token from the KV cache) as
    one generated token. A call of another length raises a ``SteeringError``."""
    rows, width = attention_mask.shape
    prompt = prompt_positions(attention_mask)

    def layout(call: int, input_ids: Tensor) -> Positions:
        expected = width if call == 0 else 1
        if input_ids.shape[1] != expected:
            step = "the prefill" if call == 0 else f"decoding step {call}"
            raise SteeringError(
                f"generate ran {step} over {input_ids.shape[1]} positions, not {expected}, "
                "so saeval cannot tell prompt from generated positions",
                hint="positions modes other than all need generation with the KV cache "
                "and no chunked prefill",
            )
        return prompt if call == 0 else decoding_step(rows, attention_mask.device)

    return describing_calls(model, layout)


def own_width(
    output: Tensor,
    prompt_width: int,
    stop: Sequence[str],
    tokenizer: Any,
    eos_token_ids: Sequence[int],
    max_length: int,
) -> int:
    """The width of these rows' generation had they been generated alone: Hugging Face's
    ``generate`` with lm-eval's stop-sequence criteria ends after the first token at which one
    stop sequence has been met by every row, every row has produced an EOS token, or the width
    reaches ``max_length``."""
    import torch
    from lm_eval.models.utils_hf import stop_sequences_criteria

    criteria = stop_sequences_criteria(tokenizer, list(stop), prompt_width, output.shape[0])
    eos = torch.tensor(list(eos_token_ids), dtype=output.dtype, device=output.device)
    ended = torch.zeros(output.shape[0], dtype=torch.bool, device=output.device)
    for width in range(prompt_width + 1, output.shape[1] + 1):
        ended |= torch.isin(output[:, width - 1], eos)
        if width >= max_length or bool(ended.all()):
            return width
        if any(criterion(output[:, :width], None) for criterion in criteria):
            return width
    return int(output.shape[1])


def batch_key(
    context: Tensor, max_length: int, stop: Sequence[str], kwargs: dict[str, Any]
) -> RequestKey:
    """A 128-bit digest of one generation batch: its prompt ids, attention mask, length limit,
    stop sequences and generation kwargs."""
    digest = hashlib.blake2b(digest_size=16)
    mask = kwargs.get("attention_mask")
    for tensor in (context, mask):
        if tensor is not None:
            digest.update(repr(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    others = sorted(
        (name, repr(value)) for name, value in kwargs.items() if name != "attention_mask"
    )
    digest.update(repr((max_length, list(stop), others)).encode())
    return digest.digest()
