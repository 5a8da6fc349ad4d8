"""The dose ``||h' - h|| / ||h||`` a configuration's edits made, recorded beside the KL, equals
a hand computation from the tiny GPT-2's hidden states and the SAE's own weights: for an add
row (``c * s * ||W_dec[i]||``), a clamp (``|c s - f_i(h)| * ||W_dec[i]||``, ``f_i`` by
sae_lens's ``encode``) and a row steering all positions but the first (the first is NaN: not
steered), in the separate KL pass and in the shared multi-configuration pass."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from builders import save_tiny_pretrained
from sae_builders import build_sae, save_sae, write_steer_csv

from saeval.analysis.dose import summarize_dose
from saeval.run.side_effects import measure
from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.shared_prefix import SharedAnswers

HOOK = "blocks.0.hook_resid_post"  # hidden_states[1] of GPT-2
TEXTS = ("The dog is a loyal pet and", "Is the fox", "What did she read about the dog")
SCALE = 1.5


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dose")
    save_sae(build_sae(seed=2, hook_name=HOOK), root / "sae")
    save_tiny_pretrained("gpt2", root / "gpt2")
    sae = root / "sae"
    extra = ["hook", "action", "positions"]
    write_steer_csv(root / "add.csv", [(3, 8.0, sae, "", HOOK, "add", "all")], extra=extra)
    write_steer_csv(root / "clamp.csv", [(5, 4.0, sae, "", HOOK, "clamp", "all")], extra=extra)
    masked = [(3, 8.0, sae, "", HOOK, "add", "all_but_bos")]
    write_steer_csv(root / "masked.csv", masked, extra=extra)
    return root


def _lm(bundle: Path, steer: str) -> SteeredHFLM:
    path = str(bundle / f"{steer}.csv")
    return SteeredHFLM(pretrained=str(bundle / "gpt2"), steer_path=path, device="cpu", batch_size=2)


def _by_hand(bundle: Path, lm: SteeredHFLM, steer: str, context: list[int]) -> list[float]:
    """The ratio at every position from the unsteered hidden state and the SAE's weights."""
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(bundle / "sae"))
    with torch.no_grad():
        h = lm.model(torch.tensor([context]), output_hidden_states=True).hidden_states[1][0]
        norms = h.norm(dim=-1)
        if steer == "clamp":
            f = sae.encode(h)[:, 5]
            change = (4.0 * SCALE - f).abs() * sae.W_dec[5].norm()
        else:
            change = torch.full_like(norms, 8.0 * SCALE) * sae.W_dec[3].norm()
    ratios = (change / norms).tolist()
    if steer == "masked":
        ratios[0] = math.nan
    return ratios


def _samples() -> str:
    """A samples JSONL whose first requests' contexts are ``TEXTS``."""
    lines = []
    for doc_id, text in enumerate(TEXTS):
        arguments = {"gen_args_0": {"arg_0": text, "arg_1": " a"}}
        lines.append(json.dumps({"doc_id": doc_id, "arguments": arguments}))
    return "\n".join(lines)


def _recorded(lm: SteeredHFLM, shared: bool) -> dict[str, Any]:
    contexts = [lm.tok_encode(text) for text in TEXTS]
    if not shared:
        return measure(lm, _samples(), SCALE, kl_docs=10)
    answers = SharedAnswers([None, SCALE], measure_kl=True)
    requests = [(("q", i), c, [50]) for i, c in enumerate(contexts)]
    with lm.sharing(answers):
        lm.set_scale(None)
        lm._loglikelihood_tokens(requests)
        lm.set_scale(SCALE)
        found = lm.measured_dose(SCALE, contexts)
        assert found is not None, "the shared pass measured the dose"
        return measure(lm, _samples(), SCALE, kl_docs=10)


@pytest.mark.parametrize("shared", [False, True], ids=["kl-pass", "shared-pass"])
@pytest.mark.parametrize("steer", ["add", "clamp", "masked"])
def test_recorded_dose_equals_a_hand_computation(bundle: Path, steer: str, shared: bool) -> None:
    lm = _lm(bundle, steer)
    record = _recorded(lm, shared)["dose"]
    hand = [_by_hand(bundle, lm, steer, lm.tok_encode(text)) for text in TEXTS]
    rest = [v for doc in hand for v in doc[1:]]
    firsts = [doc[0] for doc in hand if not math.isnan(doc[0])]
    assert record["mean"] == pytest.approx(float(np.mean(rest)), rel=1e-5)
    assert record["p95"] == pytest.approx(float(np.percentile(rest, 95)), rel=1e-5)
    assert record["tokens"] == len(rest)
    if firsts:
        assert record["first"] == pytest.approx(float(np.mean(firsts)), rel=1e-5)
    else:
        assert record["first"] is None
    assert list(record["hooks"]) == [HOOK]
    sums = [doc["sum"] for doc in record["documents"]]
    np.testing.assert_allclose(sums, [sum(doc[1:]) for doc in hand], rtol=1e-5)
    assert record["mean"] > 0.01  # the edit really moved the activation


def test_summary_pools_hook_points_and_skips_unsteered_positions() -> None:
    nan = math.nan
    summary = summarize_dose(
        [{"a": [0.1, 1.0, 3.0], "b": [nan, 2.0, nan]}, {"a": [0.3, 5.0], "b": [nan, nan]}]
    )
    assert summary is not None
    assert summary.mean == pytest.approx((1.0 + 3.0 + 5.0 + 2.0) / 4)
    assert summary.first == pytest.approx(0.2)
    assert summary.tokens == 4
    assert summary.hooks["b"].mean == 2.0 and summary.hooks["b"].first is None
    assert summarize_dose([{"a": [0.1, nan]}]) is None  # nothing after the first was steered
