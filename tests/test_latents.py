"""Latent statistics (`saeval latents`) against a direct sae_lens encode of the same activations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from builders import build_tiny_model, save_tiny_pretrained, train_tiny_tokenizer
from cli_checks import assert_one_line_error
from conftest import invoke
from sae_builders import build_sae, save_sae, write_steer_csv

from saeval.run.latents import measure_latents
from saeval.steering.latent_stats import Probe, read_latents, summarize

TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "A dog is a loyal animal.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Yes or no?",
    "The lazy dog sleeps.",
)
BOS = 1  # the tiny tokenizer's <bos> id; it does not add one itself


def _direct(
    model: torch.nn.Module, layer: int, sae: Any, docs: list[list[int]], skip: int
) -> tuple[np.ndarray, np.ndarray]:
    """One document at a time, no padding: a plain forward hook on decoder layer ``layer`` (its
    output is blocks.<layer>.hook_resid_post), then ``sae.encode``; positions from ``skip``."""
    captured: list[torch.Tensor] = []

    def hook(module: Any, args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = model.transformer.h[layer].register_forward_hook(hook)
    acts, norms = [], []
    try:
        with torch.no_grad():
            for doc in docs:
                captured.clear()
                model(torch.tensor([doc]))
                h = captured[0][0, skip:]
                acts.append(sae.encode(h).numpy())
                norms.append(h.norm(dim=-1).numpy())
    finally:
        handle.remove()
    return np.concatenate(acts).astype(float), np.concatenate(norms).astype(float)


def _docs(with_bos: bool) -> list[list[int]]:
    tokenizer = train_tiny_tokenizer()
    docs = [tokenizer(text)["input_ids"] for text in TEXTS]
    return [[BOS, *doc] for doc in docs] if with_bos else docs


@pytest.mark.parametrize("kind", ["standard", "jumprelu", "topk"])
@pytest.mark.parametrize("with_bos", [False, True])
def test_statistics_equal_a_direct_encode(kind: str, with_bos: bool) -> None:
    model = build_tiny_model("gpt2").eval()
    sae = build_sae(kind, seed=2, hook_name="blocks.0.hook_resid_post")
    docs = _docs(with_bos)
    latents = tuple(range(0, 128, 4))
    probe = Probe(sae, "blocks.0.hook_resid_post", latents)
    (found,) = read_latents(model, docs, [probe], bos_id=BOS, batch_size=2, pad_id=3)
    decode = train_tiny_tokenizer().decode
    stats = summarize(probe, found, docs, decode, bos_id=BOS, top=2)
    every, norms = _direct(model, 0, sae, docs, 1 if with_bos else 0)
    for latent, got in zip(latents, stats, strict=True):
        acts = every[:, latent]
        assert got.latent_idx == latent and got.tokens == acts.size
        assert got.tokens == sum(len(doc) for doc in docs) - (len(docs) if with_bos else 0)
        assert got.max_activation == pytest.approx(acts.max(), rel=1e-5, abs=1e-6)
        assert got.p99 == pytest.approx(np.percentile(acts, 99), rel=1e-5, abs=1e-6)
        assert got.frequency == pytest.approx(np.mean(acts > 0))
        assert got.mean_h_norm == pytest.approx(norms.mean(), rel=1e-5)
        assert got.w_dec_norm == pytest.approx(float(sae.W_dec[latent].detach().norm()))
        assert got.coefficient_2x_max == pytest.approx(2 * acts.max(), rel=1e-5, abs=2e-6)
        if acts.max() <= 0:
            assert got.snippets == ()
            continue
        activations = [snippet.activation for snippet in got.snippets]
        assert 1 <= len(activations) <= 2 and activations == sorted(activations, reverse=True)
        strongest = got.snippets[0]
        assert strongest.activation == pytest.approx(acts.max(), rel=1e-5, abs=1e-6)
        token = docs[strongest.text_index][strongest.position]
        assert strongest.token == decode([token])
        assert not (with_bos and strongest.position == 0)
    assert sum(0 < got.frequency < 1 for got in stats) >= 2  # latents that fire on some tokens


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("latents")
    save_tiny_pretrained("gpt2", root / "model")
    save_sae(build_sae("standard", seed=1, hook_name="blocks.0.hook_resid_post"), root / "sae")
    write_steer_csv(root / "steer.csv", [(3, 8.0, root / "sae", ""), (2, -4.0, root / "sae", "")])
    (root / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return root


def test_cli_json_prints_the_library_numbers_of_each_row(bundle: Path) -> None:
    args = ["latents", str(bundle / "steer.csv"), "--model", str(bundle / "model")]
    result = invoke(*args, "--texts", str(bundle / "texts.jsonl"), "--format", "json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    report = measure_latents(
        [bundle / "steer.csv"], list(TEXTS), model=str(bundle / "model"), dtype="float32"
    )
    assert [entry["latent_idx"] for entry in entries] == [3, 2]
    assert [entry["coefficient"] for entry in entries] == [8.0, -4.0]
    for entry, row in zip(entries, report.rows, strict=True):
        assert entry["max_activation"] == pytest.approx(row.stats.max_activation)
        assert entry["p99"] == pytest.approx(row.stats.p99)
        assert entry["frequency"] == pytest.approx(row.stats.frequency)
        assert entry["coefficient_2x_max"] == pytest.approx(2 * row.stats.max_activation)
        assert entry["hook_name"] == "blocks.0.hook_resid_post" and len(entry["snippets"]) == 3


def test_cli_table_fits_80_columns(bundle: Path) -> None:
    args = ["latents", str(bundle / "steer.csv"), "--model", str(bundle / "model")]
    result = invoke(*args, "--texts", str(bundle / "texts.jsonl"), columns=80)
    assert result.exit_code == 0, result.output
    assert "latent 3 (" in result.stdout and "fires most on:" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_bad_texts_file_is_one_error_line(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": 1}\n')
    args = ["latents", str(bundle / "steer.csv"), "--model", str(bundle / "model")]
    result = invoke(*args, "--texts", str(bad))
    assert_one_line_error(result, f"{bad}:2")
