"""Tiny sae_lens SAEs and tiny local lm-eval tasks, built offline for tests.

``build_sae`` makes a StandardSAE, JumpReLUSAE or TopKSAE with random weights; ``dual_sae`` one
whose decoder rows are orthonormal and whose encoder is their transpose, so that clamping a
latent and re-encoding gives back the target exactly. ``save_sae`` writes the folder
``SAE.load_from_disk`` reads. ``write_tasks`` writes three lm-eval tasks (multiple_choice,
generate_until, loglikelihood_rolling) as YAML + JSONL with absolute ``data_files`` paths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae_lens import SAE

KINDS = ("standard", "jumprelu", "topk")
HOOK_NAME = "blocks.1.hook_resid_post"
MC_TASK = "tiny_mc"
GEN_TASK = "tiny_gen"
ROLLING_TASK = "tiny_rolling"


def build_sae(
    kind: str = "standard",
    *,
    d_in: int = 64,
    d_sae: int = 128,
    hook_name: str = HOOK_NAME,
    seed: int = 0,
    **cfg: Any,
) -> SAE:
    """A tiny sae_lens SAE of ``kind`` with random weights (biases and thresholds included)."""
    import torch
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    classes = {
        "standard": (StandardSAE, StandardSAEConfig, {}),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
        "topk": (TopKSAE, TopKSAEConfig, {"k": 8}),
    }
    sae_class, cfg_class, defaults = classes[kind]
    metadata = SAEMetadata(hook_name=hook_name, model_name="tiny")
    sae = sae_class(cfg_class(d_in=d_in, d_sae=d_sae, metadata=metadata, **{**defaults, **cfg}))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sae.named_parameters():
            values = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(values.abs() * 0.1 if name == "threshold" else values * 0.3)
    return sae.eval()


def dual_sae(kind: str = "standard", *, d_in: int = 64, d_sae: int = 32, seed: int = 0) -> SAE:
    """An SAE with orthonormal decoder rows, ``W_enc = W_dec.T`` and large encoder biases.

    Then ``f_i(h + (c - f_i(h)) W_dec[i]) = c`` (up to rounding) for every active latent ``i``.
    Every latent is active for small inputs except in a TopK SAE (``k = d_sae // 2``), where
    ``b_enc`` decreases with the index so that the first half wins.
    """
    import torch

    extra = {"k": d_sae // 2} if kind == "topk" else {}
    sae = build_sae(kind, d_in=d_in, d_sae=d_sae, seed=seed, **extra)
    generator = torch.Generator().manual_seed(seed + 1)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_sae, generator=generator))
    with torch.no_grad():
        sae.W_dec.copy_(q.T)
        sae.W_enc.copy_(q)
        sae.b_enc.copy_(100.0 + torch.arange(d_sae, 0, -1))  # far above every threshold
        if hasattr(sae, "threshold"):
            sae.threshold.fill_(0.5)
    return sae


def save_sae(sae: SAE, directory: str | Path) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` with sae_lens's ``save_model``."""
    path = Path(directory)
    sae.save_model(path)
    return path


def write_steer_csv(
    path: Path, rows: Sequence[Sequence[Any]], *, extra: Sequence[str] = ()
) -> Path:
    """A seed-dialect steer.csv; each row is (latent_idx, coefficient, release, sae_id, *extra)."""
    header = ["latent_idx", "steering_coefficient", "sae_release", "sae_id", *extra]
    lines = [",".join(header), *(",".join(str(cell) for cell in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- tiny lm-eval tasks --------------------------------------------------------------------

CHOICES = ("dog", "and", "is", "of")  # single tokens of the tiny tokenizer (" dog", ...)
MC_QUESTIONS = (
    "Question: Which animal is a loyal pet?",
    "Question: Which animal jumps over the fox?",
    "Question: Which one is common in many homes?",
    "Question: What did she read a book about?",
    "Question: Which animal sets in the west?",
    "Question: What is the capital of France?",
    "Question: How many legs does a spider have?",
    "Question: What color is the sky?",
)
ROLLING_TEXTS = (  # dog-heavy, so that steering towards " dog" makes them more likely
    "The dog is a dog and the dog is a loyal dog.",
    "A dog, a dog and a dog: the dog of the dog.",
    "Is the dog in the house or is the dog in the garden?",
    "The answer is dog. The answer is dog. The answer is dog.",
)


def mc_docs() -> list[dict[str, Any]]:
    """Multiple-choice docs whose gold answer is always ``dog``, at rotating positions."""
    docs = []
    for i, question in enumerate(MC_QUESTIONS):
        choices = list(CHOICES[1:])
        choices.insert(i % len(CHOICES), "dog")
        docs.append({"question": question, "choices": choices, "answer": choices.index("dog")})
    return docs


def write_tasks(directory: str | Path) -> Path:
    """Write the three tiny tasks (``tiny_mc``, ``tiny_gen``, ``tiny_rolling``) into a folder."""
    folder = Path(directory).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    gen_docs = [{"question": q, "answer": "dog"} for q in MC_QUESTIONS[:4]]
    rolling_docs = [{"text": text} for text in ROLLING_TEXTS]
    _write_jsonl(folder / f"{MC_TASK}.jsonl", mc_docs())
    _write_jsonl(folder / f"{GEN_TASK}.jsonl", gen_docs)
    _write_jsonl(folder / f"{ROLLING_TASK}.jsonl", rolling_docs)
    _write_task(
        folder,
        MC_TASK,
        output_type="multiple_choice",
        doc_to_text="{{question}} Answer:",
        doc_to_choice="{{choices}}",
        doc_to_target="{{answer}}",
        target_delimiter=" ",
        metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}],
    )
    _write_task(
        folder,
        GEN_TASK,
        output_type="generate_until",
        doc_to_text="{{question}} Answer:",
        doc_to_target=" {{answer}}",
        generation_kwargs={"until": ["\n"], "max_gen_toks": 1, "do_sample": False},
        metric_list=[{"metric": "exact_match"}],
    )
    _write_task(
        folder,
        ROLLING_TASK,
        output_type="loglikelihood_rolling",
        doc_to_text="",
        doc_to_target="{{text}}",
        metric_list=[{"metric": name} for name in ("word_perplexity", "bits_per_byte")],
    )
    return folder


def _write_jsonl(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")


def _write_task(folder: Path, name: str, **fields: Any) -> None:
    """One task YAML reading ``<folder>/<name>.jsonl`` as its test split."""
    import yaml

    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / f"{name}.jsonl")}},
        "test_split": "test",
        **fields,
        "metadata": {"version": 1.0},
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
