"""A TransformerLens model built offline from a tiny Hugging Face model's weights: the
independent reference of tests/test_hooks.py (hook points) and tests/test_against_fork.py (the
``sae_steered_beta`` fork's ``HookedSAETransformer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedModel


def transformer_lens_model(
    model: PreTrainedModel, directory: Path, cls: type[Any] | None = None
) -> Any:
    """A HookedTransformer (or subclass ``cls``, e.g. HookedSAETransformer) with ``model``'s
    weights, unprocessed."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    if model.config.model_type.startswith("gemma"):
        cfg = HookedTransformerConfig.from_dict(gemma_cfg(model))
    else:
        model.config.save_pretrained(directory)
        cfg = loading.get_pretrained_model_config(str(directory), device="cpu")
        cfg.tokenizer_name = None  # the reference runs on token ids
    state_dict = loading.get_pretrained_state_dict(str(directory), cfg, hf_model=model)
    tl_model = (cls or HookedTransformer)(cfg, move_to_device=False)
    tl_model.load_and_process_state_dict(
        state_dict,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return tl_model.eval()


def gemma_cfg(model: PreTrainedModel) -> dict[str, Any]:
    """TransformerLens's Gemma-2/3 config fields, filled from a tiny HF config."""
    config = model.config.get_text_config()
    gemma3 = config.model_type == "gemma3_text"
    attn_types = ["local" if t == "sliding_attention" else "global" for t in config.layer_types]
    cfg: dict[str, Any] = {
        "d_model": config.hidden_size,
        "d_head": config.head_dim,
        "n_heads": config.num_attention_heads,
        "n_key_value_heads": config.num_key_value_heads,
        "d_mlp": config.intermediate_size,
        "n_layers": config.num_hidden_layers,
        "n_ctx": config.max_position_embeddings,
        "eps": config.rms_norm_eps,
        "d_vocab": config.vocab_size,
        "act_fn": config.hidden_activation,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_base": 1_000_000 if gemma3 else 10_000.0,
        "use_attn_scale": True,
        "window_size": config.sliding_window,
        "use_local_attn": True,
        "attn_types": attn_types,
        "gated_mlp": True,
        "final_rms": True,
        "use_normalization_before_and_after": True,
        "original_architecture": type(model).__name__,
        "device": "cpu",
        "init_weights": False,
    }
    if gemma3:
        cfg.update(rotary_base_local=10_000, use_qk_norm=True)
    else:
        cfg.update(
            attn_scores_soft_cap=config.attn_logit_softcapping,
            output_logits_soft_cap=config.final_logit_softcapping,
        )
    return cfg
