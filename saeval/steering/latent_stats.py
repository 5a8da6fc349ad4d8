"""How strongly SAE latents fire on a corpus: the numbers a steering coefficient is chosen from.

The model runs once per batch of texts (unsteered, right-padded with an attention mask);
the activation ``h`` at each SAE's hook point is encoded with the SAE's own ``encode`` and the
chosen latents' activations kept per token. Padding never counts, and neither does a text's
first position when it is the tokenizer's BOS token: on Gemma its residual norm is ~15x a
normal token's (an attention sink), so it would dominate the maxima and the mean ``||h||``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from saeval.steering.divergence import _batches, _device, _right_padded
from saeval.steering.hooks import Edit, attach

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from torch import nn

ENCODE_FLOATS = 2**26  # latent activations encoded at once (256 MB in float32)
SNIPPET_TOKENS = (8, 4)  # tokens of context before and after a snippet's token


@dataclass(frozen=True)
class Probe:
    """Which latents of one SAE to read, at which hook point."""

    sae: SAE
    hook_name: str
    latents: tuple[int, ...]


@dataclass
class ProbeActivations:
    """A probe's latents' activations per text over its counted positions, and ``||h||`` there."""

    latents: tuple[int, ...]
    per_text: list[np.ndarray] = field(default_factory=list)  # (counted tokens, len(latents))
    norms: list[np.ndarray] = field(default_factory=list)  # (counted tokens,)


@dataclass(frozen=True)
class Snippet:
    """A position where a latent fires strongly: the text, token and the context around it."""

    text_index: int  # 0-based, in corpus order
    position: int  # token position in the text (BOS included when the tokenizer adds one)
    activation: float
    before: str
    token: str
    after: str


@dataclass(frozen=True)
class LatentStats:
    """One latent's activation statistics over the counted tokens of a corpus."""

    latent_idx: int
    hook_name: str
    tokens: int  # positions counted (no padding, no BOS)
    max_activation: float
    p99: float  # 99th percentile of the activation over counted tokens (linear interpolation)
    frequency: float  # fraction of counted tokens where the latent is > 0
    w_dec_norm: float  # ||W_dec[latent_idx]||
    mean_h_norm: float  # mean ||h|| at the hook point over counted tokens
    snippets: tuple[Snippet, ...]

    @property
    def coefficient_2x_max(self) -> float:
        """The add coefficient '2x the maximum activation' gives (AxBench's factor 2)."""
        return 2.0 * self.max_activation


def read_latents(
    model: nn.Module,
    documents: Sequence[Sequence[int]],
    probes: Sequence[Probe],
    *,
    bos_id: int | None,
    batch_size: int = 4,
    pad_id: int = 0,
) -> list[ProbeActivations]:
    """Every probe's latent activations and ``||h||`` over each document's counted positions."""
    import torch

    found = [ProbeActivations(probe.latents) for probe in probes]
    hooks = sorted({probe.hook_name for probe in probes})
    for batch in _batches(documents, batch_size):
        ids, mask = _right_padded(batch, pad_id, _device(model))
        captured: dict[str, torch.Tensor] = {}
        with torch.no_grad(), attach(model, {hook: _capture(captured, hook) for hook in hooks}):
            model(input_ids=ids, attention_mask=mask)
        for row, doc in enumerate(batch):
            first = 1 if bos_id is not None and len(doc) > 0 and doc[0] == bos_id else 0
            for probe, into in zip(probes, found, strict=True):
                h = captured[probe.hook_name][row, first : len(doc)]
                into.per_text.append(_encode(probe, h))
                into.norms.append(h.float().norm(dim=-1).cpu().numpy().astype(np.float64))
    return found


def summarize(
    probe: Probe,
    found: ProbeActivations,
    documents: Sequence[Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    *,
    bos_id: int | None,
    top: int = 3,
) -> list[LatentStats]:
    """The statistics of each of a probe's latents, with its ``top`` strongest positions."""
    norms = np.concatenate(found.norms) if found.norms else np.zeros(0)
    w_dec = probe.sae.W_dec.detach().float()
    stats = []
    for column, latent in enumerate(found.latents):
        values = np.concatenate([acts[:, column] for acts in found.per_text])
        snippets = _snippets(found.per_text, column, documents, decode, bos_id, top)
        stats.append(
            LatentStats(
                latent_idx=latent,
                hook_name=probe.hook_name,
                tokens=int(values.size),
                max_activation=float(values.max()) if values.size else 0.0,
                p99=float(np.percentile(values, 99)) if values.size else 0.0,
                frequency=float(np.mean(values > 0)) if values.size else 0.0,
                w_dec_norm=float(w_dec[latent].norm()),
                mean_h_norm=float(norms.mean()) if norms.size else 0.0,
                snippets=snippets,
            )
        )
    return stats


def _capture(captured: dict[str, torch.Tensor], hook: str) -> Edit:
    """An edit that records the activation at ``hook`` and leaves it unchanged."""

    def record(h: torch.Tensor) -> torch.Tensor:
        captured[hook] = h.detach()
        return h

    return record


def _encode(probe: Probe, h: torch.Tensor) -> np.ndarray:
    """The probe's latents of ``sae.encode(h)`` (tokens x latents), a chunk of tokens at a time."""
    import torch

    sae = probe.sae
    weight = sae.W_enc
    chunk = max(1, ENCODE_FLOATS // int(sae.cfg.d_sae))
    columns = torch.tensor(probe.latents, dtype=torch.long, device=weight.device)
    with torch.no_grad():
        parts = [
            sae.encode(h[start : start + chunk].to(device=weight.device, dtype=weight.dtype))
            .index_select(-1, columns)
            .float()
            .cpu()
            .numpy()
            for start in range(0, h.shape[0], chunk)
        ]
    width = len(probe.latents)
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, width))


def _snippets(
    per_text: Sequence[np.ndarray],
    column: int,
    documents: Sequence[Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    bos_id: int | None,
    top: int,
) -> tuple[Snippet, ...]:
    """The ``top`` positions with the largest activation above 0 (at most one per text)."""
    best = []
    for index, acts in enumerate(per_text):
        if acts.shape[0] and acts[:, column].max() > 0:
            offset = int(np.argmax(acts[:, column]))
            best.append((float(acts[offset, column]), index, offset))
    best.sort(key=lambda item: (-item[0], item[1]))
    found = []
    for activation, index, offset in best[:top]:
        doc = list(documents[index])
        first = 1 if bos_id is not None and doc and doc[0] == bos_id else 0
        position = offset + first
        before, after = SNIPPET_TOKENS
        found.append(
            Snippet(
                text_index=index,
                position=position,
                activation=activation,
                before=decode(doc[max(first, position - before) : position]),
                token=decode(doc[position : position + 1]),
                after=decode(doc[position + 1 : position + 1 + after]),
            )
        )
    return tuple(found)
