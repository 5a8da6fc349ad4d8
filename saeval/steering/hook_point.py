"""The plan of one hook point: the edits of each positions mode, and the arithmetic applying them.

Each steer source (an SAE's rows, a vector row, a sparsify row) contributes a ``Part`` to its
hook point; ``hook_points`` merges the parts of each hook point into one ``HookPointPlan``. Each
positions mode's edits are one ``ModeEdits`` (the mode's summed add vector, clamp groups and
other interventions): the plan itself is mode ``all``'s, and holds those of the other modes
in ``masked``. With ``m_k`` the mask of mode ``k`` (``saeval.steering.masking``; mode ``all``:
``m = 1``) and ``a_k`` the summed add vector of the mode's rows:

    h_added = h + Σ_k m_k · a_k
    h_new   = h_added + Σ_k m_k · Σ_{groups of k} delta(h_added)

so every clamp group and intervention computes its delta from the same added-to activation, and
clamped latents hold their targets also next to add rows. A hook point whose rows all have mode
``all`` builds no mask; one without rows of mode ``all`` leaves a position no mask covers
``h`` bit for bit (padding too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.steer_rows import SteerRow, mode_of
from saeval.steering.finite import check_finite, check_scaled_add
from saeval.steering.interventions import ActivationDelta, tensor_bytes
from saeval.steering.masking import mode_mask

if TYPE_CHECKING:
    from torch import Tensor

    from saeval.spec.steer_rows import AnyRow
    from saeval.steering.clamp import ClampGroup


@dataclass
class Part:
    """One source's contribution to one hook point, before the hook point's parts are merged."""

    hook_name: str
    d_in: int | None  # the activation width it needs (None: a head slice of any width)
    rows: list[AnyRow]
    add_vector: Tensor | None = None
    clamp: ClampGroup | None = None
    interventions: list[ActivationDelta] = field(default_factory=list)


@dataclass
class ModeEdits:
    """The rows of one positions mode at one hook point: their summed add vector, clamp groups
    and other interventions."""

    mode: str
    rows: tuple[AnyRow, ...]
    add_vector: Tensor | None  # (d_in,) None if none or zero
    clamps: tuple[ClampGroup, ...] = ()
    interventions: tuple[ActivationDelta, ...] = ()
    _add_cache: dict[Any, Tensor] = field(default_factory=dict, repr=False)

    @property
    def groups(self) -> tuple[ActivationDelta, ...]:
        """The clamp groups and interventions, in the order their deltas are summed."""
        return (*self.clamps, *self.interventions)

    def adds(self, scale: float) -> bool:
        """Whether the add vector changes the activation at strength ``scale``."""
        return self.add_vector is not None and scale != 0

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


@dataclass(kw_only=True)
class HookPointPlan(ModeEdits):
    """Everything applied at one hook point: its own edits (mode ``all``) at every position, each
    other positions mode's edits where its mask holds (the module docstring). Its ``rows`` are
    every row of the hook point, masked ones too, for messages."""

    mode: str = "all"
    hook_name: str
    d_in: int | None  # None: only one-head edits, which check the width themselves
    masked: tuple[ModeEdits, ...] = ()  # one entry per other positions mode

    def edit(self, h: Tensor, scale: float = 1.0) -> Tensor:
        """Return the steered activation for ``h`` (batch, pos, d_in) at strength ``scale``."""
        if self.d_in is not None and h.shape[-1] != self.d_in:
            raise SteeringError(self._width_message(h.shape[-1]))
        masks = [mode_mask(self.hook_name, edits.mode, edits.rows, h) for edits in self.masked]
        modes: list[tuple[ModeEdits, Tensor | None]] = [(self, None)]
        modes += zip(self.masked, masks, strict=True)
        added = h
        for edits, mask in modes:
            if edits.adds(scale):
                added = added + _masked(mask, edits.scaled_add(h, scale, self.hook_name))
        changes = [
            _masked(mask, g.delta(added, scale)) for edits, mask in modes for g in edits.groups
        ]
        steered = added if not changes else added + _summed(changes).to(h.dtype)
        if not masks or self.adds(scale) or self.groups:
            return steered
        import torch

        anywhere = torch.stack(masks).any(dim=0)
        return torch.where(anywhere, steered, h)  # positions no mask covers keep h bit for bit

    def _width_message(self, width: int) -> str:
        """A d_in mismatch message naming every row of this hook point."""
        where = ", ".join(row.where() for row in self.rows)
        source = "SAE" if any(isinstance(row, SteerRow) for row in self.rows) else "vector"
        return (
            f"{where}: the {source} at {self.hook_name} has d_in={self.d_in}, but the model's "
            f"activation there has width {width}"
        )

    def nbytes(self) -> int:
        """Bytes of the tensors this hook point keeps (add vectors, encoders, decoder rows)."""
        return super().nbytes() + sum(edits.nbytes() for edits in self.masked)


def _masked(mask: Tensor | None, change: Tensor) -> Tensor:
    """``change`` where ``mask`` holds and 0 elsewhere (``mask`` None: everywhere)."""
    if mask is None:
        return change
    import torch

    return torch.where(mask, change, 0.0)


def _summed(tensors: Sequence[Tensor]) -> Tensor:
    """``tensors[0] + tensors[1] + ...``, in that order."""
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


def hook_points(parts: Sequence[Part]) -> dict[str, HookPointPlan]:
    """Merge the parts into one plan per hook point (summing add vectors)."""
    grouped: dict[str, list[Part]] = {}
    for part in parts:
        grouped.setdefault(part.hook_name, []).append(part)
    return {hook: _merge(hook, group) for hook, group in grouped.items()}


def _merge(hook_name: str, parts: list[Part]) -> HookPointPlan:
    """One hook point's parts, one ``ModeEdits`` per positions mode."""
    rows = tuple(row for part in parts for row in part.rows)
    widths = {part.d_in for part in parts if part.d_in is not None}
    if len(widths) > 1:
        where = ", ".join(row.where() for row in rows)
        raise SteeringError(
            f"{where}: SAEs at {hook_name} disagree on d_in ({', '.join(map(str, sorted(widths)))})"
        )
    by_mode: dict[str, list[Part]] = {}
    for part in parts:
        by_mode.setdefault(mode_of(part.rows[0]), []).append(part)
    modes = {mode: _mode_edits(hook_name, mode, group) for mode, group in by_mode.items()}
    everywhere = modes.pop("all", ModeEdits("all", (), None))
    return HookPointPlan(
        hook_name=hook_name,
        d_in=widths.pop() if widths else None,
        rows=rows,
        add_vector=everywhere.add_vector,
        clamps=everywhere.clamps,
        interventions=everywhere.interventions,
        masked=tuple(modes.values()),
    )


def _mode_edits(hook_name: str, mode: str, parts: list[Part]) -> ModeEdits:
    """The parts of one positions mode at one hook point, their add vectors summed."""
    rows = tuple(row for part in parts for row in part.rows)
    vectors = [part.add_vector for part in parts if part.add_vector is not None]
    add_vector = _summed([v.to(vectors[0].dtype) for v in vectors]) if vectors else None
    if add_vector is not None:
        check_finite(add_vector, f"summed add vector at {hook_name}", where=rows[0].where())
    if add_vector is not None and not bool(add_vector.any()):
        add_vector = None  # all coefficients zero: leave the activation untouched, bit for bit
    return ModeEdits(
        mode=mode,
        rows=rows,
        add_vector=add_vector,
        clamps=tuple(part.clamp for part in parts if part.clamp is not None),
        interventions=tuple(i for part in parts for i in part.interventions),
    )
