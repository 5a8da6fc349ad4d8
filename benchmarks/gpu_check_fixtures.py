"""The GPU check's fixtures, built offline: a random-initialised model with gemma-2-2b's
configuration and the tiny tokenizer, a tiny SAE at a middle layer, a steer file adding one of
its latents, two local multiple-choice tasks (a small warm-up and the measured one) and two
greedy generation tasks over the same questions (a small warm-up and the measured one).

On a GPU the model has all 26 layers in bfloat16. With ``--device cpu`` (the proof that the
check runs end to end) it keeps gemma-2-2b's widths but has 2 layers, a vocabulary of 2048 and
float32, so that it fits two CPU cores; the results say so.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WARM_TASK, BENCH_TASK = "gc_warm", "gc_bench"
GEN_WARM_TASK, GEN_TASK = "gc_warm_generate", "gc_generate"
GEN_TOKENS = 32  # max_gen_toks of the generation tasks (a random model rarely stops before)
# google/gemma-2-2b's config.json, except the token ids (the tiny tokenizer's).
GEMMA_2_2B: dict[str, Any] = {
    "model_type": "gemma2",
    "architectures": ["Gemma2ForCausalLM"],
    "vocab_size": 256000,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}
CHOICES = ("a loyal dog", "the capital of France", "one hundred degrees", "the lazy brown fox")


@dataclass(frozen=True)
class Profile:
    """What the check builds and measures on one kind of device."""

    device: str
    dtype: str
    layers: int
    vocab_size: int
    docs: int  # documents of the measured task (4 requests each)
    gen_docs: int  # prompts of the measured generation task
    warm_docs: int
    batch_size: int
    note: str

    @property
    def hook_layer(self) -> int:
        """The steered layer: the middle one."""
        return self.layers // 2

    def record(self) -> dict[str, Any]:
        """The profile as results fields."""
        return {**asdict(self), "hook_layer": self.hook_layer}


def profile_for(device: str) -> Profile:
    """gemma-2-2b in full on a GPU; a 2-layer, small-vocabulary float32 version on the CPU."""
    if device.startswith("cuda"):
        return Profile(
            device, "bfloat16", 26, 256000, 1024, 128, 64, 32, "gemma-2-2b configuration"
        )
    note = "CPU proof: gemma-2-2b widths, but 2 layers, vocabulary 2048, float32"
    return Profile(device, "float32", 2, 2048, 8, 4, 2, 8, note)


@dataclass(frozen=True)
class Fixtures:
    """Paths of everything the check runs on, and the measured task's request tokens."""

    model: Path
    steer: Path
    tasks: Path
    bench_tokens: int


def build(root: Path, profile: Profile) -> Fixtures:
    """Build the model, SAE, steer file and tasks under ``root``."""
    sys.path.insert(0, str(REPO / "tests"))
    from builders import train_tiny_tokenizer
    from sae_builders import build_sae, save_sae, write_steer_csv

    model = save_model(root / "model", profile)
    hook = f"blocks.{profile.hook_layer}.hook_resid_post"
    sae = build_sae("standard", d_in=GEMMA_2_2B["hidden_size"], d_sae=256, hook_name=hook)
    steer = write_steer_csv(root / "steer.csv", [(3, 4.0, save_sae(sae, root / "sae"), "")])
    tasks = root / "tasks"
    write_task(tasks, WARM_TASK, documents(profile.warm_docs))
    bench = documents(profile.docs)
    write_task(tasks, BENCH_TASK, bench)
    write_task(tasks, GEN_WARM_TASK, documents(profile.warm_docs), GENERATION)
    write_task(tasks, GEN_TASK, documents(profile.gen_docs), GENERATION)
    return Fixtures(model, steer, tasks, request_tokens(train_tiny_tokenizer(), bench))


def save_model(folder: Path, profile: Profile) -> Path:
    """A random-initialised gemma-2 of the profile's size and dtype, with the tiny tokenizer."""
    import torch
    from builders import train_tiny_tokenizer
    from transformers import AutoModelForCausalLM, Gemma2Config
    from transformers.utils import logging

    logging.disable_progress_bar()

    fields = {**GEMMA_2_2B, "num_hidden_layers": profile.layers, "vocab_size": profile.vocab_size}
    config = Gemma2Config(**{k: v for k, v in fields.items() if k != "model_type"})
    dtype = getattr(torch, profile.dtype)
    torch.manual_seed(0)
    with torch.device(profile.device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    train_tiny_tokenizer().save_pretrained(folder)
    del model
    if profile.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder


def documents(count: int) -> list[dict[str, Any]]:
    """Multiple-choice documents of mixed lengths, with four multi-token choices each (so that
    lm-eval evaluates every request as its own row: no one-token continuation is shared)."""
    sys.path.insert(0, str(REPO / "tests"))
    from sae_builders import MC_QUESTIONS, ROLLING_TEXTS

    docs = []
    for i in range(count):
        sentences = [ROLLING_TEXTS[(i + k) % len(ROLLING_TEXTS)] for k in range(1 + i % 4)]
        question = MC_QUESTIONS[i % len(MC_QUESTIONS)]
        text = " ".join([*sentences, question])
        docs.append({"question": text, "choices": list(CHOICES), "answer": i % len(CHOICES)})
    return docs


# The fields of the two kinds of task: multiple choice, and greedy generation of the answer up
# to a newline or ``GEN_TOKENS`` tokens.
MULTIPLE_CHOICE: dict[str, Any] = {
    "output_type": "multiple_choice",
    "doc_to_text": "{{question}} Answer:",
    "doc_to_choice": "{{choices}}",
    "doc_to_target": "{{answer}}",
    "metric_list": [{"metric": "acc"}],
}
GENERATION: dict[str, Any] = {
    "output_type": "generate_until",
    "doc_to_text": "{{question}} Answer:",
    "doc_to_target": " {{choices[answer]}}",
    "generation_kwargs": {"until": ["\n"], "max_gen_toks": GEN_TOKENS, "do_sample": False},
    "metric_list": [{"metric": "exact_match"}],
}


def write_task(
    folder: Path, name: str, docs: list[dict[str, Any]], kind: dict[str, Any] = MULTIPLE_CHOICE
) -> None:
    """An lm-eval task of ``kind`` (MULTIPLE_CHOICE or GENERATION) over its JSONL file."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        **kind,
        "metadata": {"version": 1.0},
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def request_tokens(tokenizer: Any, docs: list[dict[str, Any]]) -> int:
    """Tokens of every request of ``docs``: context plus continuation, as lm-eval encodes them
    (without the BOS token it may add)."""
    total = 0
    for doc in docs:
        context = len(tokenizer(f"{doc['question']} Answer:")["input_ids"])
        total += sum(context + len(tokenizer(f" {c}")["input_ids"]) for c in doc["choices"])
    return total
