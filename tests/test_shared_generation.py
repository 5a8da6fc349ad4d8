"""Shared generation: one generation loop for the baseline and every strength, the same tokens.

Every configuration's greedy generations equal those of a separate generation (lm-eval's own
``HFLM.generate_until``, one configuration at a time), token for token and string for string,
on tiny GPT-2, Llama, Gemma-2 and Gemma-3 models (float32), with left-padded batches of mixed
lengths, per-request stop sequences and ``max_gen_toks``, three configurations and a steer
file steering two hook points of different layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import PASS_ARCHS, PASS_HOOKS, batch_rows, invoke, two_hook_bundle
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from sae_builders import build_sae

from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.shared_generation import own_width
from saeval.steering.shared_prefix import SharedAnswers

SCALES: tuple[float | None, ...] = (None, 0.5, 2.0)
LONG = {"until": ["\n"], "max_gen_toks": 9, "do_sample": False}
SHORT = {"until": ["e", "."], "max_gen_toks": 5, "do_sample": False}
PROMPTS = (
    ("The dog ran to the", LONG),
    ("A cat", LONG),
    ("Which animal barks at night when the moon is full? Answer:", LONG),
    ("The answer is", SHORT),
    ("Dogs and cats and birds and fish live in the house", SHORT),
    ("Hello", SHORT),
    ("The dog ran to the", SHORT),
)


@pytest.fixture(scope="module")
def bundle(arch_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_hook_bundle(arch_models, tmp_path_factory.mktemp("shared-generation"), (1.5, -1.0))


def _lm(bundle: Path, arch: str, **kwargs: Any) -> SteeredHFLM:
    options = {"device": "cpu", "batch_size": 3, **kwargs}
    return SteeredHFLM(
        pretrained=str(bundle / arch), steer_path=str(bundle / "steer.csv"), **options
    )


def _requests() -> list[Instance]:
    return [
        Instance("generate_until", {}, (prompt, dict(kwargs)), idx=0) for prompt, kwargs in PROMPTS
    ]


def _generations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float | None, torch.Tensor]]:
    """(scale, output ids) of every batch ``SteeredHFLM._model_generate`` returns."""
    seen: list[tuple[float | None, torch.Tensor]] = []
    real = SteeredHFLM._model_generate

    def spy(self: SteeredHFLM, *args: Any, **kwargs: Any) -> torch.Tensor:
        output = real(self, *args, **kwargs)
        seen.append((self.scale, output))
        return output

    monkeypatch.setattr(SteeredHFLM, "_model_generate", spy)
    return seen


def _separate(lm: SteeredHFLM) -> dict[float | None, list[str]]:
    texts = {}
    for scale in SCALES:
        lm.set_scale(scale)
        texts[scale] = lm.generate_until(_requests(), disable_tqdm=True)
    return texts


def _shared(lm: SteeredHFLM) -> dict[float | None, list[str]]:
    texts = {}
    answers = SharedAnswers(list(SCALES))
    for scale in SCALES:
        lm.set_scale(scale)
        with lm.sharing(answers):
            texts[scale] = lm.generate_until(_requests(), disable_tqdm=True)
        answers.finished(scale)
    return texts


@pytest.mark.parametrize("arch", PASS_ARCHS)
def test_shared_generations_equal_separate_generations(
    arch: str, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = _lm(bundle, arch)
    outputs = _generations(monkeypatch)
    rows = batch_rows(monkeypatch, "_model_generate")
    separate = _separate(lm)
    separate_outputs, separate_rows = list(outputs), list(rows)
    outputs[:], rows[:] = [], []
    shared = _shared(lm)
    assert shared == separate
    assert len(outputs) == len(separate_outputs) == 3 * 3  # three batches per configuration
    for (scale, got), (expected_scale, expected) in zip(outputs, separate_outputs, strict=True):
        assert scale == expected_scale and torch.equal(got, expected)  # token for token
    assert rows == [3 * rows for rows in separate_rows[:3]]  # one generation, three copies
    assert len({tuple(texts) for texts in shared.values()}) == 3  # each strength its own


def test_the_prefill_shares_layers_and_the_decoding_steps_run_every_copy(
    bundle: Path,
) -> None:
    """Layer 0 (below the first hook) sees one copy of the prompts in the prefill and every
    copy in each decoding step; layer 1 (steered) sees every copy always."""
    lm = _lm(bundle, "llama")
    seen: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    handles = [
        lm.model.model.layers[j].self_attn.q_proj.register_forward_pre_hook(
            lambda module, args, j=j: seen[j].append(tuple(args[0].shape[:2]))
        )
        for j in seen
    ]
    requests = [Instance("generate_until", {}, (p, dict(LONG)), idx=0) for p, _ in PROMPTS[:2]]
    lm.set_scale(None)
    with lm.sharing(SharedAnswers(list(SCALES))):
        lm.generate_until(requests, disable_tqdm=True)
    for handle in handles:
        handle.remove()
    prefill = len(lm.tok_encode(PROMPTS[0][0]))  # the longer prompt, the other left-padded
    decoding = [(6, 1)] * (LONG["max_gen_toks"] - 1)  # type: ignore[operator]
    assert seen == {0: [(2, prefill), *decoding], 1: [(6, prefill), *decoding]}


def test_own_width_is_where_a_separate_generation_stops(bundle: Path) -> None:
    """Hand-built outputs of two rows after a two-token prompt (eos 2, pad 3)."""
    tokenizer = _lm(bundle, "gpt2").tokenizer
    a, b, e, x = (tokenizer.encode(text, add_special_tokens=False)[0] for text in "abex")
    prompt = [1, 1]

    def width(rows: list[list[int]], stop: list[str], max_length: int = 20) -> int:
        output = torch.tensor([prompt + row for row in rows])
        return own_width(output, len(prompt), stop, tokenizer, [2], max_length)

    assert width([[a, 2, 3, 3, 3], [a, b, 2, 3, 3]], ["\n"]) == 2 + 3  # both rows ended by eos
    assert width([[e, a, a, a, a], [a, b, e, a, a]], ["e"]) == 2 + 3  # both met the stop
    assert width([[x, a, a, a, a], [a, b, 2, 3, 3]], ["x"]) == 2 + 5  # one each: no end
    assert width([[e, a, a, a, a], [a, b, 2, 3, 3]], ["e"]) == 2 + 3  # "<eos>" holds an e
    assert width([[e, a, a, a, a], [a, b, a, a, a]], ["e"], max_length=5) == 5  # the limit
    assert width([[a, b, a, a, a], [b, a, a, a, a]], ["x", "b"]) == 2 + 2  # one of two stops


def test_out_of_memory_splits_the_configurations_of_a_generation(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = _lm(bundle, "gemma2")
    separate = _separate(lm)
    real = HFLM._model_generate
    rows: list[int] = []

    def small_device(self: HFLM, context: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        rows.append(int(context.shape[0]))
        if context.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, context, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_model_generate", small_device)
    assert _shared(lm) == separate
    # batches of 3, 3 and 1 prompts: three copies, then one, then two, then one and one
    assert rows == [9, 3, 6, 3, 3] * 2 + [3]


def test_a_steering_error_in_a_shared_generation_falls_back_to_each_configuration_alone(
    bundle: Path,
) -> None:
    from saeval.errors import SteeringError

    lm = _lm(bundle, "gpt2")
    lm.set_scale(None)
    expected = lm.generate_until(_requests(), disable_tqdm=True)
    shared = SharedAnswers([None, float("nan")])
    with lm.sharing(shared):
        got = lm.generate_until(_requests(), disable_tqdm=True)
    assert shared.broken and not shared.generations and got == expected
    shared.finished(None)
    lm.set_scale(float("nan"))
    with lm.sharing(shared), pytest.raises(SteeringError, match="non-finite"):
        lm.generate_until(_requests(), disable_tqdm=True)


@pytest.mark.parametrize("mode", ["prompt", "generated"])
def test_position_limited_rows_generate_the_same_in_a_shared_generation(
    bundle: Path, mode: str
) -> None:
    """``prompt`` rows steer the prefill only, ``generated`` rows the decoding steps only:
    each copy of a shared generation is described as its configuration's own generation."""
    from saeval.spec.steer_file import SteerRow
    from saeval.steering.plan import plan_from_saes

    rows = [
        SteerRow(
            file="t.csv",
            line=2 + i,
            latent_idx=3 + i,
            coefficient=coefficient,
            sae_release="tiny",
            sae_id="",
            hook=hook,
            positions=mode,
        )
        for i, (hook, coefficient) in enumerate(zip(PASS_HOOKS, (1.5, -1.0), strict=True))
    ]
    plan = plan_from_saes(rows, {("tiny", ""): build_sae(seed=1)})
    lm = SteeredHFLM(pretrained=str(bundle / "gemma3_text"), plan=plan, device="cpu", batch_size=3)
    separate = _separate(lm)
    assert _shared(lm) == separate
    assert separate[2.0] != separate[None]


# ---- saeval run --------------------------------------------------------------------------

LONG_GEN_TASK = "tiny_gen_long"


def _write_long_generation_task(folder: Path) -> None:
    """A generation task of eight tokens at most, ending at a newline or a full stop."""
    import json

    import yaml
    from sae_builders import MC_QUESTIONS

    docs = [{"question": question, "answer": "dog"} for question in MC_QUESTIONS[:5]]
    data = folder / f"{LONG_GEN_TASK}.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    config = {
        "task": LONG_GEN_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{question}} Answer:",
        "doc_to_target": " {{answer}}",
        "generation_kwargs": {"until": ["\n", "."], "max_gen_toks": 8, "do_sample": False},
        "metric_list": [{"metric": "exact_match"}],
        "metadata": {"version": 1.0},
    }
    (folder / f"{LONG_GEN_TASK}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def _run(tiny_bundle: Path, tasks: Path, output: Path, *args: str) -> Path:

    command = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    command += ["--include-path", str(tasks), "--output", str(output), "--device", "cpu"]
    command += ["--tasks", LONG_GEN_TASK, "--kl-docs", "0", "--scale", "0.5,2", "--name", "r"]
    result = invoke(*command, *args)
    assert result.exit_code == 0, result.output
    return output / "r"


def _responses(run: Path) -> dict[str, list[tuple[int, Any]]]:
    import json

    found = {}
    for path in sorted(run.glob("*/samples_*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        found[path.parent.name] = [(r["doc_id"], r["resps"]) for r in records]
    return found


def test_saeval_run_generates_once_and_no_shared_prefix_generates_per_configuration(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    _write_long_generation_task(tasks)
    rows = batch_rows(monkeypatch, "_model_generate")
    separate = _run(tiny_bundle, tasks, tmp_path / "separate", "--no-shared-prefix")
    separate_rows, rows[:] = list(rows), []
    shared = _run(tiny_bundle, tasks, tmp_path / "shared")
    assert sum(separate_rows) == 3 * 5 and sum(rows) == 3 * 5  # five prompts, three copies
    assert len(rows) == len(separate_rows) // 3  # one generation for every configuration
    ours, theirs = _responses(shared), _responses(separate)
    assert sorted(ours) == ["baseline", "steered@0.5", "steered@2"] and ours == theirs
    assert ours["baseline"] != ours["steered@2"]


def test_sampled_generations_are_shared_too(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``do_sample: true`` goes through the shared generation (its random draws are its own)."""
    lm = _lm(bundle, "llama")
    rows = batch_rows(monkeypatch, "_model_generate")
    sampled = {"until": ["\n"], "max_gen_toks": 6, "do_sample": True, "temperature": 1.0}
    requests = [Instance("generate_until", {}, (p, dict(sampled)), idx=0) for p, _ in PROMPTS]
    answers = SharedAnswers(list(SCALES))
    texts = []
    for scale in SCALES:
        lm.set_scale(scale)
        with lm.sharing(answers):
            texts.append(lm.generate_until(requests, disable_tqdm=True))
        answers.finished(scale)
    assert rows == [9, 9, 3]  # batches of 3, 3 and 1 prompts, three copies each, once
    assert all(len(per_scale) == len(PROMPTS) for per_scale in texts)
