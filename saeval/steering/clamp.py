"""Clamps and ablations: the SAE encoder sliced to the clamped latents, and their decoder rows.

``clamp``: ``h <- h + (c - f_i(h)) * W_dec[i]``, ``f_i`` the SAE encoder's latent ``i``;
``ablate`` clamps to 0; ``clamp_active`` only where the latent fires:
``h <- h + 1[f_i(h) > t] (c - f_i(h)) * W_dec[i]`` (positions where it does not are left bit for
bit). The encoder is the SAE's own class sliced to the clamped latents
(``W_enc[:, idx]``, ``b_enc[idx]``, ``threshold[idx]``, ``W_dec[idx]``, same ``b_dec`` and config),
so its ``encode`` keeps sae_lens's semantics for each architecture at a cost proportional to the
clamped latents. TopK-style SAEs select latents by competition among all of them, so their full
SAE is kept; those with ``rescale_acts_by_decoder_norm`` decode a latent along
``W_dec[i] / ||W_dec[i]||``, which is the row a clamp then uses, so clamping matches sae_lens's
``decode``. ``through_sae`` builds the fork's arithmetic (``saeval.steering.interventions``) when
an SAE also has ``add_through_sae`` rows: its clamps then act inside the whole SAE.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.dialects import Action
from saeval.steering.interventions import ThroughSae, tensor_bytes
from saeval.steering.sae_record import COMPETING, PER_TOKEN_NORMS, SLICEABLE, LoadedSae

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import SteerRow


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
    thresholds: Tensor | None = None  # (k,) clamp_active's t (-inf for clamp); None: no such rows
    _on_device: dict[Any, tuple[SAE, Tensor, Tensor | None, Tensor, Tensor | None]] = field(
        default_factory=dict, repr=False
    )

    def delta(self, h: Tensor, scale: float) -> Tensor:
        """``(scale * c - f(h)) @ W_dec`` in the encoder's dtype, on ``h``'s device; with
        clamp_active rows the latents below their threshold contribute exactly 0."""
        import torch

        encoder, targets, positions, W_dec, thresholds = self._moved(h.device)
        with torch.no_grad():
            acts = encoder.encode(h)
            if positions is not None:
                acts = acts.index_select(-1, positions)
            change = targets * scale - acts
            if thresholds is not None:
                change = torch.where(acts > thresholds, change, 0.0)
            return change @ W_dec

    def nbytes(self) -> int:
        """Bytes of the encoder, decoder rows, targets and thresholds."""
        total = sum(tensor_bytes(t) for t in self.encoder.state_dict().values())
        total += tensor_bytes(self.W_dec) + tensor_bytes(self.targets)
        return total + (0 if self.thresholds is None else tensor_bytes(self.thresholds))

    def _moved(
        self, device: torch.device
    ) -> tuple[SAE, Tensor, Tensor | None, Tensor, Tensor | None]:
        """The encoder and tensors on ``device`` (copied once per device)."""
        if device not in self._on_device:
            if device == self.W_dec.device:
                encoder = self.encoder
            else:
                encoder = copy.deepcopy(self.encoder).to(device)
            positions = None if self.positions is None else self.positions.to(device)
            thresholds = None if self.thresholds is None else self.thresholds.to(device)
            self._on_device[device] = (
                encoder,
                self.targets.to(device),
                positions,
                self.W_dec.to(device),
                thresholds,
            )
        return self._on_device[device]


def clamp_group(sae: SAE, info: LoadedSae, rows: list[SteerRow]) -> ClampGroup:
    """The encoder and decoder rows that clamping ``rows``' latents needs."""
    import torch

    _check_clampable(sae, info, rows)
    latents = tuple(row.latent_idx for row in rows)
    index, targets, thresholds = _clamp_tensors(sae, rows)
    if info.architecture in COMPETING:
        encoder, positions = full_sae(sae), index
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
        thresholds=thresholds if any(r.action is Action.CLAMP_ACTIVE for r in rows) else None,
    )


def _clamp_tensors(sae: SAE, rows: list[SteerRow]) -> tuple[Tensor, Tensor, Tensor]:
    """The clamp rows' latents, targets and thresholds (-inf: clamp at every position)."""
    import torch

    where = {"dtype": sae.W_dec.dtype, "device": sae.W_dec.device}
    index = torch.tensor([row.latent_idx for row in rows], dtype=torch.long, device=where["device"])
    targets = torch.tensor(
        [0.0 if row.action == "ablate" else row.coefficient for row in rows], **where
    )
    thresholds = torch.tensor([_threshold(row) for row in rows], **where)
    return index, targets, thresholds


def _threshold(row: SteerRow) -> float:
    """Where a clamp row acts: above its threshold (clamp_active, default 0), else everywhere."""
    if row.action is not Action.CLAMP_ACTIVE:
        return float("-inf")
    return 0.0 if row.threshold is None else row.threshold


def through_sae(
    sae: SAE, info: LoadedSae, adds: list[SteerRow], clamps: list[SteerRow]
) -> ThroughSae:
    """The fork's arithmetic for one SAE: ``adds`` at its input, ``clamps`` in its activations."""
    import torch

    _check_architecture(info, [*adds, *clamps])
    index, targets, thresholds = _clamp_tensors(sae, clamps)
    with torch.no_grad():
        vector = torch.zeros_like(sae.W_dec[0])
        for row in adds:
            vector += row.coefficient * sae.W_dec[row.latent_idx]
    return ThroughSae(
        rows=(*adds, *clamps),
        sae=full_sae(sae),
        vector=vector.detach().clone(),
        latents=index,
        targets=targets,
        thresholds=thresholds,
    )


def _check_clampable(sae: SAE, info: LoadedSae, rows: list[SteerRow]) -> None:
    """Clamps need an encoder whose latents map linearly back through W_dec."""
    where = ", ".join(row.where(row.column("action")) for row in rows)
    _check_architecture(info, rows)
    if sae.cfg.normalize_activations in PER_TOKEN_NORMS:
        raise SteeringError(
            f"{where}: SAE {info.release} {info.sae_id} normalises activations per token "
            f"({sae.cfg.normalize_activations}), so clamping through W_dec is not defined",
            hint="use action add for this SAE",
        )


def _check_architecture(info: LoadedSae, rows: list[SteerRow]) -> None:
    """Encoding rows need an architecture whose encode and decode saeval knows."""
    if info.architecture not in SLICEABLE + COMPETING:
        where = ", ".join(row.where(row.column("action")) for row in rows)
        actions = "/".join(dict.fromkeys(row.action.value for row in rows))
        raise SteeringError(
            f"{where}: {actions} is not supported for {info.architecture!r} SAEs "
            f"(supported: {', '.join(SLICEABLE + COMPETING)})",
            hint="use action add for this SAE",
        )


def full_sae(sae: SAE) -> SAE:
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
