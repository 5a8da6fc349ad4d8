"""Generation measures score the text the model generated, as the token ids it produced."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import invoke
from transformers import AutoModelForCausalLM, AutoTokenizer

QUESTIONS = ["Is a dog loyal?", "What is the capital of France?", "Yes or no?", "The fox"]
GEN_TOKENS = 6
STRIP = [{"function": "regex", "regex_pattern": r"(\w)"}, {"function": "take_first"}]


def _write_task(folder: Path) -> None:
    """A generate_until task whose filter strips the answer (so filtered_resps != resps)."""
    folder.mkdir()
    data = folder / "gen_strip.jsonl"
    data.write_text("".join(json.dumps({"q": q, "a": "dog"}) + "\n" for q in QUESTIONS))
    config: dict[str, Any] = {
        "task": "gen_strip",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{q}} Answer:",
        "doc_to_target": "{{a}}",
        "generation_kwargs": {"until": ["@@@"], "max_gen_toks": GEN_TOKENS, "do_sample": False},
        "filter_list": [{"name": "strip", "filter": STRIP}],
        "metric_list": [{"metric": "exact_match"}],
        "metadata": {"version": 1.0},
    }
    (folder / "gen_strip.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _direct(model_dir: Path, prompt: str) -> tuple[float, int]:
    """Greedy generation with transformers, then one plain forward pass over prompt + the exact
    generated ids: (perplexity of the generated ids, their count)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=GEN_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        generated = out[0, ids.shape[1] :].tolist()
        if tokenizer.eos_token_id in generated:
            generated = generated[: generated.index(tokenizer.eos_token_id)]
        log_p = model(out[:, : ids.shape[1] + len(generated)]).logits.log_softmax(-1)[0]
    start = ids.shape[1] - 1
    picked = [float(log_p[start + i, token]) for i, token in enumerate(generated)]
    return math.exp(-sum(picked) / len(picked)), len(generated)


def test_gen_ppl_is_the_perplexity_of_the_generated_ids(tiny_bundle: Path, tmp_path: Path) -> None:
    """The baseline's gen_ppl equals a direct forward pass over the ids greedy generation
    produced (not the filtered answer, not a re-tokenisation of the decoded text)."""
    _write_task(tmp_path / "tasks")
    args = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    args += ["--include-path", str(tmp_path / "tasks"), "--output", str(tmp_path / "out")]
    args += ["--tasks", "gen_strip", "--scale", "1", "--device", "cpu", "--name", "r"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "out" / "r"
    (samples,) = (run / "baseline").glob("**/samples_gen_strip*.jsonl")
    records = {json.loads(line)["doc_id"]: json.loads(line) for line in samples.open()}
    assert any(r["filtered_resps"][0] != r["resps"][0][0] for r in records.values())
    (effects,) = (run / "baseline").glob("**/side_effects_gen_strip_*.json")
    rows = json.loads(effects.read_text())["generation"]
    assert len(rows) == len(QUESTIONS)
    for row in rows:
        prompt = records[row["doc_id"]]["arguments"]["gen_args_0"]["arg_0"]
        ppl, count = _direct(tiny_bundle / "model", prompt)
        assert row["gen_tokens"] == count
        assert row["gen_ppl"] == pytest.approx(ppl, rel=1e-5)


def _nll_ppl(model: torch.nn.Module, prompt: list[int], generated: list[int]) -> float:
    """Perplexity of ``generated`` after ``prompt``: one plain forward pass."""
    with torch.no_grad():
        log_p = model(torch.tensor([prompt + generated])).logits.log_softmax(-1)[0]
    picked = [float(log_p[len(prompt) - 1 + i, t]) for i, t in enumerate(generated)]
    return math.exp(-sum(picked) / len(picked))


def test_recorded_ids_are_scored_as_produced_up_to_the_stop(tiny_bundle: Path) -> None:
    """Ids a model produced that its tokenizer would merge differently (' dog' spelled as four
    tokens) are scored as produced, up to the end of lm-eval's text (the stop sequence, EOS and
    padding after it are not); without recorded ids, the text tokenised on its own."""
    from saeval.run.side_effects import measure
    from saeval.steering.lm_eval_model import SteeredHFLM

    steer = str(tiny_bundle / "steer.csv")
    lm = SteeredHFLM(str(tiny_bundle / "model"), steer, device="cpu", batch_size=2, scale=None)
    prompt_text = "The fox Answer:"
    prompt = lm.tok_encode(prompt_text)
    spelled = [lm.tokenizer.convert_tokens_to_ids(t) for t in ("Ġ", "d", "o", "g")]
    newline = lm.tok_encode("\n", add_special_tokens=False)
    eos = lm.tokenizer.eos_token_id
    arguments = {"arg_0": prompt_text, "arg_1": {"until": ["\n"], "max_gen_toks": 8}}
    record = {"doc_id": 0, "arguments": {"gen_args_0": arguments},
              "resps": [[" dog"]], "filtered_resps": ["dog"]}  # fmt: skip
    samples = json.dumps(record) + "\n"
    produced = {tuple(prompt): [[*spelled, *newline, eos, eos]]}
    (row,) = measure(lm, samples, None, 0, produced=produced)["generation"]
    assert row["gen_tokens"] == 4
    assert row["gen_ppl"] == pytest.approx(_nll_ppl(lm.model, prompt, spelled), rel=1e-5)
    (fallback,) = measure(lm, samples, None, 0, produced={})["generation"]
    retokenised = lm.tok_encode(" dog", add_special_tokens=False)
    assert fallback["gen_tokens"] == len(retokenised) != 4
    assert fallback["gen_ppl"] == pytest.approx(_nll_ppl(lm.model, prompt, retokenised), rel=1e-5)
