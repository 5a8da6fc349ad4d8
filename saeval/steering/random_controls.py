"""Random controls of an intervention: the same hook points and strengths, another direction.

A control of a steer set, drawn from one seed (numpy's PCG64, so the same seed gives the same
control on every machine):

- each hook point's summed add vector ``v`` (one per positions mode) becomes
  ``||v|| g / ||g||``, ``g`` a standard Gaussian vector of the same width (hook points in name
  order): a random direction of the same norm, so at every strength the control moves the
  activation exactly as far;
- each SAE row that sets or moves a latent (clamp, ablate, clamp_active, add_through_sae,
  project) gets a random latent of the same SAE instead (uniform over the latents the
  intervention does not steer, none picked twice), with the same coefficient, threshold and
  hook (rows in file order).

Rows a control cannot stand in for (a projection onto a vector file's direction, a sparsify
coder's latent) are a SteeringError naming the row. ``describe`` says what was drawn, for the
run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.dialects import Action
from saeval.spec.steer_rows import AnyRow, SteerRow
from saeval.steering.plan import SaeKey, SteerPlan, plan_rows

if TYPE_CHECKING:
    import numpy as np
    from sae_lens import SAE

    from saeval.steering.hook_point import HookPointPlan, ModeEdits


@dataclass(frozen=True)
class Substitution:
    """One SAE row of the intervention and the latent its control steers instead."""

    where: str
    latent_idx: int
    control_latent: int


@dataclass(frozen=True)
class RandomControl:
    """A control's plan and what its seed drew."""

    seed: int
    plan: SteerPlan
    substitutions: tuple[Substitution, ...]
    norms: dict[str, float]  # hook name -> norm of the (intervention's and control's) add vector

    def describe(self) -> dict[str, Any]:
        """JSON-able record: the seed, each substituted latent and each add vector's norm."""
        return {
            "seed": self.seed,
            "latents": [vars(s) for s in self.substitutions],
            "add_vector_norms": self.norms,
        }


def random_control(
    rows: Iterable[AnyRow], plan: SteerPlan, load: Callable[[SaeKey], SAE], seed: int
) -> RandomControl:
    """The control of the intervention whose rows built ``plan``, drawn from ``seed``."""
    import numpy as np

    rows = list(rows)
    generator = np.random.default_rng(seed)
    control_rows, substitutions = _substituted(rows, plan, generator)
    control = plan_rows(control_rows, load)
    norms = _randomise_add_vectors(plan, control, generator)
    return RandomControl(seed, control, tuple(substitutions), norms)


def _substituted(
    rows: list[AnyRow], plan: SteerPlan, generator: np.random.Generator
) -> tuple[list[AnyRow], list[Substitution]]:
    """The rows with every latent-setting SAE row moved to a random unused latent."""
    d_sae = {(sae.release, sae.sae_id): sae.d_sae for sae in plan.saes}
    taken: dict[SaeKey, set[int]] = {}
    for row in rows:
        if isinstance(row, SteerRow):
            taken.setdefault(row.sae_key, set()).add(row.latent_idx)
    result: list[AnyRow] = []
    substitutions = []
    for row in rows:
        if row.action is Action.ADD:
            result.append(row)
            continue
        if not isinstance(row, SteerRow) or row.sae_key not in d_sae:
            raise SteeringError(
                f"{row.where()}: a random control has no stand-in for a {row.action.value} row "
                "of a vector file or a sparsify coder (only SAE latents and add vectors)",
                hint="drop controls: from the experiment, or steer sae_lens SAE latents",
            )
        latent = _free_latent(d_sae[row.sae_key], taken[row.sae_key], generator, row)
        taken[row.sae_key].add(latent)
        substitutions.append(Substitution(row.where(), row.latent_idx, latent))
        result.append(replace(row, latent_idx=latent))
    return result, substitutions


def _free_latent(d_sae: int, taken: set[int], generator: np.random.Generator, row: SteerRow) -> int:
    """A uniformly drawn latent of ``range(d_sae)`` outside ``taken``."""
    if len(taken) >= d_sae:
        raise SteeringError(
            f"{row.where()}: the intervention steers every latent of its SAE "
            f"(d_sae={d_sae}); a random control needs one it does not"
        )
    while True:
        latent = int(generator.integers(d_sae))
        if latent not in taken:
            return latent


def _randomise_add_vectors(
    intervention: SteerPlan, control: SteerPlan, generator: np.random.Generator
) -> dict[str, float]:
    """Give each of the control's add vectors a random direction at the intervention's norm."""
    import torch

    norms = {}
    for name in sorted(control.points):
        point, source = control.points[name], intervention.points[name]
        pairs: list[tuple[str | None, ModeEdits, ModeEdits]]
        pairs = [(None, point, source), *_by_mode(point, source)]
        for mode, drawn, kept in pairs:
            original = kept.add_vector
            if drawn.add_vector is None or original is None:
                continue
            norm = float(torch.linalg.vector_norm(original.double()))
            gaussian = torch.from_numpy(generator.standard_normal(original.numel()))
            direction = gaussian / torch.linalg.vector_norm(gaussian)
            drawn.add_vector = (direction * norm).to(original.dtype).reshape(original.shape)
            norms[name if mode is None else f"{name} ({mode} positions)"] = norm
    return norms


def _by_mode(point: HookPointPlan, source: HookPointPlan) -> list[tuple[str, ModeEdits, ModeEdits]]:
    """The control's and the intervention's rows of each positions mode other than ``all``."""
    originals = {edits.mode: edits for edits in source.masked}
    return [(edits.mode, edits, originals[edits.mode]) for edits in point.masked]
