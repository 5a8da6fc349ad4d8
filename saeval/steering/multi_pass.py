"""One multi-configuration forward pass of a loglikelihood batch (``SteeredHFLM``'s shared
pass): the batch tiled once per configuration, each copy steered by its own edits, the kept
logits checked for finiteness once after the pass, and, where KL is measured, each copy's KL to
the baseline copy and the dose its edits recorded (``saeval.steering.dose``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from saeval.steering import dose
from saeval.steering.finite import check_logits, guarding
from saeval.steering.loglikelihood_loop import Batch, keeping
from saeval.steering.pass_kl import Contexts, flat_positions, kl_of_copies
from saeval.steering.shared_prefix import Scale, Variants, expanded, planned, strength_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from saeval.steering.plan import SteerPlan


class PassModel(Protocol):
    """What the pass needs of ``SteeredHFLM``: its model, plan and variants, and HFLM's own
    forward call (no steering hooks of its own)."""

    model: nn.Module
    plan: SteerPlan
    variants: Variants

    def unsteered_call(self, ids: torch.Tensor) -> torch.Tensor:
        """HFLM's ``_model_call`` on ``ids``."""
        ...


def multi_pass(
    lm: PassModel,
    batch: Batch,
    group: Sequence[Any],
    contexts: Contexts | None,
    keys: Sequence[Scale],
) -> tuple[torch.Tensor, torch.Tensor | None, list[dose.Recorded]]:
    """The kept logits of one pass of ``batch`` for the configurations ``keys`` (their edits
    ``group``) and, for ``contexts``, each copy's KL to the baseline copy and its doses."""
    ids, keep = batch.tiled(len(group))
    rows = len(batch.rows)
    extra = None
    doses: list[dose.Recorded] = [[] for _ in group]
    if contexts is not None:
        extra = flat_positions(contexts, len(group), rows, int(ids.shape[1]))
        group = [
            edits if key is None else dose.recording(*planned(lm.plan, lm.variants, key), found)
            for edits, key, found in zip(group, keys, doses, strict=True)
        ]
    measured = None
    with guarding():
        with expanded(lm.model, group, rows), keeping(lm.model, keep, extra):
            logits = lm.unsteered_call(ids)
        if extra is not None:
            flat, kept = logits[0], keep.numel()
            measured = kl_of_copies(flat[kept:], len(group), list(keys).index(None))
            logits = flat[:kept].view(*keep.shape, -1)
        for copy, key in zip(logits.split(rows), keys, strict=True):
            check_logits(copy, strength_of(lm.variants, key))
    return logits, measured, doses
