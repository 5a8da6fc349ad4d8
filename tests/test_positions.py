"""Position-limited steering at the hook point: each mode moves exactly its positions.

On tiny GPT-2 and Llama models, a right-padded batch of two sequences of different lengths is
described as loglikelihood requests (context, then continuation) and as rolling windows; the
activation at the steered hook point must differ from the unsteered pass exactly where the
mode says (the expected positions are written out here, not taken from ``Positions.mask``) and
equal the ``all`` result there, for every action.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_tiny_model
from sae_builders import HOOK_NAME, dual_sae
from sae_lens import SAE
from torch import Tensor, nn

from saeval.errors import SteeringError
from saeval.spec.steer_file import Action, AnyRow, SteerRow, VectorRow
from saeval.steering.hooks import attach, locate
from saeval.steering.plan import SteerPlan, plan_from_saes
from saeval.steering.positions import Positions, describing

RELEASE = "tiny-release"
LENGTHS = (7, 4)  # real tokens of each row; the second is right-padded to 7
CONTEXTS = (4, 2)  # loglikelihood: the context's length in each row
PAD = 3


def expected(mode: str, request: str) -> Tensor:
    """Where ``mode`` steers the batch, written out by hand."""
    rows = []
    for length, context in zip(LENGTHS, CONTEXTS, strict=True):
        prompt_end = context if request == "loglikelihood" else 0
        row = []
        for index in range(max(LENGTHS)):
            real = index < length
            chosen = {
                "all": True,
                "all_but_bos": real and index > 0,
                "prompt": real and index < prompt_end,
                "generated": real and index >= prompt_end,
            }[mode]
            row.append(chosen)
        rows.append(row)
    return torch.tensor(rows)


def layout(request: str) -> Positions:
    """The batch as saeval's loglikelihood loop describes it."""
    contexts = CONTEXTS if request == "loglikelihood" else (0, 0)
    return Positions(
        start=torch.zeros(2, dtype=torch.long),
        end=torch.tensor(LENGTHS),
        prompt_end=torch.tensor(contexts),
    )


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request: pytest.FixtureRequest) -> nn.Module:
    return build_tiny_model(request.param)


@pytest.fixture(scope="module")
def sae() -> SAE:
    return dual_sae()  # every latent active: clamps and clamp_active move every position


@pytest.fixture(scope="module")
def input_ids() -> Tensor:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 300, (2, max(LENGTHS)), generator=generator)
    ids[1, LENGTHS[1] :] = PAD
    return ids


def sae_row(action: str, coefficient: float, mode: str | None, line: int = 2) -> SteerRow:
    return SteerRow(
        file="steer.csv",
        line=line,
        latent_idx=3,
        coefficient=coefficient,
        sae_release=RELEASE,
        sae_id="",
        action=Action(action),
        positions=mode,
    )


COEFFICIENTS = {
    "add": 8.0,
    "clamp": 1.0,
    "ablate": 0.0,
    "clamp_active": 1.0,
    "add_through_sae": 4.0,
    "project": 1.0,
}


def vector_file(tmp_path: Path) -> Path:
    path = tmp_path / "v.npy"
    np.save(path, np.linspace(-1.0, 1.0, 64, dtype=np.float32))
    return path


def rows_for(action: str, mode: str | None, tmp_path: Path) -> list[AnyRow]:
    if action == "vector":
        return [
            VectorRow("steer.csv", 2, str(vector_file(tmp_path)), HOOK_NAME, 3.0, positions=mode)
        ]
    return [sae_row(action, COEFFICIENTS[action], mode)]


def hook_output(
    model: nn.Module, input_ids: Tensor, plan: SteerPlan | None, positions: Positions | None
) -> Tensor:
    """The activation at HOOK_NAME after the plan's edit (or unsteered)."""
    seen: list[Tensor] = []
    edits = {} if plan is None else plan.edits(1.0)
    with torch.no_grad(), attach(model, edits):
        module = locate(model, HOOK_NAME).module
        handle = module.register_forward_hook(lambda m, a, out: seen.append(first(out).detach()))
        try:
            if positions is None:
                model(input_ids)
            else:
                with describing(positions):
                    model(input_ids)
        finally:
            handle.remove()
    (activation,) = seen
    return activation


def first(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    """A module's output tensor (a decoder layer may return a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def moved(steered: Tensor, base: Tensor) -> Tensor:
    """(batch, pos) bool: where any feature differs by even one bit."""
    return (steered != base).any(dim=-1)


@pytest.mark.parametrize("request_type", ["loglikelihood", "rolling"])
@pytest.mark.parametrize("mode", ["all", "all_but_bos", "prompt", "generated"])
def test_each_mode_moves_exactly_its_positions(
    model: nn.Module, sae: SAE, input_ids: Tensor, mode: str, request_type: str
) -> None:
    plan = plan_from_saes([sae_row("add", 8.0, mode)], {(RELEASE, ""): sae})
    base = hook_output(model, input_ids, None, None)
    steered = hook_output(model, input_ids, plan, layout(request_type))
    assert moved(steered, base).tolist() == expected(mode, request_type).tolist()


ACTIONS = [*COEFFICIENTS, "vector"]


@pytest.mark.parametrize("mode", ["generated", "prompt", "all_but_bos"])
@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_acts_only_at_its_positions_as_it_would_everywhere(
    model: nn.Module, sae: SAE, input_ids: Tensor, action: str, mode: str, tmp_path: Path
) -> None:
    positions = layout("loglikelihood")
    saes = {(RELEASE, ""): sae}
    base = hook_output(model, input_ids, None, None)
    everywhere = hook_output(
        model, input_ids, plan_from_saes(rows_for(action, "all", tmp_path), saes), positions
    )
    steered = hook_output(
        model, input_ids, plan_from_saes(rows_for(action, mode, tmp_path), saes), positions
    )
    mask = expected(mode, "loglikelihood")
    assert moved(steered, base).tolist() == mask.tolist()
    assert torch.equal(steered[mask], everywhere[mask])
    assert torch.equal(steered[~mask], base[~mask])  # padding included, bit for bit


def test_modes_at_one_hook_point_sum_their_adds_and_clamp_the_sum(
    model: nn.Module, sae: SAE, input_ids: Tensor
) -> None:
    """An add at generated positions and a clamp at every position: the clamp holds its target
    also where the add acts, and the add moves only the continuation."""
    rows = [sae_row("add", 8.0, "generated", line=2), sae_row("clamp", 1.0, None, line=3)]
    rows[1] = SteerRow(**{**rows[1].__dict__, "latent_idx": 5})
    plan = plan_from_saes(rows, {(RELEASE, ""): sae})
    steered = hook_output(model, input_ids, plan, layout("loglikelihood"))
    clamped = plan_from_saes(rows[1:], {(RELEASE, ""): sae})
    only_clamp = hook_output(model, input_ids, clamped, None)
    mask = expected("generated", "loglikelihood")
    assert torch.equal(steered[~mask], only_clamp[~mask])
    assert not torch.equal(steered[mask], only_clamp[mask])
    latent = sae.encode(steered)[..., 5]
    torch.testing.assert_close(latent, torch.ones_like(latent), atol=1e-3, rtol=0)


def test_a_masked_row_without_described_positions_is_an_error_naming_it(
    model: nn.Module, sae: SAE, input_ids: Tensor
) -> None:
    plan = plan_from_saes([sae_row("add", 8.0, "prompt", line=4)], {(RELEASE, ""): sae})
    assert plan.needs_positions()
    with pytest.raises(SteeringError, match=r"steer\.csv:4: steers at prompt positions"):
        hook_output(model, input_ids, plan, None)


def test_all_rows_need_no_positions_and_take_todays_path(
    model: nn.Module, sae: SAE, input_ids: Tensor
) -> None:
    explicit = plan_from_saes([sae_row("add", 8.0, "all")], {(RELEASE, ""): sae})
    default = plan_from_saes([sae_row("add", 8.0, None)], {(RELEASE, ""): sae})
    assert not explicit.needs_positions() and not explicit.points[HOOK_NAME].masked
    assert torch.equal(
        hook_output(model, input_ids, explicit, None), hook_output(model, input_ids, default, None)
    )


def test_a_decoding_step_holds_no_leading_token() -> None:
    step = Positions(
        start=torch.zeros(2, dtype=torch.long),
        end=torch.ones(2, dtype=torch.long),
        prompt_end=torch.zeros(2, dtype=torch.long),
        continues=True,
    )
    masks = {mode: step.mask(mode, 1) for mode in ("all_but_bos", "prompt", "generated")}
    assert {mode: mask.tolist() for mode, mask in masks.items() if mask is not None} == {
        "all_but_bos": [[True], [True]],
        "prompt": [[False], [False]],
        "generated": [[True], [True]],
    }


def test_kl_passes_describe_their_documents(model: nn.Module, sae: SAE) -> None:
    """A context is prompt, a rolling text generated: ``prompt`` rows move only the first."""
    from saeval.steering.divergence import kl_per_position

    documents = [[11, 40, 52, 7, 90, 33], [12, 41, 8]]
    edits = plan_from_saes([sae_row("add", 8.0, "prompt")], {(RELEASE, ""): sae}).edits(1.0)
    contexts = kl_per_position(model, documents, edits, pad_id=PAD, prompt_ends=[6, 3])
    rolling = kl_per_position(model, documents, edits, pad_id=PAD)
    everywhere = plan_from_saes([sae_row("add", 8.0, None)], {(RELEASE, ""): sae}).edits(1.0)
    expected = kl_per_position(model, documents, everywhere, pad_id=PAD)
    assert rolling == [[0.0] * 6, [0.0] * 3]
    for found, wanted in zip(contexts, expected, strict=True):
        assert found == pytest.approx(wanted, abs=1e-6) and min(found) > 0
