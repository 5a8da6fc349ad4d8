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
from builders import save_tiny_pretrained
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from sae_builders import build_sae, save_sae, write_steer_csv

from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.shared_generation import own_width
from saeval.steering.shared_prefix import SharedAnswers

SCALES: tuple[float | None, ...] = (None, 0.5, 2.0)
ARCHS = ("gpt2", "llama", "gemma2", "gemma3_text")
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")  # two layers; layer 0 shared
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
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared-generation")
    sae = save_sae(build_sae(seed=1), root / "sae")
    rows = [(3, 1.5, sae, "", HOOKS[0]), (5, -1.0, sae, "", HOOKS[1])]
    write_steer_csv(root / "steer.csv", rows, extra=["hook"])
    for arch in ARCHS:
        save_tiny_pretrained(arch, root / arch)
    return root


def _lm(bundle: Path, arch: str, **kwargs: Any) -> SteeredHFLM:
    options = {"device": "cpu", "batch_size": 3, **kwargs}
    return SteeredHFLM(
        pretrained=str(bundle / arch), steer_path=str(bundle / "steer.csv"), **options
    )


def _requests() -> list[Instance]:
    return [
        Instance("generate_until", {}, (prompt, dict(kwargs)), idx=0)
        for prompt, kwargs in PROMPTS
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


def _hf_generate_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch rows of every generation through HFLM's ``_model_generate``."""
    rows: list[int] = []
    real = HFLM._model_generate

    def counted(self: HFLM, context: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        rows.append(int(context.shape[0]))
        return real(self, context, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_model_generate", counted)
    return rows


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


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_generations_equal_separate_generations(
    arch: str, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = _lm(bundle, arch)
    outputs = _generations(monkeypatch)
    rows = _hf_generate_rows(monkeypatch)
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
