"""What a steer plan records of one sae_lens SAE, and which architectures the encoding actions
support.

``LoadedSae`` names an SAE in messages and in the run folder; the tables classify its
``architecture`` (sae_lens's ``cfg.architecture()``) for the rows that run its encoder
(``clamp``, ``ablate``, ``clamp_active``, ``add_through_sae``; ``saeval.steering.clamp``):

- ``SLICEABLE``: each latent's encoder depends on its own weights, so a clamp keeps only its
  latents' slice of the encoder;
- ``COMPETING``: latents compete (TopK), so a clamp keeps the whole encoder, and every parameter
  counts as read (``saeval.steering.finite``);
- ``PER_TOKEN_NORMS``: activations normalised per token, which rescales the decoder rows per
  token, so clamping through ``W_dec`` is not defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sae_lens import SAE

SaeKey = tuple[str, str]  # (sae_release, sae_id)

SLICEABLE = ("standard", "jumprelu", "gated")
COMPETING = ("topk", "abstopk")
PER_TOKEN_NORMS = ("layer_norm", "constant_norm_rescale")


@dataclass(frozen=True)
class LoadedSae:
    """One SAE as loaded by sae_lens: what a plan records about it (for messages)."""

    release: str
    sae_id: str
    architecture: str
    hook_name: str | None
    d_in: int
    d_sae: int
    model_name: str | None
    neuronpedia_id: str | None


def loaded_sae(key: SaeKey, sae: SAE) -> LoadedSae:
    """The record of ``sae``, loaded as ``key``."""
    metadata = sae.cfg.metadata
    return LoadedSae(
        release=key[0],
        sae_id=key[1],
        architecture=sae.cfg.architecture(),
        hook_name=metadata.hook_name,
        d_in=int(sae.cfg.d_in),
        d_sae=int(sae.cfg.d_sae),
        model_name=metadata.model_name,
        neuronpedia_id=metadata.neuronpedia_id,
    )
