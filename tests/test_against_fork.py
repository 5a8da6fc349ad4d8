"""saeval against the arithmetic of the ``sae_steered_beta`` fork
(AMindToThink/lm-evaluation-harness, ``lm_eval/models/InterventionModel.py``): sae_lens's
``HookedSAETransformer`` built from the same tiny GPT-2 weights, the SAE added with
``use_error_term=True``, and the fork's own hook functions (copied below) on ``hook_sae_input``
and ``hook_sae_acts_post``. saeval's ``clamp_active`` (the fork's ``clamp`` and, with a
threshold, its main-branch ``clamp_cond``) and ``add_through_sae`` (the fork's ``add``) give the
same log-likelihoods within 1e-4.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import build_tiny_model
from sae_builders import HOOK_NAME, build_sae
from sae_lens import SAE, HookedSAETransformer
from tl_reference import transformer_lens_model
from torch import Tensor

from saeval.spec.steer_file import Action, SteerRow
from saeval.steering.hooks import attach
from saeval.steering.plan import plan_from_saes

pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")
TOLERANCE = 1e-4
RELEASE = "tiny-release"


# ---- the fork's hook functions, as it wrote them ---------------------------------------------


def steering_hook_add_scaled_one_hot(
    activations: Tensor, hook: Any, sae: SAE, latent_idx: int, steering_coefficient: float
) -> Tensor:
    return activations + steering_coefficient * sae.W_dec[latent_idx]


def clamp_original(sae_acts: Tensor, hook: Any, latent_idx: int, value: float) -> Tensor:
    mask = sae_acts[:, :, latent_idx] > 0
    sae_acts[:, :, latent_idx][mask] = value
    return sae_acts


def clamp_conditional_main(
    sae_acts: Tensor, hook: Any, latent_idx: int, value: float, clamp_value: float
) -> Tensor:
    """clamp_cond on the fork's main branch: this latent, where it exceeds clamp_value."""
    mask = sae_acts[:, :, latent_idx] > clamp_value
    sae_acts[:, :, latent_idx][mask] = value
    return sae_acts


# ---- the two models -----------------------------------------------------------------------


@functools.cache
def models() -> tuple[torch.nn.Module, Any]:
    """The tiny GPT-2 and a HookedSAETransformer holding the same weights."""
    model = build_tiny_model("gpt2")
    with tempfile.TemporaryDirectory(prefix="saeval-fork-") as directory:
        tl = transformer_lens_model(model, Path(directory), cls=HookedSAETransformer)
    return model, tl


def fork_logprobs(sae: SAE, hooks: list[tuple[str, Callable[..., Tensor]]], ids: Tensor) -> Tensor:
    """The fork's log-probabilities: its SAE spliced in with the error term, its hooks on."""
    _, tl = models()
    tl.add_sae(sae, use_error_term=True)
    try:
        with torch.no_grad(), tl.hooks(fwd_hooks=hooks):
            return tl(ids).log_softmax(-1)
    finally:
        tl.reset_saes()


def saeval_logprobs(sae: SAE, rows: list[SteerRow], ids: Tensor) -> Tensor:
    model, _ = models()
    plan = plan_from_saes(rows, {(RELEASE, ""): sae})
    with torch.no_grad(), attach(model, plan.edits()):
        return model(ids).logits.log_softmax(-1)


def row(latent: int, coefficient: float, action: Action, **fields: Any) -> SteerRow:
    return SteerRow("fork.csv", 2, latent, coefficient, RELEASE, "", action=action, **fields)


def sae_for(kind: str) -> SAE:
    return build_sae(kind, seed=3)  # add_sae(use_error_term=True) keeps its error term


def mixed_latents(sae: SAE, ids: Tensor, count: int = 2) -> list[int]:
    """Latents that fire at some positions of ``ids`` but not at all of them."""
    with torch.no_grad():
        fires = sae.encode(models()[1].run_with_cache(ids)[1][HOOK_NAME]) > 0
    fraction = fires.float().mean((0, 1))
    mixed = [i for i in range(sae.cfg.d_sae) if 0.2 < float(fraction[i]) < 0.8]
    assert len(mixed) >= count, "the tiny SAE should have latents that fire only sometimes"
    return mixed[:count]


def _acts_post(latent: int, fn: Callable[..., Tensor], **kwargs: Any) -> tuple[str, Any]:
    return f"{HOOK_NAME}.hook_sae_acts_post", functools.partial(fn, latent_idx=latent, **kwargs)


@pytest.mark.parametrize("kind", ["standard", "jumprelu", "topk"])
def test_clamp_active_is_the_forks_clamp(kind: str, input_ids: Tensor) -> None:
    sae = sae_for(kind)
    (a, b), values = mixed_latents(sae, input_ids), (-3.0, 2.5)
    hooks = [_acts_post(i, clamp_original, value=c) for i, c in zip((a, b), values, strict=True)]
    theirs = fork_logprobs(sae, hooks, input_ids)
    rows = [row(i, c, Action.CLAMP_ACTIVE) for i, c in zip((a, b), values, strict=True)]
    torch.testing.assert_close(
        saeval_logprobs(sae, rows, input_ids), theirs, atol=TOLERANCE, rtol=0
    )
    everywhere = [row(i, c, Action.CLAMP) for i, c in zip((a, b), values, strict=True)]
    difference = saeval_logprobs(sae, everywhere, input_ids) - theirs
    assert difference.abs().max() > 1e-3  # the unconditional clamp is another intervention


def test_clamp_active_with_a_threshold_is_the_forks_main_clamp_cond(input_ids: Tensor) -> None:
    sae = sae_for("standard")
    (latent,) = mixed_latents(sae, input_ids, count=1)
    with torch.no_grad():
        base = sae.encode(models()[1].run_with_cache(input_ids)[1][HOOK_NAME])[..., latent]
    firing = base[base > 0].sort().values
    middle = len(firing) // 2  # some firing positions above the threshold, some below
    threshold = float(firing[middle - 1 : middle + 1].mean())  # halfway: no position on it
    hook = _acts_post(latent, clamp_conditional_main, value=9.0, clamp_value=threshold)
    theirs = fork_logprobs(sae, [hook], input_ids)
    rows = [row(latent, 9.0, Action.CLAMP_ACTIVE, threshold=threshold)]
    torch.testing.assert_close(
        saeval_logprobs(sae, rows, input_ids), theirs, atol=TOLERANCE, rtol=0
    )
    at_zero = saeval_logprobs(sae, [row(latent, 9.0, Action.CLAMP_ACTIVE)], input_ids)
    assert (at_zero - theirs).abs().max() > 1e-3  # the threshold matters


@pytest.mark.parametrize("kind", ["standard", "jumprelu", "topk"])
def test_add_through_sae_is_the_forks_add(kind: str, input_ids: Tensor) -> None:
    sae = sae_for(kind)
    adds = [(3, 4.0), (70, -2.5)]
    hooks = [
        (
            f"{HOOK_NAME}.hook_sae_input",
            functools.partial(
                steering_hook_add_scaled_one_hot, sae=sae, latent_idx=i, steering_coefficient=c
            ),
        )
        for i, c in adds
    ]
    theirs = fork_logprobs(sae, hooks, input_ids)
    ours = saeval_logprobs(sae, [row(i, c, Action.ADD_THROUGH_SAE) for i, c in adds], input_ids)
    torch.testing.assert_close(ours, theirs, atol=TOLERANCE, rtol=0)
    plain = saeval_logprobs(sae, [row(i, c, Action.ADD) for i, c in adds], input_ids)
    assert (plain - theirs).abs().max() > 1e-3  # saeval's plain add is not the fork's


def test_a_fork_file_with_add_and_clamp_rows_through_the_sae(input_ids: Tensor) -> None:
    """The fork applies both on one SAE: the clamp sees enc(h + c·W_dec[i])."""
    sae = sae_for("standard")
    (latent,) = mixed_latents(sae, input_ids, count=1)
    add = functools.partial(
        steering_hook_add_scaled_one_hot, sae=sae, latent_idx=3, steering_coefficient=6.0
    )
    hooks = [(f"{HOOK_NAME}.hook_sae_input", add), _acts_post(latent, clamp_original, value=-4.0)]
    theirs = fork_logprobs(sae, hooks, input_ids)
    rows = [row(3, 6.0, Action.ADD_THROUGH_SAE), row(latent, -4.0, Action.CLAMP_ACTIVE)]
    torch.testing.assert_close(
        saeval_logprobs(sae, rows, input_ids), theirs, atol=TOLERANCE, rtol=0
    )
