"""Rows steering only some positions (a ``positions`` mode other than ``all``) at one hook point.

With ``m_k`` the mask of mode ``k`` (``Positions.mask``) and ``a_k`` the summed add vector of the
mode's rows (``all``: ``m = 1``):

    h_added = h + Σ_k m_k · a_k
    h_new   = h_added + Σ_k m_k · Σ_{groups of k} delta(h_added)

so every clamp group and intervention computes its delta from the same added-to activation, as at
a hook point without masks, and a position no mask covers keeps ``h`` bit for bit (padding too).
The layout of the pass is ``current_positions()``: a masked row steering a pass nobody described
is a ``SteeringError`` naming the row, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.positions import phrase
from saeval.steering.finite import check_scaled_add
from saeval.steering.interventions import Intervention, tensor_bytes
from saeval.steering.positions import Positions, current_positions

if TYPE_CHECKING:
    from torch import Tensor

    from saeval.spec.steer_rows import AnyRow
    from saeval.steering.clamp import ClampGroup


@dataclass
class ModeEdits:
    """The rows of one positions mode at one hook point: their summed add vector, clamp groups
    and other interventions."""

    mode: str
    rows: tuple[AnyRow, ...]
    add_vector: Tensor | None  # (d_in,) None if none or zero
    clamps: tuple[ClampGroup, ...] = ()
    interventions: tuple[Intervention, ...] = ()
    _add_cache: dict[Any, Tensor] = field(default_factory=dict, repr=False)

    @property
    def groups(self) -> tuple[Intervention, ...]:
        """The clamp groups and interventions, in the order their deltas are summed."""
        return (*self.clamps, *self.interventions)

    def scaled_add(self, h: Tensor, scale: float, hook_name: str) -> Tensor:
        """``scale * add_vector`` in ``h``'s device and dtype (computed once per key, checked
        in every guard)."""
        key = (h.device, h.dtype, scale)
        if key not in self._add_cache:
            assert self.add_vector is not None
            scaled = (self.add_vector * scale).to(device=h.device, dtype=h.dtype)
            self._add_cache[key] = scaled
        check_scaled_add(self._add_cache[key], scale, hook_name, self.rows)  # once per guard
        return self._add_cache[key]

    def nbytes(self) -> int:
        """Bytes of the add vector, encoders and decoder rows."""
        total = 0 if self.add_vector is None else tensor_bytes(self.add_vector)
        return total + sum(group.nbytes() for group in self.groups)


def masked_edit(
    hook_name: str,
    base: tuple[Tensor | None, tuple[Intervention, ...]],
    masked: tuple[ModeEdits, ...],
    h: Tensor,
    scale: float,
) -> Tensor:
    """``h`` steered by ``base`` (mode all: its scaled add vector and its groups) at every
    position and by each of ``masked`` where its mode's mask holds (the module docstring)."""
    import torch

    base_add, base_groups = base
    masks = [_mask(hook_name, edits, h) for edits in masked]
    added = h if base_add is None else h + base_add
    for edits, mask in zip(masked, masks, strict=True):
        if edits.add_vector is not None and scale != 0:
            added = added + torch.where(mask, edits.scaled_add(h, scale, hook_name), 0.0)
    changes = [group.delta(added, scale) for group in base_groups]
    for edits, mask in zip(masked, masks, strict=True):
        changes += [torch.where(mask, group.delta(added, scale), 0.0) for group in edits.groups]
    steered = added
    if changes:
        delta = changes[0]
        for change in changes[1:]:
            delta = delta + change
        steered = added + delta.to(h.dtype)
    if base_add is not None or base_groups:
        return steered
    anywhere = masks[0]
    for mask in masks[1:]:
        anywhere = anywhere | mask
    return torch.where(anywhere, steered, h)  # unmasked positions keep h bit for bit


def _mask(hook_name: str, edits: ModeEdits, h: Tensor) -> Tensor:
    """``(batch, pos, 1)`` bool: where ``edits``' mode acts on ``h`` in the pass running now."""
    positions = current_positions()
    where = ", ".join(row.where() for row in edits.rows)
    if positions is None:
        raise SteeringError(
            f"{where}: steers {phrase(edits.mode)}, but the forward pass at {hook_name} does not "
            "say which positions are prompt and which generated",
            hint="run it through saeval's lm-eval model (SteeredHFLM), or describe the pass "
            "with saeval.steering.positions.describing(...)",
        )
    batch = int(positions.start.shape[0])
    if h.dim() < 3 or h.shape[0] != batch:
        raise SteeringError(
            f"{where}: the activation at {hook_name} has shape {tuple(h.shape)}, but the pass "
            f"describes {batch} sequences (batch, pos, width expected)"
        )
    return _on(positions, edits.mode, int(h.shape[1]), h)


def _on(positions: Positions, mode: str, length: int, h: Tensor) -> Tensor:
    """The mode's mask on ``h``'s device, with a trailing axis to broadcast over the width."""
    mask = positions.mask(mode, length)
    assert mask is not None  # masked edits never hold mode all
    return mask.to(h.device)[..., None]
