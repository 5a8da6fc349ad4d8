"""Position-limited steering through saeval's lm-eval model, on tiny GPT-2 and Llama models.

Generation: every forward call of ``_model_generate`` on a left-padded batch of two prompts of
different lengths (the prefill, then one call per decoding step with the KV cache) is recorded
at the steered hook point; exactly the mode's positions move. Loglikelihood: requests steered at
``generated`` (``prompt``) positions score as a hand-built forward pass adding the vector only
at the continuation (context) positions, within 1e-5.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from builders import save_tiny_pretrained
from sae_builders import HOOK_NAME, build_sae, save_sae
from sae_lens import SAE
from torch import Tensor

from saeval.spec.steer_file import Action, SteerRow
from saeval.steering.hooks import locate
from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.plan import HookPointPlan, plan_from_saes

RELEASE = "tiny-release"
COEFFICIENT = 8.0
LATENT = 3
PROMPTS = ("The dog", "Paris is the capital of France and")


@pytest.fixture(scope="module")
def sae() -> SAE:
    return build_sae(seed=1)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sae: SAE
) -> SteeredHFLM:
    root = tmp_path_factory.mktemp(f"positions-{request.param}")
    save_tiny_pretrained(request.param, root / "model")
    save_sae(sae, root / "sae")
    plan = plan_from_saes([row(None)], {(RELEASE, ""): sae})
    return SteeredHFLM(pretrained=str(root / "model"), plan=plan, device="cpu", batch_size=2)


def row(mode: str | None) -> SteerRow:
    return SteerRow(
        file="steer.csv",
        line=2,
        latent_idx=LATENT,
        coefficient=COEFFICIENT,
        sae_release=RELEASE,
        sae_id="",
        action=Action.ADD,
        positions=mode,
    )


def steer_at(lm: SteeredHFLM, sae: SAE, mode: str) -> None:
    lm.plan = plan_from_saes([row(mode)], {(RELEASE, ""): sae})
    lm.set_scale(1.0)


@contextmanager
def recorded_edits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Tensor, Tensor]]]:
    """Every (activation before, after) the hook point's edit."""
    calls: list[tuple[Tensor, Tensor]] = []
    real = HookPointPlan.edit

    def edit(self: HookPointPlan, h: Tensor, scale: float = 1.0) -> Tensor:
        out = real(self, h, scale)
        calls.append((h.detach().clone(), out.detach().clone()))
        return out

    with monkeypatch.context() as patch:
        patch.setattr(HookPointPlan, "edit", edit)
        yield calls


def moved(before: Tensor, after: Tensor) -> list[list[bool]]:
    return (before != after).any(dim=-1).tolist()  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["all", "all_but_bos", "prompt", "generated"])
def test_generation_steers_exactly_the_modes_positions_step_by_step(
    lm: SteeredHFLM, sae: SAE, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    steer_at(lm, sae, mode)
    context, attention = lm.tok_batch_encode(list(PROMPTS))
    real = attention.bool().tolist()
    assert not all(real[0]) and all(real[1])  # the short prompt is left-padded
    with recorded_edits(monkeypatch) as calls:
        lm._model_generate(
            context, context.shape[1] + 4, ["never-stop"], attention_mask=attention, do_sample=False
        )
    (prefill_before, prefill_after), *steps = calls
    assert prefill_before.shape[1] == context.shape[1] and len(steps) >= 2
    first = [row.index(True) for row in real]
    expected_prefill = {
        "all": [[True] * len(r) for r in real],
        "all_but_bos": [
            [x and i != f for i, x in enumerate(r)] for r, f in zip(real, first, strict=True)
        ],
        "prompt": real,
        "generated": [[False] * len(r) for r in real],
    }[mode]
    assert moved(prefill_before, prefill_after) == expected_prefill
    for before, after in steps:  # decoding steps: one position each, from the KV cache
        assert before.shape[1] == 1
        assert moved(before, after) == [[mode != "prompt"]] * 2


def test_generation_steered_at_generated_positions_leaves_the_prompt_pass_unsteered(
    lm: SteeredHFLM, sae: SAE
) -> None:
    """Only decoding steps are steered: the first generated token is the unsteered one."""
    context, attention = lm.tok_batch_encode(list(PROMPTS))
    outputs = {}
    for mode in ("generated", "prompt"):
        steer_at(lm, sae, mode)
        outputs[mode] = lm._model_generate(
            context, context.shape[1] + 3, ["never-stop"], attention_mask=attention, do_sample=False
        )
    lm.set_scale(None)
    plain = lm._model_generate(
        context, context.shape[1] + 1, ["never-stop"], attention_mask=attention, do_sample=False
    )
    first = context.shape[1]
    assert torch.equal(outputs["generated"][:, first], plain[:, first])


def hand_built(
    lm: SteeredHFLM, sae: SAE, context: list[int], continuation: list[int], steered: slice
) -> float:
    """The continuation's log-likelihood with c·W_dec[i] added at ``steered`` positions only."""
    tokens = (context + continuation)[:-1]
    vector = COEFFICIENT * sae.W_dec[LATENT].detach()
    module = locate(lm.model, HOOK_NAME).module

    def add(module: Any, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[0, steered] += vector
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = module.register_forward_hook(add)
    try:
        with torch.no_grad():
            logits = lm.model(torch.tensor([tokens])).logits[0]
    finally:
        handle.remove()
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    positions = range(len(context) - 1, len(tokens))
    return float(sum(logprobs[p, t] for p, t in zip(positions, continuation, strict=True)))


@pytest.mark.parametrize("mode", ["generated", "prompt"])
def test_loglikelihood_matches_a_hand_built_pass_steering_only_its_positions(
    lm: SteeredHFLM, sae: SAE, mode: str
) -> None:
    steer_at(lm, sae, mode)
    texts = [("Question: Which animal is a loyal pet? Answer:", " dog and"), ("The", " dog")]
    texts.append(("The", " dog is a dog"))
    requests = [
        (text, lm.tok_encode(text[0]), lm.tok_encode(text[1], add_special_tokens=False))
        for text in texts
    ]
    answers = lm._loglikelihood_tokens(requests, disable_tqdm=True)  # one right-padded batch
    for (_, context, continuation), (loglikelihood, _) in zip(requests, answers, strict=True):
        length = len(context) + len(continuation) - 1
        steered = slice(len(context), length) if mode == "generated" else slice(0, len(context))
        expected = hand_built(lm, sae, context, continuation, steered)
        assert loglikelihood == pytest.approx(expected, abs=1e-5)
        unsteered = hand_built(lm, sae, context, continuation, slice(0, 0))
        if steered.stop > steered.start:  # the steering did something
            assert abs(loglikelihood - unsteered) > 1e-3
        else:  # a one-token continuation is never an input: generated steers nothing
            assert loglikelihood == pytest.approx(unsteered, abs=1e-5)


def test_a_rolling_window_is_generated_everywhere(lm: SteeredHFLM, sae: SAE) -> None:
    """Rolling windows (no request key) have no prompt: ``prompt`` leaves them unsteered."""
    tokens = lm.tok_encode("The dog is a dog and the dog is a loyal dog.")
    window = [(None, [lm.prefix_token_id], tokens)]
    steer_at(lm, sae, "prompt")
    ((prompt, _),) = lm._loglikelihood_tokens(window, disable_tqdm=True)
    steer_at(lm, sae, "generated")
    ((generated, _),) = lm._loglikelihood_tokens(window, disable_tqdm=True)
    lm.set_scale(None)
    ((plain, _),) = lm._loglikelihood_tokens(window, disable_tqdm=True)
    everywhere = hand_built(lm, sae, [lm.prefix_token_id], tokens, slice(0, len(tokens)))
    assert prompt == pytest.approx(plain, abs=1e-5)
    assert generated == pytest.approx(everywhere, abs=1e-5)
    assert abs(generated - plain) > 1e-3


def test_the_batch_size_probe_runs_a_masked_plan(
    lm: SteeredHFLM, sae: SAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batch_size=auto probes with passes of ones that no request describes."""
    steer_at(lm, sae, "generated")
    monkeypatch.setattr(lm, "max_batch_size", 2)
    assert lm._detect_batch_size() == 2
