"""TransformerLens hook names and the Hugging Face modules that hold them, per architecture.

sae_lens stores an SAE's hook point as a TransformerLens name (``blocks.6.hook_resid_post``).
This table says, for each supported ``config.model_type``, which decoder-layer submodule's input
or output is that activation; ``saeval.steering.hooks`` installs the PyTorch hooks there. The
table is pure data, so ``saeval validate`` checks hook names offline. Each mapping is checked
against TransformerLens on tiny models in ``tests/test_hooks.py``.

``blocks.L.attn.hook_z`` is the input of the attention output projection, so its heads are
flattened: shape ``(batch, pos, n_heads * d_head)``; an SAE trained on ``hook_z`` has
``d_in = n_heads * d_head``. A hook name that does not start with ``blocks.`` is taken as a
Hugging Face module name, as in lm-eval's ``steered`` model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from saeval.errors import SteeringError

Side = Literal["input", "output"]

HOOK_KINDS = (
    "hook_resid_pre",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "attn.hook_z",
)

TL_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass(frozen=True)
class Family:
    """Where one architecture keeps its layers and, per hook kind, which submodule holds it."""

    layers: str  # path of the decoder-layer ModuleList under model.base_model
    sites: Mapping[str, tuple[str, Side]]  # hook kind -> (submodule path under a layer, side)


def _family(attn: str, mlp: str, o_proj: str, layers: str = "layers") -> Family:
    """A family whose resid hooks are a decoder layer's input and output."""
    return Family(
        layers=layers,
        sites={
            "hook_resid_pre": ("", "input"),
            "hook_resid_post": ("", "output"),
            "hook_attn_out": (attn, "output"),
            "hook_mlp_out": (mlp, "output"),
            "attn.hook_z": (o_proj, "input"),
        },
    )


_LLAMA_LIKE = _family("self_attn", "mlp", "self_attn.o_proj")
_GEMMA_LIKE = _family("post_attention_layernorm", "post_feedforward_layernorm", "self_attn.o_proj")

FAMILIES: dict[str, Family] = {
    "gpt2": _family("attn", "mlp", "attn.c_proj", layers="h"),
    # Pythia runs attention and MLP in parallel; TransformerLens's hook_attn_out and
    # hook_mlp_out are still the two branch outputs (attention after its dense projection).
    "gpt_neox": _family("attention", "mlp", "attention.dense"),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma2": _GEMMA_LIKE,
    "gemma3_text": _GEMMA_LIKE,
    # Multimodal Gemma 3 (4B and up): the text decoder sits under the language model.
    "gemma3": _family(
        "post_attention_layernorm",
        "post_feedforward_layernorm",
        "self_attn.o_proj",
        layers="language_model.layers",
    ),
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(FAMILIES)
_TEMPLATES = tuple(f"blocks.{{layer}}.{kind}" for kind in HOOK_KINDS)


def supported_hooks(model_type: str) -> tuple[str, ...]:
    """Hook-name templates (``blocks.{layer}.hook_resid_post``) supported for a model type."""
    if model_type not in FAMILIES:
        raise SteeringError(
            f"architecture {model_type!r} has no TransformerLens hook mapping "
            f"(supported hooks: {', '.join(_TEMPLATES)}; "
            f"on architectures: {', '.join(SUPPORTED_MODEL_TYPES)})",
            hint="give the hook as a Hugging Face module name (e.g. layers.20) instead",
        )
    return tuple(f"blocks.{{layer}}.{kind}" for kind in FAMILIES[model_type].sites)


def is_module_name(hook_name: str) -> bool:
    """Whether a hook name is a Hugging Face module name rather than a TransformerLens name."""
    return not (hook_name.startswith("blocks.") or hook_name.startswith("hook_"))


def check_hook_name(model_type: str, hook_name: str, n_layers: int | None = None) -> None:
    """Raise SteeringError unless ``hook_name`` maps onto ``model_type`` (offline check).

    Hugging Face module names pass: only a loaded model can tell whether they exist.
    """
    if is_module_name(hook_name):
        return
    templates = supported_hooks(model_type)
    match = TL_NAME.fullmatch(hook_name)
    if match is None or match.group(2) not in FAMILIES[model_type].sites:
        raise SteeringError(
            f"hook {hook_name!r} cannot be mapped onto architecture {model_type!r}; "
            f"supported hooks: {', '.join(templates)}"
        )
    layer = int(match.group(1))
    if n_layers is not None and layer >= n_layers:
        raise SteeringError(
            f"hook {hook_name!r} names layer {layer}, but the model has n_layers={n_layers} "
            f"(layers 0-{n_layers - 1})"
        )
