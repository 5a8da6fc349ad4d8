"""No steered hook reads a value from the device: the finite checks stay on it until the batch
is read.

Every steered forward pass (add, clamp, clamp_active, project, position-limited rows, the
multi-configuration pass, generation, the KL pass) runs under a ``TorchDispatchMode`` that
records each ``aten._local_scalar_dense``, ``aten.is_nonzero`` and ``aten.item`` call (what
``bool(t)``, ``float(t)`` and ``t.item()`` dispatch, each a host-device synchronisation on a
GPU) made while a hook's edit runs. A control hook that calls ``bool()`` is caught, so the
recorder can fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from builders import save_tiny_pretrained
from sae_builders import build_sae
from torch.utils._python_dispatch import TorchDispatchMode

from saeval.errors import SteeringError
from saeval.spec.steer_file import Action, SteerRow
from saeval.steering import hooks
from saeval.steering.divergence import kl_per_position
from saeval.steering.finite import finite_edit, guarding
from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.plan import SteerPlan, plan_from_saes
from saeval.steering.positions import describing, prompt_positions

RELEASE = "tiny-release"
SYNCS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.item.default,
}
REQUESTS: list[tuple[Any, list[int], list[int]]] = [
    (("q1", " a"), [1, 40, 41, 42, 43], [50]),
    (("q1", " b"), [1, 40, 41, 42, 43], [51, 52]),
    (("q2", " a"), [1, 60, 61], [50]),
]


class SyncRecorder(TorchDispatchMode):
    """Records the synchronising ops dispatched while ``inside`` is above 0."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.seen: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.inside and func in SYNCS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncRecorder]:
    """A recorder counting the hooks' edits (every edit goes through ``hooks._apply``)."""
    recording = SyncRecorder()
    real = hooks._apply

    def apply(edit: Any, h: torch.Tensor) -> torch.Tensor:
        recording.inside += 1
        try:
            return real(edit, h)
        finally:
            recording.inside -= 1

    monkeypatch.setattr(hooks, "_apply", apply)
    with recording:
        yield recording


def _row(line: int, latent: int, coefficient: float, action: Action, **fields: Any) -> SteerRow:
    return SteerRow("steer.csv", line, latent, coefficient, RELEASE, "", action, **fields)


@pytest.fixture(scope="module")
def plan() -> SteerPlan:
    """Every kind of edit, at two hook points, some limited to prompt or generated tokens."""
    rows = [
        _row(2, 3, 8.0, Action.ADD, hook="blocks.0.hook_resid_post"),
        _row(3, 5, 2.0, Action.CLAMP),
        _row(4, 7, 1.0, Action.CLAMP_ACTIVE, threshold=0.1),
        _row(5, 9, 3.0, Action.PROJECT),
        _row(6, 11, 4.0, Action.ADD, positions="generated"),
        _row(7, 12, -1.0, Action.CLAMP, positions="prompt"),
    ]
    return plan_from_saes(rows, {(RELEASE, ""): build_sae("jumprelu", seed=2)})


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory, plan: SteerPlan) -> SteeredHFLM:
    folder = save_tiny_pretrained("llama", tmp_path_factory.mktemp("no-sync") / "llama")
    return SteeredHFLM(pretrained=str(folder), plan=plan, device="cpu", batch_size=2)


def test_the_recorder_sees_a_hook_that_reads_the_device(
    lm: SteeredHFLM, recorder: SyncRecorder
) -> None:
    def reads(h: torch.Tensor) -> torch.Tensor:
        assert bool(torch.isfinite(h).all())
        return h

    with torch.no_grad(), hooks.attach(lm.model, {"blocks.0.hook_resid_post": reads}):
        lm.model(torch.tensor([[1, 40, 41]]))
    assert recorder.seen


def test_no_hook_synchronises_in_any_steered_pass(
    lm: SteeredHFLM, plan: SteerPlan, recorder: SyncRecorder
) -> None:
    lm.set_scale(1.0)
    alone = lm._answers([1.0], REQUESTS, True, None)
    shared = lm._answers([None, 0.5, 2.0], REQUESTS, True, None)
    ids = torch.tensor([[1, 40, 41, 42], [1, 60, 61, 62]])
    with describing(prompt_positions(torch.ones_like(ids))):
        lm._model_call(ids)
    lm._model_generate(ids, max_length=8, stop=[], do_sample=False)
    kl = kl_per_position(lm.model, [[1, 40, 41, 42], [1, 60]], plan.edits(2.0), prompt_ends=[2, 1])
    assert recorder.seen == []
    # the passes computed something steered: the strengths differ from each other
    assert all(math.isfinite(value) for value, _ in alone[0] + shared[2])
    assert max(abs(a[0] - b[0]) for a, b in zip(shared[0], shared[2], strict=True)) > 1e-3
    assert sum(kl[0]) > 0


@contextmanager
def _nan_at(lm: SteeredHFLM, hook_name: str, rows: tuple[SteerRow, ...]) -> Iterator[None]:
    """A guarded edit at ``hook_name`` that makes NaN, attached while open."""
    edit = finite_edit(lambda h: h * math.nan, hook_name, rows)
    with hooks.attach(lm.model, {hook_name: edit}):
        yield


def test_a_nan_in_a_hook_is_reported_when_the_guard_reads_naming_hook_and_row(
    lm: SteeredHFLM, recorder: SyncRecorder
) -> None:
    rows = (_row(9, 3, 8.0, Action.ADD),)
    seen: list[torch.Tensor] = []
    with (
        pytest.raises(SteeringError) as caught,
        torch.no_grad(),
        guarding(),
        _nan_at(lm, "blocks.1.hook_resid_post", rows),
    ):
        seen.append(lm.model(torch.tensor([[1, 40, 41]])).logits)
    assert seen[0].isnan().all()  # the pass went on: the guard read at the end
    assert recorder.seen == []
    assert caught.value.message == (
        "non-finite activation at blocks.1.hook_resid_post after steering "
        "(steer.csv:9 latent_idx 3 (add 8))"
    )


def test_the_models_own_nan_is_named_before_the_steered_one(lm: SteeredHFLM) -> None:
    rows = (_row(9, 3, 8.0, Action.ADD),)
    nan_first = finite_edit(lambda h: h * math.nan, "blocks.0.hook_resid_post", rows)
    later = finite_edit(
        lambda h: h + 1, "blocks.1.hook_resid_post", (_row(10, 4, 1.0, Action.ADD),)
    )
    edits = {"blocks.0.hook_resid_post": nan_first, "blocks.1.hook_resid_post": later}
    with (
        pytest.raises(SteeringError) as caught,
        torch.no_grad(),
        guarding(),
        hooks.attach(lm.model, edits),
    ):
        lm.model(torch.tensor([[1, 40, 41]]))
    assert caught.value.message.startswith(
        "non-finite activation at blocks.0.hook_resid_post after steering (steer.csv:9"
    )


def test_a_body_that_fails_on_a_nan_fails_with_the_guards_error(lm: SteeredHFLM) -> None:
    rows = (_row(9, 3, 8.0, Action.ADD),)
    with (
        pytest.raises(SteeringError, match=r"non-finite activation at blocks\.1\.hook_resid_post"),
        torch.no_grad(),
        guarding(),
        _nan_at(lm, "blocks.1.hook_resid_post", rows),
    ):
        probs = lm.model(torch.tensor([[1, 40, 41]])).logits[0, -1].softmax(-1)
        torch.multinomial(probs, 1)  # sampling from NaN raises RuntimeError


def test_a_guard_reads_its_flags_once(lm: SteeredHFLM, plan: SteerPlan) -> None:
    """Two passes under one guard: one flag per check, accumulated, read in one transfer."""
    ids = torch.tensor([[1, 40, 41, 42]])
    with (
        torch.no_grad(),
        describing(prompt_positions(torch.ones_like(ids))),
        guarding() as guard,
        hooks.attach(lm.model, plan.edits(1.0)),
    ):
        lm.model(ids)
        held = dict(guard._flags)
        lm.model(ids)
        assert guard._flags.keys() == held.keys()
    # per hook point a before- and an after-steering flag; the scaled add vectors of blocks.0's
    # add row and of blocks.1's generated-only add row
    assert len(held) == 2 * len(plan.points) + 2
