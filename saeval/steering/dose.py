"""The dose of a steered configuration: what its edits did, relative to what they edited.

At a hook point with activation ``h`` and steered activation ``h'`` (the plan's edit of ``h``),
the dose at one position is ``||h' - h|| / ||h||`` (float32, over the width). It measures the
edit itself, so it is defined for every action (add, clamp, clamp_active, project, vectors): a
clamp of an inactive latent or a masked position doses 0 or not at all. Positions a hook point's
rows do not steer (their ``positions`` modes, ``saeval.steering.masking``) are NaN: only steered
positions count. Ratios are computed on the device during the pass and read once after it.

``recording(plan, scale, doses)`` gives the plan's edits at ``scale`` that also append, per call,
``(hook_name, ratios (batch, pos))`` to ``doses``; ``per_document`` and ``per_context`` cut them
to each document's real positions. ``probe`` measures, on an unsteered pass, the dose the
plan's edits at scale 1 would make (``saeval run --dose``). torch is imported inside the
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from saeval.steering.positions import current_positions

if TYPE_CHECKING:
    from torch import Tensor, nn

    from saeval.steering.hooks import Edit
    from saeval.steering.pass_kl import ContextKey, Contexts
    from saeval.steering.plan import HookPointPlan, SteerPlan

Recorded = list[tuple[str, "Tensor"]]  # (hook_name, ratios (batch, pos)) in call order
PerHook = dict[str, list[float]]  # hook_name -> the ratio at every position of one document


def recording(plan: SteerPlan, scale: float, doses: Recorded) -> dict[str, Edit]:
    """``plan.edits(scale)``, each also appending its per-position dose to ``doses``."""
    edits = plan.edits(scale)
    return {name: _recorded(plan.points[name], edit, doses) for name, edit in edits.items()}


def _recorded(point: HookPointPlan, edit: Edit, doses: Recorded) -> Edit:
    def recorded(h: Tensor) -> Tensor:
        steered = edit(h)
        doses.append((point.hook_name, ratios(h, steered, _steered(point, h))))
        return steered

    return recorded


def ratios(h: Tensor, steered: Tensor, where: Tensor | None) -> Tensor:
    """``(batch, pos)`` float32 ``||steered - h|| / ||h||``, NaN outside ``where`` (None: all)."""
    import torch

    x = h.detach().float()
    change = (steered.detach().float() - x).norm(dim=-1)
    found = change / x.norm(dim=-1)
    return found if where is None else torch.where(where, found, torch.nan)


def _steered(point: HookPointPlan, h: Tensor) -> Tensor | None:
    """``(batch, pos)`` bool: the positions some row of ``point`` steers (None: every one)."""
    if point.add_vector is not None or point.clamps or point.interventions or not point.masked:
        return None
    positions = current_positions()
    if positions is None:  # the masked edit itself raised already; nothing to record
        return None
    found = None
    for edits in point.masked:
        mask = positions.mask(edits.mode, int(h.shape[1]))
        assert mask is not None  # masked edits never hold mode all
        found = mask if found is None else found | mask
    return None if found is None else found.to(h.device)


def per_document(
    doses: Recorded, documents: Sequence[Sequence[int]], batch_size: int
) -> list[PerHook]:
    """Each document's ratios per hook point, from passes over ``documents`` in batches of
    ``batch_size`` (one call per hook point and batch, in order, as ``kl_per_position`` runs)."""
    by_hook: dict[str, list[Tensor]] = {}
    for hook_name, found in doses:
        by_hook.setdefault(hook_name, []).append(found)
    result: list[PerHook] = [{} for _ in documents]
    for hook_name, batches in by_hook.items():
        rows = [row for batch in batches for row in batch.tolist()]
        for doc, (values, tokens) in enumerate(zip(rows, documents, strict=True)):
            result[doc][hook_name] = values[: len(tokens)]
    return result


def per_context(doses: Recorded, contexts: Contexts) -> dict[ContextKey, PerHook]:
    """Each measured context's ratios per hook point, from one copy's calls of a shared pass."""
    found: dict[ContextKey, PerHook] = {key: {} for key in contexts.keys}
    for hook_name, values in doses:
        flat = values.reshape(-1).index_select(0, contexts.index).tolist()
        start = 0
        for key, length in zip(contexts.keys, contexts.lengths, strict=True):
            found[key][hook_name] = flat[start : start + length]
            start += length
    return found


def probe(
    model: nn.Module,
    plan: SteerPlan,
    documents: Sequence[Sequence[int]],
    recorded: Recorded,
    *,
    batch_size: int,
    pad_id: int = 0,
    prompt_ends: Sequence[int] | None = None,
) -> None:
    """Run ``documents`` through the unsteered model, appending to ``recorded`` the dose the
    plan's edits at scale 1 would make of each hook point's unsteered activation; the edits are
    computed and dropped, so every hook point sees ``h`` unsteered. Document ``i``'s first
    ``prompt_ends[i]`` tokens are conditioning text, the rest generated (None: all conditioning
    text). ``per_document(recorded, documents, batch_size)`` cuts the result."""
    import torch

    from saeval.steering.hooks import attach
    from saeval.steering.positions import Positions, describing

    device = next(model.parameters()).device
    for start in range(0, len(documents), batch_size):
        batch = documents[start : start + batch_size]
        width = max(len(doc) for doc in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, doc in enumerate(batch):
            ids[row, : len(doc)] = torch.tensor(list(doc), dtype=torch.long)
            mask[row, : len(doc)] = 1
        lengths = mask.sum(1).to(device)
        ends = lengths
        if prompt_ends is not None:
            given = list(prompt_ends[start : start + len(batch)])
            ends = torch.tensor(given, dtype=torch.long, device=device).minimum(lengths)
        layout = Positions(start=torch.zeros_like(lengths), end=lengths, prompt_end=ends)
        with torch.no_grad(), attach(model, _probes(plan, recorded)), describing(layout):
            model(input_ids=ids.to(device), attention_mask=mask.to(device))


def _probes(plan: SteerPlan, recorded: Recorded) -> dict[str, Edit]:
    """Edits recording the dose of scale 1 at each hook point and returning ``h`` unchanged."""
    edits = recording(plan, 1.0, recorded)

    def unchanged(edit: Edit) -> Edit:
        def keep(h: Tensor) -> Tensor:
            edit(h)
            return h

        return keep

    return {name: unchanged(edit) for name, edit in edits.items()}
