"""The demo SAE: a sae_lens `StandardSAE` on the demo model whose first latents are concept
directions. It is built, not trained: it shows what steering does, not what an SAE learned.

Construction (deterministic; `ALGORITHM_VERSION` names it):

- For each concept (dogs, France, sadness; sentences in `data/concepts/`), the direction is
  the difference between the mean residual activation at the SAE's hook point (the output of
  one decoder layer) over the concept's sentences and over the neutral sentences. Means are
  taken over every token except BOS, whose residual norm is ~15x a normal token's.
- `W_dec` rows are UNIT vectors: latent i is concept i for i < len(CONCEPTS), the rest are
  seeded random unit directions (so the file is a full-width SAE). A steering coefficient is
  therefore in residual-norm units; each concept's measured ||d|| is in `latents.json`, so a
  coefficient of k * ||d|| adds k times the measured concept shift.
- `W_enc = W_dec.T`, `b_dec = 0`, `b_enc = -(neutral_mean @ W_enc)`: latent i reads the
  projection of the residual on direction i relative to neutral text, so it is ~0 on neutral
  tokens and ~||d_i|| on average over the concept's tokens. Clamping latent i to c sets that
  excess to c (and ablating removes it) instead of fighting the large baseline projection.

The folder (`cfg.json`, `sae_weights.safetensors`, `latents.json`) lives in the saeval cache
and is rebuilt only when missing or when its build stamp (algorithm version, data hash,
layer, width, seed) changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.demo.paths import (
    DATA_DIR,
    DEMO_LAYER,
    DEMO_MODEL_ID,
    DEMO_SAE_ID,
    cache_root,
    publish_dir,
)
from saeval.steering.module_hooks import ModuleHook, registered

if TYPE_CHECKING:
    import torch
    from sae_lens import StandardSAE

ALGORITHM_VERSION = 1
CONCEPTS = ("dogs", "france", "sadness")
NEUTRAL = "neutral"
D_SAE = 4096
SEED = 0
LATENTS_FILE = "latents.json"
CONCEPTS_DIR = DATA_DIR / "concepts"


@dataclass(frozen=True)
class ConceptLatent:
    """One concept latent of the demo SAE: its index, name and measured direction norm."""

    index: int
    name: str
    norm: float


def demo_sae_dir() -> Path:
    """Return the cached demo SAE folder (sae_lens format), building it when missing or stale."""
    target = cache_root() / "sae" / DEMO_SAE_ID
    stamp = build_stamp(DEMO_LAYER, D_SAE, SEED)
    if read_stamp(target) == stamp:
        return target
    model, tokenizer = _load_demo_model()

    def build(out_dir: Path) -> None:
        build_demo_sae(model, tokenizer, out_dir, layer=DEMO_LAYER, d_sae=D_SAE, seed=SEED)

    return publish_dir(target, build, keep_existing=False)


def _load_demo_model() -> tuple[Any, Any]:
    """Load the demo model and tokenizer in float32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from saeval.demo.model import demo_model_dir

    model_dir = demo_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.eval(), tokenizer


def concept_sentences() -> dict[str, list[str]]:
    """The shipped sentences per concept, plus the neutral ones under `NEUTRAL`."""
    return {
        name: (CONCEPTS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        for name in (*CONCEPTS, NEUTRAL)
    }


def build_stamp(layer: int, d_sae: int, seed: int) -> dict[str, Any]:
    """What determines the demo SAE: a different stamp means the cached folder is stale."""
    digest = hashlib.sha256()
    for name, sentences in concept_sentences().items():
        digest.update(json.dumps([name, sentences]).encode())
    return {
        "algorithm_version": ALGORITHM_VERSION,
        "data_sha256": digest.hexdigest(),
        "layer": layer,
        "d_sae": d_sae,
        "seed": seed,
    }


def read_stamp(sae_dir: Path) -> dict[str, Any] | None:
    """The build stamp stored in an SAE folder, or None when the folder is absent or broken."""
    try:
        stamp: dict[str, Any] = json.loads((sae_dir / LATENTS_FILE).read_text())["build"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stamp


def read_latents(sae_dir: Path) -> list[ConceptLatent]:
    """The concept latents recorded in an SAE folder's `latents.json`."""
    data = json.loads((sae_dir / LATENTS_FILE).read_text())
    return [ConceptLatent(**latent) for latent in data["latents"]]


def build_demo_sae(
    model: Any, tokenizer: Any, out_dir: Path, *, layer: int, d_sae: int, seed: int
) -> list[ConceptLatent]:
    """Measure the concept directions on `model` at `layer` and save the demo SAE to `out_dir`."""
    sentences = concept_sentences()
    neutral_mean = mean_activation(model, tokenizer, layer, sentences[NEUTRAL])
    shifts = [
        mean_activation(model, tokenizer, layer, sentences[name]) - neutral_mean
        for name in CONCEPTS
    ]
    sae = assemble_sae(shifts, neutral_mean, layer=layer, d_sae=d_sae, seed=seed)
    sae.save_model(out_dir)
    latents = [
        ConceptLatent(index=i, name=name, norm=round(float(shift.norm()), 3))
        for i, (name, shift) in enumerate(zip(CONCEPTS, shifts, strict=True))
    ]
    record = {
        "note": "demo SAE built from concept directions, not trained",
        "model_name": DEMO_MODEL_ID,
        "hook_name": f"blocks.{layer}.hook_resid_post",
        "build": build_stamp(layer, d_sae, seed),
        "latents": [asdict(latent) for latent in latents],
    }
    (out_dir / LATENTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return latents


def mean_activation(
    model: Any, tokenizer: Any, layer: int, sentences: list[str], batch_size: int = 16
) -> torch.Tensor:
    """Mean output of decoder layer `layer` over all non-BOS, non-padding tokens of `sentences`."""

    total: torch.Tensor | None = None
    count = 0
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(sentences[start : start + batch_size], padding=True, return_tensors="pt")
        keep = batch["attention_mask"].bool()
        if tokenizer.bos_token_id is not None:
            keep &= batch["input_ids"] != tokenizer.bos_token_id
        acts = layer_output(model, layer, batch["input_ids"], batch["attention_mask"])
        batch_sum = acts[keep].sum(dim=0)
        total = batch_sum if total is None else total + batch_sum
        count += int(keep.sum())
    if total is None or count == 0:
        raise ValueError("no tokens to average over")
    return total / count


def layer_output(
    model: Any, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The residual stream after decoder layer `layer` (TransformerLens `hook_resid_post`)."""
    import torch

    decoder = model.get_decoder()
    captured: list[torch.Tensor] = []

    def capture(_module: Any, _inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    with torch.no_grad(), registered(ModuleHook(decoder.layers[layer], capture)):
        decoder(input_ids=input_ids, attention_mask=attention_mask)
    return captured[0].float()


def assemble_sae(
    shifts: list[torch.Tensor], neutral_mean: torch.Tensor, *, layer: int, d_sae: int, seed: int
) -> StandardSAE:
    """A StandardSAE whose first decoder rows are the unit concept shifts, the rest random."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    d_in = neutral_mean.shape[0]
    if not 0 < len(shifts) <= d_sae:
        raise ValueError(f"need between 1 and d_sae={d_sae} concept directions")
    generator = torch.Generator().manual_seed(seed)
    random_rows = torch.randn(d_sae - len(shifts), d_in, generator=generator)
    W_dec = torch.cat([torch.stack(shifts), random_rows])
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    cfg = StandardSAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        metadata=SAEMetadata(
            hook_name=f"blocks.{layer}.hook_resid_post",
            model_name=DEMO_MODEL_ID,
            hook_head_index=None,
            prepend_bos=True,
            model_from_pretrained_kwargs={},
        ),
    )
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(W_dec)
        sae.W_enc.copy_(W_dec.T)
        sae.b_enc.copy_(-(neutral_mean @ W_dec.T))
        sae.b_dec.zero_()
    return sae
