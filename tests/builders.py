"""Tiny Hugging Face models and a tiny tokenizer, built offline for tests.

Every architecture saeval maps hook names for has a config here with d_model 64, 4 heads and
2-3 layers, small enough to build in milliseconds. ``save_tiny_pretrained`` writes a model and
tokenizer folder that ``AutoModelForCausalLM.from_pretrained`` and lm-eval's ``HFLM`` load by path.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

VOCAB_SIZE = 320
D_MODEL = 64
N_HEADS = 4
D_HEAD = D_MODEL // N_HEADS
MAX_POSITIONS = 256
UNK, BOS, EOS, PAD = "<unk>", "<bos>", "<eos>", "<pad>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD)  # ids 0, 1, 2, 3
ARCHS = (
    "gpt2",
    "gpt_neox",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "gemma3",  # multimodal Gemma 3 (4B and up), loaded as Gemma3ForConditionalGeneration
)

_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "A dog is a loyal animal and a cat is an independent one.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The sun rises in the east and sets in the west.",
    "Question: What color is the sky? Answer: blue.",
    "Question: How many legs does a spider have? Answer: eight.",
    "Cats, dogs, birds and fish are common pets in many homes.",
    "She read a book about the history of science and mathematics.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "The answer is A. The answer is B. The answer is C. The answer is D.",
    "Yes or no? True or false? Positive or negative?",
)

_TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
}

_COMMON: dict[str, dict[str, Any]] = {
    "llama": {},
    "mistral": {"sliding_window": None},
    "qwen2": {},
    "qwen3": {"head_dim": D_HEAD},
    "gemma2": {
        "head_dim": D_HEAD,
        "query_pre_attn_scalar": D_HEAD,
        "sliding_window": 4,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    },
    "gemma3_text": {
        "head_dim": D_HEAD,
        "query_pre_attn_scalar": D_HEAD,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    },
}


def tiny_config(arch: str, **overrides: Any) -> PretrainedConfig:
    """A tiny config for ``arch`` (d_model 64, 4 heads, 2-3 layers, vocabulary 320).

    For the multimodal ``gemma3`` the overrides go to its text config; its vision tower is tiny too.
    """
    from transformers import AutoConfig

    if arch == "gemma3":
        return AutoConfig.for_model(
            "gemma3",
            text_config={**_text_fields("gemma3_text"), **overrides},
            vision_config=_TINY_VISION,
            mm_tokens_per_image=4,
        )
    return AutoConfig.for_model(arch, **{**_text_fields(arch), **overrides})


def _text_fields(arch: str) -> dict[str, Any]:
    """Config fields of a tiny text model of ``arch``."""
    ids = {"vocab_size": VOCAB_SIZE, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
    if arch == "gpt2":
        return {
            **ids,
            "n_embd": D_MODEL,
            "n_layer": 2,
            "n_head": N_HEADS,
            "n_positions": MAX_POSITIONS,
            "n_ctx": MAX_POSITIONS,  # real GPT-2 configs carry it; TransformerLens reads it
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
        }
    if arch == "gpt_neox":
        return {
            **ids,
            "hidden_size": D_MODEL,
            "num_hidden_layers": 2,
            "num_attention_heads": N_HEADS,
            "intermediate_size": 4 * D_MODEL,
            "max_position_embeddings": MAX_POSITIONS,
            "rotary_pct": 0.25,
            "use_parallel_residual": True,
        }
    if arch in _COMMON:
        return {
            **ids,
            "hidden_size": D_MODEL,
            "intermediate_size": 2 * D_MODEL,
            "num_hidden_layers": 3 if arch == "gemma3_text" else 2,
            "num_attention_heads": N_HEADS,
            "num_key_value_heads": 2,
            "max_position_embeddings": MAX_POSITIONS,
            **_COMMON[arch],
        }
    raise ValueError(f"no tiny config for {arch!r}; known: {', '.join(ARCHS)}")


def build_tiny_model(arch: str, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A randomly initialised tiny causal LM of ``arch`` in eval mode, float32, eager attention."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        tiny_config(arch, **overrides), attn_implementation="eager", dtype=torch.float32
    )
    model.config.architectures = [type(model).__name__]  # as in a saved checkpoint
    return model.eval()


@functools.cache
def _tokenizer_json() -> str:
    """Train a byte-level BPE tokenizer on the built-in corpus once; its JSON serialisation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    return tokenizer.to_str()


def train_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (vocabulary <= 320) with bos, eos, pad and unk tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_POSITIONS,
    )


def save_tiny_pretrained(arch: str, directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``arch`` model and the tiny tokenizer into ``directory`` (loadable offline)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    build_tiny_model(arch, seed=seed).save_pretrained(path)
    train_tiny_tokenizer().save_pretrained(path)
    return path
