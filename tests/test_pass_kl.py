"""KL from the multi-configuration pass: the evaluation's own pass gives every configuration's
KL to the baseline at each position of each context, equal (within 1e-6) to two direct forward
passes of the context alone, on tiny GPT-2, Llama, Gemma-2 (soft-capped logits) and Gemma-3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import PASS_ARCHS, batch_rows, invoke, two_hook_bundle

from saeval.steering.hooks import attach
from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.shared_prefix import SharedAnswers

CONTEXTS = ([1, 40, 41, 42, 43, 44, 45], [1, 60, 61], [1, 70], [1, 60, 61, 62, 63])
REQUESTS: list[tuple[Any, list[int], list[int]]] = [
    (("q1", " a"), list(CONTEXTS[0]), [50]),
    (("q1", " b"), list(CONTEXTS[0]), [51, 52]),
    (("q2", " a"), list(CONTEXTS[1]), [50]),
    (("q3", " long"), list(CONTEXTS[2]), [71, 72, 73, 74, 75]),
    (("q4", " a"), list(CONTEXTS[3]), [50]),
    (("q2", " b"), list(CONTEXTS[1]), [51]),
    (None, [2], [80, 81, 82, 83]),  # a rolling window: no context to measure
]


@pytest.fixture(scope="module")
def bundle(arch_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_hook_bundle(arch_models, tmp_path_factory.mktemp("pass-kl"), (8.0, -6.0))


def _lm(bundle: Path, arch: str) -> SteeredHFLM:
    steer = str(bundle / "steer.csv")
    return SteeredHFLM(pretrained=str(bundle / arch), steer_path=steer, device="cpu", batch_size=3)


def _direct_kl(lm: SteeredHFLM, context: list[int], scale: float) -> list[float]:
    """Two plain forward passes of the context alone and kl_div on the log-softmax."""
    ids = torch.tensor([context])
    with torch.no_grad():
        log_p = lm.model(ids).logits.float().log_softmax(-1)
        with attach(lm.model, lm.plan.edits(scale)):
            log_q = lm.model(ids).logits.float().log_softmax(-1)
    kl = torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="none")
    return list(kl.sum(-1)[0].tolist())


@pytest.mark.parametrize("arch", PASS_ARCHS)
def test_kl_from_the_shared_pass_equals_two_direct_passes(bundle: Path, arch: str) -> None:
    lm = _lm(bundle, arch)
    shared = SharedAnswers([None, 0.5, 2.0], measure_kl=True)
    with lm.sharing(shared):
        lm.set_scale(None)
        lm._loglikelihood_tokens(REQUESTS)
    contexts = [list(context) for context in CONTEXTS]
    for scale in (0.5, 2.0):
        got = shared.kl_of(scale, contexts)
        assert got is not None
        for values, context in zip(got, contexts, strict=True):
            np.testing.assert_allclose(values, _direct_kl(lm, context, scale), atol=1e-6, rtol=0)
    assert max(max(values) for values in got) > 1e-3  # the steering really moved it
    assert shared.kl_of(None, contexts) == [[0.0] * len(c) for c in contexts]
    assert shared.kl_of(2.0, [[1, 99]]) is None  # a context the pass never met


def test_without_a_pending_baseline_the_pass_adds_a_baseline_copy(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reused baseline: the strengths' pass still measures KL against an unsteered copy,
    and its answers are unchanged."""
    lm = _lm(bundle, "llama")
    rows = batch_rows(monkeypatch, "_model_call")
    measured = SharedAnswers([1.0, 2.0], measure_kl=True)
    plain = SharedAnswers([1.0, 2.0])
    lm.set_scale(1.0)
    with lm.sharing(measured):
        with_kl = lm._loglikelihood_tokens(REQUESTS)
    with lm.sharing(plain):
        without = lm._loglikelihood_tokens(REQUESTS)
    np.testing.assert_allclose(np.array(with_kl)[:, 0], np.array(without)[:, 0], atol=1e-5)
    assert sum(rows[: len(rows) // 2]) * 2 == sum(rows[len(rows) // 2 :]) * 3  # 3 copies vs 2
    context = list(CONTEXTS[1])
    got = measured.kl_of(1.0, [context])
    assert got is not None
    np.testing.assert_allclose(got[0], _direct_kl(lm, context, 1.0), atol=1e-6, rtol=0)
    assert plain.kl_of(1.0, [context]) is None


def _run(tiny_bundle: Path, output: Path, name: str, *args: str) -> Path:
    from sae_builders import MC_TASK

    command = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    command += ["--include-path", str(tiny_bundle / "tasks"), "--tasks", MC_TASK]
    command += ["--limit", "6", "--scale", "0,1,2", "--kl-docs", "4", "--device", "cpu"]
    result = invoke(*command, "--output", str(output), "--name", name, *args)
    assert result.exit_code == 0, result.output
    return output / name


def _kl_documents(run: Path, configuration: str) -> list[dict[str, Any]]:
    import json

    (path,) = (run / configuration).glob("side_effects_*.json")
    return list(json.loads(path.read_text())["kl"]["documents"])


def test_a_run_takes_the_kl_from_its_shared_pass(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same per-document KL (within 1e-6) as separate passes (--no-shared-prefix), with no
    KL pass of its own."""
    import saeval.steering.divergence as divergence

    separate = _run(tiny_bundle, tmp_path, "separate", "--no-shared-prefix")
    passes: list[int] = []
    real = divergence.kl_per_position

    def counted(*args: Any, **kwargs: Any) -> list[list[float]]:
        passes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(divergence, "kl_per_position", counted)
    shared = _run(tiny_bundle, tmp_path, "shared")
    assert passes == []
    for configuration in ("steered@0", "steered@1", "steered@2"):
        ours, theirs = _kl_documents(shared, configuration), _kl_documents(separate, configuration)
        assert [(d["doc_id"], d["tokens"]) for d in ours] == [
            (d["doc_id"], d["tokens"]) for d in theirs
        ]
        assert len(ours) == 4
        for mine, reference in zip(ours, theirs, strict=True):
            assert mine["sum"] == pytest.approx(reference["sum"], abs=1e-6 * reference["tokens"])
    assert all(d["sum"] == 0.0 for d in _kl_documents(shared, "steered@0"))
    assert all(d["sum"] > 0.0 for d in _kl_documents(shared, "steered@2"))
