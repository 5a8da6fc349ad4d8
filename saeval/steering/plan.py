"""The steer plan: what each hook point does to its activation, with only the SAE parts it needs.

At a hook point with activations ``h`` (batch, pos, d_in):

- ``add``:    ``h <- h + c * W_dec[i]``; all add rows of a hook point (and vector rows'
  ``c * v``) are summed into one vector.
- ``clamp``:  ``h <- h + (c - f_i(h)) * W_dec[i]``, ``f_i`` the SAE encoder's latent ``i``.
- ``ablate``: clamp to 0.
- ``clamp_active``: clamp only where ``f_i(h) > t``; elsewhere ``h`` is left bit for bit.
- ``add_through_sae``: ``h <- h + dec(enc(h + c * W_dec[i])) - dec(enc(h))`` (the fork's add);
  the same SAE's clamp rows at that hook point then act inside ``enc(h + ...)`` as in the fork.
- ``project``: ``h <- h + (c - (h - b)·u) u``, ``u`` the unit decoder row (or vector), ``b`` the
  SAE's ``b_dec`` (a ``.pt`` entry's bias, else 0).

``scale`` multiplies every coefficient (add vectors, clamp targets, projection values; not
thresholds). The add vector is applied first, then the clamps and the other interventions
(``saeval.steering.interventions``), all computed from the same (added-to) activation and summed,
so clamped latents hold their targets also next to add rows.

A row whose ``positions`` mode is not ``all`` acts only where its mode's mask is true
(``saeval.steering.masking``): rows are grouped by hook point and mode, and the plan's own
fields hold mode ``all``, today's arithmetic without a mask.

Clamps keep a sliced encoder and their decoder rows (``saeval.steering.clamp``); projections their
direction; vector rows and sparsify coders are read in ``saeval.steering.directions``; everything
else of each SAE is freed once the plan is built (``add_through_sae`` keeps its whole SAE).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.dialects import CLAMPS, Action
from saeval.spec.steer_file import AnyRow, SteerRow
from saeval.spec.steer_rows import mode_of
from saeval.steering.clamp import ClampGroup, clamp_group, through_sae
from saeval.steering.directions import direction_parts
from saeval.steering.finite import check_finite, check_sae_rows, check_scaled_add, finite_edit
from saeval.steering.hooks import Edit
from saeval.steering.interventions import Intervention, Part, projection, tensor_bytes
from saeval.steering.masking import ModeEdits, masked_edit

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import SteerFile

SaeKey = tuple[str, str]  # (sae_release, sae_id)


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


@dataclass
class HookPointPlan:
    """Everything applied at one hook point: one summed add vector, the clamp groups and the
    other interventions (projections, one-head adds, adds through an SAE)."""

    hook_name: str
    d_in: int | None  # None: only one-head edits, which check the width themselves
    rows: tuple[AnyRow, ...]
    add_vector: Tensor | None  # (d_in,) sum of c * W_dec[i] over add rows; None if none or zero
    clamps: tuple[ClampGroup, ...] = ()
    interventions: tuple[Intervention, ...] = ()
    masked: tuple[ModeEdits, ...] = ()  # rows of the other positions modes, one entry per mode
    _add_cache: dict[Any, Tensor] = field(default_factory=dict, repr=False)

    def edit(self, h: Tensor, scale: float = 1.0) -> Tensor:
        """Return the steered activation for ``h`` (batch, pos, d_in) at strength ``scale``."""
        if self.d_in is not None and h.shape[-1] != self.d_in:
            raise SteeringError(self._width_message(h.shape[-1]))
        if self.masked:
            add = self._scaled_add(h, scale) if self.add_vector is not None and scale else None
            base = (add, (*self.clamps, *self.interventions))
            return masked_edit(self.hook_name, base, self.masked, h, scale)
        if self.add_vector is not None and scale != 0:
            h = h + self._scaled_add(h, scale)
        groups: tuple[Intervention, ...] = (*self.clamps, *self.interventions)
        if groups:
            deltas = [group.delta(h, scale) for group in groups]
            delta = deltas[0]
            for extra in deltas[1:]:
                delta = delta + extra
            h = h + delta.to(h.dtype)
        return h

    def _scaled_add(self, h: Tensor, scale: float) -> Tensor:
        """``scale * add_vector`` in ``h``'s device and dtype (computed once per key, checked
        in every guard)."""
        key = (h.device, h.dtype, scale)
        if key not in self._add_cache:
            assert self.add_vector is not None
            scaled = (self.add_vector * scale).to(device=h.device, dtype=h.dtype)
            self._add_cache[key] = scaled
        check_scaled_add(self._add_cache[key], scale, self.hook_name, self.rows)  # once per guard
        return self._add_cache[key]

    def _width_message(self, width: int) -> str:
        """A d_in mismatch message naming every row of this hook point."""
        where = ", ".join(row.where() for row in self.rows)
        source = "SAE" if any(isinstance(row, SteerRow) for row in self.rows) else "vector"
        return (
            f"{where}: the {source} at {self.hook_name} has d_in={self.d_in}, but the model's "
            f"activation there has width {width}"
        )

    def nbytes(self) -> int:
        """Bytes of the tensors this hook point keeps (add vector, encoders, decoder rows)."""
        total = 0 if self.add_vector is None else tensor_bytes(self.add_vector)
        groups: tuple[Intervention, ...] = (*self.clamps, *self.interventions)
        total += sum(edits.nbytes() for edits in self.masked)
        return total + sum(group.nbytes() for group in groups)


@dataclass
class SteerPlan:
    """Rows grouped by hook point, with the SAE info the plan was built from."""

    points: dict[str, HookPointPlan]
    model_id: str | None  # Hugging Face id of the base model the SAEs record, if any
    saes: list[LoadedSae]

    def edits(self, scale: float = 1.0) -> dict[str, Edit]:
        """One edit function per hook name, for ``hooks.attach``, at strength ``scale``."""
        return {name: _bind(point, scale) for name, point in self.points.items()}

    def nbytes(self) -> int:
        """Bytes of tensors the plan keeps (before per-device copies)."""
        return sum(point.nbytes() for point in self.points.values())

    def needs_positions(self) -> bool:
        """Whether a row steers only some positions (mode not ``all``): its passes must be
        described (``saeval.steering.positions.describing``)."""
        return any(point.masked for point in self.points.values())


def _bind(point: HookPointPlan, scale: float) -> Edit:
    """``point.edit`` with ``scale`` fixed."""

    def edit(h: Tensor) -> Tensor:
        return point.edit(h, scale)

    return finite_edit(edit, point.hook_name, point.rows)


def build_plan(steer: SteerFile, *, device: str = "cpu", dtype: str = "float32") -> SteerPlan:
    """Load each distinct SAE of ``steer`` once (via sae_lens) and keep only what it needs."""
    from saeval.steering.sae_loading import row_loader

    return plan_rows(steer.rows, row_loader(steer.rows, device=device, dtype=dtype))


def plan_from_saes(rows: Iterable[AnyRow], saes: Mapping[SaeKey, SAE]) -> SteerPlan:
    """Build a plan from already-loaded SAEs keyed by (sae_release, sae_id)."""
    return plan_rows(rows, saes.__getitem__)


def plan_rows(rows: Iterable[AnyRow], load: Callable[[SaeKey], SAE]) -> SteerPlan:
    """Build a plan, calling ``load`` once per distinct sae_lens SAE and dropping each SAE after
    use; vector rows and sparsify coders are read by ``directions.direction_parts``."""
    rows = list(rows)
    by_sae: dict[SaeKey, list[SteerRow]] = {}
    for row in rows:
        if isinstance(row, SteerRow) and row.loader == "sae_lens":
            by_sae.setdefault(row.sae_key, []).append(row)
    parts: list[Part] = []
    infos: list[LoadedSae] = []
    for key, sae_rows in by_sae.items():
        sae = load(key)
        info = _info(key, sae)
        infos.append(info)
        parts.extend(_parts_of(sae, info, sae_rows))
        del sae
    parts.extend(direction_parts(rows))
    return SteerPlan(points=_points(parts), model_id=_model_id(infos), saes=infos)


def _info(key: SaeKey, sae: SAE) -> LoadedSae:
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


def _model_id(infos: Sequence[LoadedSae]) -> str | None:
    """The Hugging Face id of the base model the SAEs name (the first that names one)."""
    from saeval.spec.catalog import hf_model_id

    name = next((info.model_name for info in infos if info.model_name), None)
    return None if name is None else hf_model_id(name)


def _parts_of(sae: SAE, info: LoadedSae, rows: list[SteerRow]) -> list[Part]:
    """Split one SAE's rows by hook point and positions mode and extract their add vectors and
    clamp groups."""
    by_hook: dict[tuple[str, str], list[SteerRow]] = {}
    for row in rows:
        _check_latent(row, info)
        by_hook.setdefault((_hook_of(row, info), mode_of(row)), []).append(row)
    check_sae_rows(sae, info, rows)
    return [_sae_part(sae, info, hook, hook_rows) for (hook, _), hook_rows in by_hook.items()]


def _sae_part(sae: SAE, info: LoadedSae, hook_name: str, rows: list[SteerRow]) -> Part:
    """One SAE's rows at one hook point: add vector, clamp group, projections, through-SAE."""
    adds = [row for row in rows if row.action is Action.ADD]
    through = [row for row in rows if row.action is Action.ADD_THROUGH_SAE]
    clamps = [row for row in rows if row.action in CLAMPS]
    interventions: list[Intervention] = [
        projection(row, sae.W_dec[row.latent_idx], sae.b_dec, None)
        for row in rows
        if row.action is Action.PROJECT
    ]
    clamp = None
    if through:  # the fork's arithmetic: the SAE's clamps act inside it too
        interventions.append(through_sae(sae, info, through, clamps))
    elif clamps:
        clamp = clamp_group(sae, info, clamps)
    add_vector = _add_vector(sae, adds) if adds else None
    return Part(hook_name, info.d_in, list(rows), add_vector, clamp, interventions)


def _hook_of(row: SteerRow, info: LoadedSae) -> str:
    """The row's hook override, else the SAE's own hook name."""
    hook = row.hook or info.hook_name
    if not hook:
        raise SteeringError(
            f"{row.where()}: SAE {info.release} {info.sae_id} records no hook_name",
            hint="give the hook point in a 'hook' column",
        )
    return hook


def _check_latent(row: SteerRow, info: LoadedSae) -> None:
    if row.latent_idx >= info.d_sae:
        where = row.where(row.column("latent_idx"))
        raise SteeringError(
            f"{where}: latent {row.latent_idx} is out of range for SAE "
            f"{info.release} {info.sae_id} (d_sae={info.d_sae})"
        )


def _add_vector(sae: SAE, rows: list[SteerRow]) -> Tensor:
    """Sum of ``c * W_dec[i]`` over ``rows``, in the SAE's dtype."""
    import torch

    with torch.no_grad():
        vector = torch.zeros_like(sae.W_dec[0])
        for row in rows:
            vector += row.coefficient * sae.W_dec[row.latent_idx]
    return vector.detach().clone()


def _points(parts: list[Part]) -> dict[str, HookPointPlan]:
    """Merge SAE parts into one plan per hook point (summing add vectors)."""
    grouped: dict[str, list[Part]] = {}
    for part in parts:
        grouped.setdefault(part.hook_name, []).append(part)
    return {hook: _merge(hook, group) for hook, group in grouped.items()}


def _merge(hook_name: str, parts: list[Part]) -> HookPointPlan:
    """One hook point's parts: mode ``all`` in the plan's own fields, each other mode's parts
    in one ``ModeEdits``."""
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
    base = modes.pop("all", ModeEdits("all", (), None))
    return HookPointPlan(
        hook_name=hook_name,
        d_in=widths.pop() if widths else None,
        rows=rows,
        add_vector=base.add_vector,
        clamps=base.clamps,
        interventions=base.interventions,
        masked=tuple(modes.values()),
    )


def _mode_edits(hook_name: str, mode: str, parts: list[Part]) -> ModeEdits:
    """The parts of one positions mode at one hook point, their add vectors summed."""
    rows = tuple(row for part in parts for row in part.rows)
    vectors = [part.add_vector for part in parts if part.add_vector is not None]
    add_vector = _sum(vectors) if vectors else None
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


def _sum(vectors: list[Tensor]) -> Tensor:
    total = vectors[0]
    for vector in vectors[1:]:
        total = total + vector.to(total.dtype)
    return total
