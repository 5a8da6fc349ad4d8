"""Random controls: norm-matched random add vectors, random latents for clamp rows, one seed."""

from __future__ import annotations

import pytest
import torch
from sae_builders import build_sae, write_steer_csv

from saeval.spec.steer_file import read_steer_file
from saeval.steering.plan import SteerPlan, plan_from_saes
from saeval.steering.random_controls import random_control


@pytest.fixture(scope="module")
def steered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, SteerPlan, dict]:  # type: ignore[type-arg]
    """Add latents 3 and 5, clamp latent 7 to 2.5, ablate latent 9 (one tiny SAE)."""
    folder = tmp_path_factory.mktemp("controls")
    sae = build_sae("standard", seed=1)
    release = str(folder / "sae")
    path = write_steer_csv(
        folder / "steer.csv",
        [
            (3, 8.0, release, "", "add"),
            (5, -4.0, release, "", "add"),
            (7, 2.5, release, "", "clamp"),
            (9, "", release, "", "ablate"),
        ],
        extra=["action"],
    )
    rows = list(read_steer_file(path).rows)
    saes = {(release, ""): sae}
    return rows, plan_from_saes(rows, saes), saes


def test_each_add_vector_keeps_its_norm_and_gets_a_random_direction(steered) -> None:  # type: ignore[no-untyped-def]
    rows, plan, saes = steered
    control = random_control(rows, plan, saes.__getitem__, seed=11)
    for name, point in plan.points.items():
        original, drawn = point.add_vector, control.plan.points[name].add_vector
        assert original is not None and drawn is not None
        norm = float(torch.linalg.vector_norm(original))
        assert float(torch.linalg.vector_norm(drawn)) == pytest.approx(norm, rel=1e-6, abs=1e-6)
        assert control.norms[name] == pytest.approx(norm, rel=1e-6)
        cosine = torch.nn.functional.cosine_similarity(original, drawn, dim=0)
        assert abs(float(cosine)) < 0.6 and not torch.equal(original, drawn)


def test_clamp_rows_get_random_unused_latents_with_the_same_targets(steered) -> None:  # type: ignore[no-untyped-def]
    rows, plan, saes = steered
    control = random_control(rows, plan, saes.__getitem__, seed=11)
    moved = {s.latent_idx: s.control_latent for s in control.substitutions}
    assert set(moved) == {7, 9}
    assert not set(moved.values()) & {3, 5, 7, 9} and len(set(moved.values())) == 2
    assert all(0 <= latent < 128 for latent in moved.values())
    (group,) = control.plan.points["blocks.1.hook_resid_post"].clamps
    (original,) = plan.points["blocks.1.hook_resid_post"].clamps
    assert group.latents == (moved[7], moved[9]) and original.latents == (7, 9)
    assert torch.equal(group.targets, original.targets)  # 2.5 and 0, as before
    described = control.describe()
    assert described["seed"] == 11 and len(described["latents"]) == 2


def test_a_control_is_reproducible_from_its_seed(steered) -> None:  # type: ignore[no-untyped-def]
    rows, plan, saes = steered
    first, again = (random_control(rows, plan, saes.__getitem__, seed=5) for _ in range(2))
    other = random_control(rows, plan, saes.__getitem__, seed=6)
    hook = "blocks.1.hook_resid_post"
    assert torch.equal(first.plan.points[hook].add_vector, again.plan.points[hook].add_vector)  # type: ignore[arg-type]
    assert first.substitutions == again.substitutions
    assert not torch.equal(first.plan.points[hook].add_vector, other.plan.points[hook].add_vector)  # type: ignore[arg-type]
