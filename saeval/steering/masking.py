"""Where the rows of a ``positions`` mode other than ``all`` act on one hook point's activation.

The layout of the pass is ``current_positions()``: a masked row steering a pass nobody described
is a ``SteeringError`` naming the row, never a guess. ``saeval.steering.hook_point`` applies the
masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from saeval.errors import SteeringError
from saeval.spec.positions import phrase
from saeval.steering.positions import Positions, current_positions

if TYPE_CHECKING:
    from torch import Tensor

    from saeval.spec.steer_rows import AnyRow


def mode_mask(hook_name: str, mode: str, rows: Sequence[AnyRow], h: Tensor) -> Tensor:
    """``(batch, pos, 1)`` bool: where ``rows`` of positions mode ``mode`` act on ``h`` at
    ``hook_name`` in the pass running now."""
    positions = current_positions()
    where = ", ".join(row.where() for row in rows)
    if positions is None:
        raise SteeringError(
            f"{where}: steers {phrase(mode)}, but the forward pass at {hook_name} does not "
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
    return _on(positions, mode, int(h.shape[1]), h)


def _on(positions: Positions, mode: str, length: int, h: Tensor) -> Tensor:
    """The mode's mask on ``h``'s device, with a trailing axis to broadcast over the width."""
    mask = positions.mask(mode, length)
    assert mask is not None  # masked edits never hold mode all
    return mask.to(h.device)[..., None]
