"""Shared-prefix evaluation: one pass for the baseline and every strength, the same answers.

Every configuration's per-document log-likelihoods and is_greedy equal those of a separate
evaluation (HFLM's own loop) within 1e-5, and the metrics are identical, on tiny GPT-2, Llama,
Gemma-2 and Gemma-3 models, with right-padded batches of mixed lengths, three configurations
and a steer file steering two hook points of different layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from builders import build_tiny_model
from conftest import PASS_ARCHS, PASS_HOOKS, batch_rows, invoke, two_hook_bundle
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from sae_builders import MC_TASK, ROLLING_TASK, build_sae

from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.loglikelihood_loop import distinct_rows
from saeval.steering.shared_prefix import SharedAnswers, shared_layers

TOLERANCE = 1e-5
SCALES: tuple[float | None, ...] = (None, 0.5, 2.0)


@pytest.fixture(scope="module")
def bundle(arch_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_hook_bundle(arch_models, tmp_path_factory.mktemp("shared-prefix"), (8.0, -6.0))


@pytest.fixture(scope="module")
def task_manager(bundle: Path) -> TaskManager:
    return TaskManager(include_path=str(bundle / "tasks"), include_defaults=False)


def _lm(bundle: Path, arch: str, **kwargs: Any) -> SteeredHFLM:
    options = {"device": "cpu", "batch_size": 3, **kwargs}
    return SteeredHFLM(
        pretrained=str(bundle / arch), steer_path=str(bundle / "steer.csv"), **options
    )


def _evaluate(lm: SteeredHFLM, scale: float | None, task_manager: TaskManager) -> dict[str, Any]:
    lm.set_scale(scale)
    return simple_evaluate(  # type: ignore[no-any-return]
        model=lm,
        tasks=[MC_TASK, ROLLING_TASK],
        task_manager=task_manager,
        log_samples=True,
        bootstrap_iters=0,
    )


def _loglikelihoods(results: dict[str, Any], task: str) -> list[tuple[float, bool | None]]:
    """(log-likelihood, is_greedy) of every response of every document, in document order."""
    values: list[tuple[float, bool | None]] = []
    for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"]):
        for response in sample["resps"]:
            answer = response[0]
            if isinstance(answer, tuple | list):
                values.append((float(answer[0]), bool(answer[1])))
            else:
                values.append((float(answer), None))
    return values


def _assert_same(shared: dict[str, Any], separate: dict[str, Any]) -> None:
    assert shared["results"] == separate["results"]  # every metric, bit for bit
    for task in (MC_TASK, ROLLING_TASK):
        ours, theirs = _loglikelihoods(shared, task), _loglikelihoods(separate, task)
        assert len(ours) == len(theirs) > 0
        for (value, greedy), (expected, expected_greedy) in zip(ours, theirs, strict=True):
            assert abs(value - expected) < TOLERANCE
            assert greedy == expected_greedy


@pytest.mark.parametrize("arch", PASS_ARCHS)
def test_shared_prefix_answers_equal_separate_evaluations(
    arch: str, bundle: Path, task_manager: TaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = _lm(bundle, arch)
    separate = {scale: _evaluate(lm, scale, task_manager) for scale in SCALES}
    calls = batch_rows(monkeypatch, "_model_call")
    shared: dict[float | None, dict[str, Any]] = {}
    answers = SharedAnswers(list(SCALES))
    for scale in SCALES:
        with lm.sharing(answers):
            shared[scale] = _evaluate(lm, scale, task_manager)
        answers.finished(scale)
        if scale is None:
            first = list(calls)
    assert first and calls == first  # the strengths took every answer from the first pass
    assert all(rows % len(SCALES) == 0 for rows in first)  # one copy per configuration
    for scale in SCALES:
        _assert_same(shared[scale], separate[scale])
    steered = _loglikelihoods(shared[2.0], MC_TASK)
    baseline = _loglikelihoods(shared[None], MC_TASK)
    assert max(abs(a[0] - b[0]) for a, b in zip(steered, baseline, strict=True)) > 1e-2


def test_the_shared_layers_run_once_per_batch(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layer 0's attention sees one copy of the batch, layer 1's (steered) all three."""
    lm = _lm(bundle, "llama")
    seen: dict[int, list[int]] = {0: [], 1: []}
    handles = [
        lm.model.model.layers[j].self_attn.q_proj.register_forward_pre_hook(
            lambda module, args, j=j: seen[j].append(int(args[0].shape[0]))
        )
        for j in seen
    ]
    requests = [(("a", "b"), [1, 5, 6, 7], [9]), (("c", "d"), [1, 5], [8, 9])]
    with lm.sharing(SharedAnswers(list(SCALES))):
        lm.set_scale(None)
        lm._loglikelihood_tokens(requests)
    for handle in handles:
        handle.remove()
    assert seen == {0: [2], 1: [6]}


def _requests() -> list[tuple[Any, list[int], list[int]]]:
    """Mixed lengths, a shared context with one- and two-token continuations, a duplicate."""
    return [
        (("q1", " a"), [1, 40, 41, 42, 43, 44, 45], [50]),
        (("q1", " b"), [1, 40, 41, 42, 43, 44, 45], [51]),
        (("q1", " c d"), [1, 40, 41, 42, 43, 44, 45], [52, 53]),
        (("q2", " a"), [1, 60, 61], [50]),
        (("q3", " long"), [1, 70], [71, 72, 73, 74, 75]),
        (("q2", " a"), [1, 60, 61], [50]),
        (None, [2], [80, 81, 82, 83, 84, 85]),
    ]


@pytest.mark.parametrize("max_length", [None, 6])
@pytest.mark.parametrize("scale", [None, 1.0])
def test_the_request_loop_equals_hflms_loop(
    bundle: Path, max_length: int | None, scale: float | None
) -> None:
    """saeval's loop (the single-configuration path) against HFLM's, with left truncation when
    the inputs are longer than ``max_length``."""
    lm = _lm(bundle, "gpt2", **({} if max_length is None else {"max_length": max_length}))
    lm.set_scale(scale)
    requests = _requests()
    expected = HFLM._loglikelihood_tokens(lm, requests)
    got = lm._answers([scale], requests, True, None)[0]
    assert len(got) == len(expected) == len(requests)
    for (value, greedy), (reference, reference_greedy) in zip(got, expected, strict=True):
        assert abs(value - reference) < TOLERANCE and greedy == reference_greedy
    assert len({value for value, _ in got}) >= 5  # different requests, different answers


def test_rows_truncate_on_the_left_and_share_identical_inputs() -> None:
    rows = distinct_rows(_requests(), max_length=6)
    assert [len(row.tokens) for row in rows] == [6, 6, 6, 6, 3]  # longest first, 5 distinct
    by_tokens = {row.tokens: row for row in rows}
    context = by_tokens[(41, 42, 43, 44, 45, 52)]
    assert (context.prompt_end, context.keep, context.requests) == (5, 2, [2])
    one_token = by_tokens[(40, 41, 42, 43, 44, 45)]  # q1 a and q1 b: one row, cut by one
    assert (one_token.prompt_end, one_token.keep, one_token.requests) == (6, 1, [0, 1])
    assert by_tokens[(1, 60, 61)].requests == [3, 5]
    assert by_tokens[(1, 70, 71, 72, 73, 74)].prompt_end == 2  # not truncated: 7 = max + 1
    rolling = next(row for row in rows if row.prompt_end == 0)
    assert rolling.tokens == (2, 80, 81, 82, 83, 84) and rolling.keep == 6


@pytest.mark.parametrize(
    ("hooks", "shared"),
    [
        (["blocks.1.hook_resid_pre"], 1),
        (["blocks.1.hook_resid_post"], 2),
        (["blocks.0.hook_resid_post"], 1),
        (["blocks.1.hook_attn_out"], 1),
        (["blocks.2.hook_mlp_out"], 2),
        (["blocks.2.attn.hook_z"], 2),
        (["blocks.0.hook_resid_pre"], 0),
        (["blocks.2.hook_resid_post", "blocks.1.hook_mlp_out"], 1),
        (["layers.1"], 2),
        (["layers.1.mlp"], 1),
        (["embed_tokens"], 0),
        ([], 3),
    ],
)
def test_shared_layers_per_hook_kind(hooks: list[str], shared: int) -> None:
    model = build_tiny_model("gemma3_text")  # three layers
    assert shared_layers(model, hooks) == shared


def test_out_of_memory_splits_the_configurations(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = _lm(bundle, "gemma2", batch_size=5)  # the five distinct rows in one batch
    requests = _requests()
    expected = []
    for scale in SCALES:
        lm.set_scale(scale)
        expected.append(HFLM._loglikelihood_tokens(lm, requests))
    real = HFLM._model_call
    groups: list[int] = []

    def small_device(self: HFLM, inps: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        copies = inps.shape[0] // 5
        groups.append(copies)
        if copies > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, inps, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_model_call", small_device)
    got = lm._answers(list(SCALES), requests, True, None)
    for answers, reference in zip(got, expected, strict=True):
        for (value, greedy), (ref_value, ref_greedy) in zip(answers, reference, strict=True):
            assert abs(value - ref_value) < TOLERANCE and greedy == ref_greedy
    assert groups == [3, 1, 2, 1, 1]  # three copies, then one, then two, then one and one


def test_a_steering_error_in_a_shared_pass_falls_back_to_each_configuration_alone(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-finite strength must not fail the baseline: the baseline runs alone and the
    broken strength meets its error in its own evaluation."""
    from saeval.errors import SteeringError

    lm = _lm(bundle, "gpt2")
    requests = _requests()
    lm.set_scale(None)
    expected = HFLM._loglikelihood_tokens(lm, requests)
    shared = SharedAnswers([None, 1e308])
    with lm.sharing(shared):
        got = lm._loglikelihood_tokens(requests)
    assert shared.broken and not shared.answers
    shared.finished(None)
    lm.set_scale(1e308)
    with lm.sharing(shared), pytest.raises(SteeringError, match="non-finite add vector"):
        lm._loglikelihood_tokens(requests)
    assert [round(value, 5) for value, _ in got] == [round(value, 5) for value, _ in expected]


@pytest.mark.parametrize("mode", ["prompt", "generated", "all_but_bos"])
def test_position_limited_rows_share_passes_with_the_same_answers(bundle: Path, mode: str) -> None:
    """Each copy of a shared pass is described by its own batch's positions."""
    from saeval.spec.steer_file import SteerRow
    from saeval.steering.plan import plan_from_saes

    rows = [
        SteerRow(
            file="t.csv",
            line=2 + i,
            latent_idx=3 + i,
            coefficient=8.0,
            sae_release="tiny",
            sae_id="",
            hook=hook,
            positions=mode,
        )
        for i, hook in enumerate(PASS_HOOKS)
    ]
    plan = plan_from_saes(rows, {("tiny", ""): build_sae(seed=1)})
    lm = SteeredHFLM(pretrained=str(bundle / "llama"), plan=plan, device="cpu", batch_size=3)
    requests = _requests()
    shared = lm._answers(list(SCALES), requests, True, None)
    for scale, answers in zip(SCALES, shared, strict=True):
        (alone,) = lm._answers([scale], requests, True, None)
        for (value, greedy), (expected, expected_greedy) in zip(answers, alone, strict=True):
            assert abs(value - expected) < TOLERANCE and greedy == expected_greedy
    assert shared[2] != shared[0]  # the steering moved the answers


# ---- saeval run --------------------------------------------------------------------------


def _run(tiny_bundle: Path, output: Path, *args: str) -> Path:

    command = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    command += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(output)]
    command += ["--device", "cpu", "--tasks", f"{MC_TASK},{ROLLING_TASK}", "--kl-docs", "0"]
    result = invoke(*command, "--scale", "0.5,2", "--name", "r", *args)
    assert result.exit_code == 0, result.output
    return output / "r"


def _samples(run: Path) -> dict[str, list[dict[str, Any]]]:
    import json

    found = {}
    for path in sorted(run.glob("*/samples_*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        found[f"{path.parent.name}/{path.name.rsplit('_', 1)[0]}"] = records
    return found


def _results(run: Path) -> dict[str, Any]:
    import json

    return {
        path.parent.name: json.loads(path.read_text())["results"]
        for path in sorted(run.glob("*/results_*.json"))
    }


def test_saeval_run_shares_passes_and_no_shared_prefix_takes_hflms_loop(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hflm_loops: list[float | None] = []
    real = HFLM._loglikelihood_tokens

    def spy(self: SteeredHFLM, *args: Any, **kwargs: Any) -> Any:
        hflm_loops.append(self.scale)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_loglikelihood_tokens", spy)
    calls = batch_rows(monkeypatch, "_model_call")
    separate = _run(tiny_bundle, tmp_path / "separate", "--no-shared-prefix")
    assert set(hflm_loops) == {None, 0.5, 2.0}  # every configuration through HFLM's loop
    separate_calls, hflm_loops[:] = len(calls), []
    shared = _run(tiny_bundle, tmp_path / "shared")
    assert hflm_loops == []  # every loglikelihood request answered by the shared passes
    assert len(calls) - separate_calls < separate_calls / 2  # a third of the passes and fewer
    assert _results(shared) == _results(separate)
    ours, theirs = _samples(shared), _samples(separate)
    assert sorted(ours) == sorted(theirs) and len(ours) == 6
    for name, records in ours.items():
        for mine, reference in zip(records, theirs[name], strict=True):
            assert mine["doc_id"] == reference["doc_id"] and mine["metrics"] == reference["metrics"]
            for got, expected in zip(mine["resps"], reference["resps"], strict=True):
                (value, *greedy), (reference_value, *reference_greedy) = map(
                    _response, (got, expected)
                )
                assert abs(value - reference_value) < TOLERANCE and greedy == reference_greedy


def _response(response: list[Any]) -> list[Any]:
    """A samples file's response as [log-likelihood, is_greedy] (rolling: [log-likelihood])."""
    answer = response[0]
    return [float(answer[0]), answer[1]] if isinstance(answer, list) else [float(answer)]
