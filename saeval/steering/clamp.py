"""Clamps and ablations: the SAE encoder sliced to the clamped latents, and their decoder rows.

``clamp``: ``h <- h + (c - f_i(h)) * W_dec[i]``, ``f_i`` the SAE encoder's latent ``i``;
``ablate`` clamps to 0. The encoder is the SAE's own class sliced to the clamped latents
(``W_enc[:, idx]``, ``b_enc[idx]``, ``threshold[idx]``, ``W_dec[idx]``, same ``b_dec`` and config),
so its ``encode`` keeps sae_lens's semantics for each architecture at a cost proportional to the
clamped latents. TopK-style SAEs select latents by competition among all of them, so their full
SAE is kept; those with ``rescale_acts_by_decoder_norm`` decode a latent along
``W_dec[i] / ||W_dec[i]||``, which is the row a clamp then uses, so clamping matches sae_lens's
``decode``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import SteerRow
    from saeval.steering.plan import LoadedSae

SLICEABLE = ("standard", "jumprelu", "gated")  # each latent's encoder depends on its own weights
COMPETING = ("topk", "abstopk")  # latents compete: the full encoder is needed
PER_TOKEN_NORMS = ("layer_norm", "constant_norm_rescale")  # decoder rows rescaled per token


@dataclass
class ClampGroup:
    """One SAE's clamped latents at one hook point: a small encoder and its decoder rows."""

    sae: LoadedSae
    rows: tuple[SteerRow, ...]
    latents: tuple[int, ...]
    targets: Tensor  # (k,) clamp targets before scaling
    encoder: SAE  # sliced to the latents, or the full SAE for competing architectures
    positions: Tensor | None  # latents' positions in the encoder's output when it is the full SAE
    W_dec: Tensor  # (k, d_in) decoder rows of the latents
    _on_device: dict[Any, tuple[SAE, Tensor, Tensor | None, Tensor]] = field(
        default_factory=dict, repr=False
    )

    def delta(self, h: Tensor, scale: float) -> Tensor:
        """``(scale * c - f(h)) @ W_dec`` in the encoder's dtype, on ``h``'s device."""
        import torch

        encoder, targets, positions, W_dec = self._moved(h.device)
        with torch.no_grad():
            acts = encoder.encode(h)
            if positions is not None:
                acts = acts.index_select(-1, positions)
            return (targets * scale - acts) @ W_dec

    def _moved(self, device: torch.device) -> tuple[SAE, Tensor, Tensor | None, Tensor]:
        """The encoder and tensors on ``device`` (copied once per device)."""
        if device not in self._on_device:
            if device == self.W_dec.device:
                encoder = self.encoder
            else:
                encoder = copy.deepcopy(self.encoder).to(device)
            positions = None if self.positions is None else self.positions.to(device)
            self._on_device[device] = (
                encoder,
                self.targets.to(device),
                positions,
                self.W_dec.to(device),
            )
        return self._on_device[device]


def clamp_group(sae: SAE, info: LoadedSae, rows: list[SteerRow]) -> ClampGroup:
    """The encoder and decoder rows that clamping ``rows``' latents needs."""
    import torch

    _check_clampable(sae, info, rows)
    latents = tuple(row.latent_idx for row in rows)
    index = torch.tensor(latents, dtype=torch.long, device=sae.W_dec.device)
    targets = torch.tensor(
        [0.0 if row.action == "ablate" else row.coefficient for row in rows],
        dtype=sae.W_dec.dtype,
        device=sae.W_dec.device,
    )
    if info.architecture in COMPETING:
        encoder, positions = _full_encoder(sae), index
    else:
        encoder, positions = sliced_sae(sae, index), None
    with torch.no_grad():
        W_dec = sae.W_dec.index_select(0, index).detach().clone()
        if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
            # sae_lens decodes such a latent as f_i / ||W_dec[i]|| * W_dec[i] (TopK SAEs).
            W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return ClampGroup(
        sae=info,
        rows=tuple(rows),
        latents=latents,
        targets=targets,
        encoder=encoder,
        positions=positions,
        W_dec=W_dec,
    )


def _check_clampable(sae: SAE, info: LoadedSae, rows: list[SteerRow]) -> None:
    """Clamps need an encoder whose latents map linearly back through W_dec."""
    where = ", ".join(row.where(row.column("action")) for row in rows)
    if info.architecture not in SLICEABLE + COMPETING:
        raise SteeringError(
            f"{where}: clamp/ablate is not supported for {info.architecture!r} SAEs "
            f"(supported: {', '.join(SLICEABLE + COMPETING)})",
            hint="use action add for this SAE",
        )
    if sae.cfg.normalize_activations in PER_TOKEN_NORMS:
        raise SteeringError(
            f"{where}: SAE {info.release} {info.sae_id} normalises activations per token "
            f"({sae.cfg.normalize_activations}), so clamping through W_dec is not defined",
            hint="use action add for this SAE",
        )


def _full_encoder(sae: SAE) -> SAE:
    """The whole SAE, sharing its tensors, reading flat activations (hook_z comes flattened)."""
    return _rebuilt(sae, dict(sae.state_dict()), sae.cfg.d_sae)


def sliced_sae(sae: SAE, index: Tensor) -> SAE:
    """An SAE of the same class and config holding only the latents ``index``."""
    import torch

    with torch.no_grad():
        state = {name: _slice(name, t, sae, index) for name, t in sae.state_dict().items()}
    return _rebuilt(sae, state, int(index.numel()))


def _rebuilt(sae: SAE, state: dict[str, Tensor], d_sae: int) -> SAE:
    """A frozen SAE of ``sae``'s class and config with ``d_sae`` latents holding ``state``."""
    import torch

    cfg = copy.deepcopy(sae.cfg)
    cfg.d_sae = d_sae
    cfg.reshape_activations = "none"  # hook_z activations reach the hook already flattened
    device = cfg.device
    cfg.device = "meta"  # as sae_lens's loaders do: no throwaway initialisation
    rebuilt = type(sae)(cfg)
    rebuilt.cfg.device = device
    rebuilt.load_state_dict(state, assign=True)
    rebuilt.to(device=torch.device(device), dtype=sae.W_dec.dtype)
    return rebuilt.requires_grad_(False).eval()


def _slice(name: str, tensor: Tensor, sae: SAE, index: Tensor) -> Tensor:
    """One parameter restricted to the latents ``index`` (a copy, never a view)."""
    d_sae = sae.cfg.d_sae
    if name == "W_enc":
        return tensor.index_select(1, index).clone()
    if name == "W_dec":
        return tensor.index_select(0, index).clone()
    if name == "b_dec":
        return tensor.detach().clone()
    if tensor.dim() == 1 and tensor.shape[0] == d_sae:
        return tensor.index_select(0, index).clone()
    raise SteeringError(
        f"cannot slice parameter {name} {tuple(tensor.shape)} of a {sae.cfg.architecture()} SAE"
    )
