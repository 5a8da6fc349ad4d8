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

A row whose ``positions`` mode is not ``all`` acts only where its mode's mask is true: rows are
grouped by hook point and mode, each hook point's plan in ``saeval.steering.hook_point``.

Clamps keep a sliced encoder and their decoder rows (``saeval.steering.clamp``); projections their
direction; vector rows and sparsify coders are read in ``saeval.steering.directions``; everything
else of each SAE is freed once the plan is built (``add_through_sae`` keeps its whole SAE).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from saeval.errors import SteeringError
from saeval.spec.dialects import CLAMPS, Action
from saeval.spec.steer_file import AnyRow, SteerRow
from saeval.spec.steer_rows import mode_of
from saeval.steering.clamp import clamp_group, through_sae
from saeval.steering.directions import direction_parts
from saeval.steering.finite import check_sae_rows, finite_edit
from saeval.steering.hook_point import HookPointPlan, Part, hook_points
from saeval.steering.hooks import Edit
from saeval.steering.interventions import ActivationDelta, projection
from saeval.steering.sae_record import LoadedSae, SaeKey, loaded_sae

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import SteerFile


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
        info = loaded_sae(key, sae)
        infos.append(info)
        parts.extend(_parts_of(sae, info, sae_rows))
        del sae
    parts.extend(direction_parts(rows))
    return SteerPlan(points=hook_points(parts), model_id=_model_id(infos), saes=infos)


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
    interventions: list[ActivationDelta] = [
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
