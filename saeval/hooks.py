"""Map TransformerLens hook names to Hugging Face modules and edit activations there.

sae_lens stores an SAE's hook point as a TransformerLens name (``blocks.6.hook_resid_post``).
Steering a plain Hugging Face model means finding the module whose input or output is that
activation and replacing it with ``edit(activation)`` through a PyTorch hook. Each mapping
below is checked against TransformerLens on tiny models in ``tests/test_hooks.py``.

``blocks.L.attn.hook_z`` is the input of the attention output projection, so its heads are
flattened: shape ``(batch, pos, n_heads * d_head)``; an SAE trained on ``hook_z`` has
``d_in = n_heads * d_head``.

A hook name that does not start with ``blocks.`` is taken as a Hugging Face module name, as in
lm-eval's ``steered`` model: relative to ``model.base_model`` (``layers.20``) or to the model
(``model.layers.20``); the module's output is edited.

This module imports torch only inside the functions that need a model, so ``supported_hooks``
and ``check_hook_name`` work offline and fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from saeval.errors import SteeringError

if TYPE_CHECKING:
    from torch import Tensor, nn
    from torch.utils.hooks import RemovableHandle

Side = Literal["input", "output"]
Edit = Callable[["Tensor"], "Tensor"]

HOOK_KINDS = (
    "hook_resid_pre",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "attn.hook_z",
)

_TL_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass(frozen=True)
class _Family:
    """Where one architecture keeps its layers and, per hook kind, which submodule holds it."""

    layers: str  # path of the decoder-layer ModuleList under model.base_model
    sites: Mapping[str, tuple[str, Side]]  # hook kind -> (submodule path under a layer, side)


def _family(attn: str, mlp: str, o_proj: str, layers: str = "layers") -> _Family:
    """A family whose resid hooks are a decoder layer's input and output."""
    return _Family(
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

_FAMILIES: dict[str, _Family] = {
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

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_FAMILIES)
_TEMPLATES = tuple(f"blocks.{{layer}}.{kind}" for kind in HOOK_KINDS)


@dataclass(frozen=True)
class HookSite:
    """The module whose input or output is a hook point's activation."""

    module: nn.Module
    module_name: str
    on: Side


def supported_hooks(model_type: str) -> tuple[str, ...]:
    """Hook-name templates (``blocks.{layer}.hook_resid_post``) supported for a model type."""
    if model_type not in _FAMILIES:
        raise SteeringError(
            f"architecture {model_type!r} has no TransformerLens hook mapping "
            f"(supported hooks: {', '.join(_TEMPLATES)}; "
            f"on architectures: {', '.join(SUPPORTED_MODEL_TYPES)})",
            hint="give the hook as a Hugging Face module name (e.g. layers.20) instead",
        )
    return tuple(f"blocks.{{layer}}.{kind}" for kind in _FAMILIES[model_type].sites)


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
    match = _TL_NAME.fullmatch(hook_name)
    if match is None or match.group(2) not in _FAMILIES[model_type].sites:
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


def model_type_of(model: nn.Module) -> str:
    """The ``config.model_type`` of a Hugging Face model ("unknown" when it has none)."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "unknown"))


def locate(model: nn.Module, hook_name: str) -> HookSite:
    """Find the module (and side) holding ``hook_name``'s activation in a Hugging Face model."""
    if is_module_name(hook_name):
        return _locate_module(model, hook_name)
    model_type = model_type_of(model)
    family = _FAMILIES.get(model_type)
    layers = _layers(model, family) if family is not None else None
    check_hook_name(model_type, hook_name, None if layers is None else len(layers))
    assert family is not None and layers is not None  # check_hook_name raised otherwise
    match = _TL_NAME.fullmatch(hook_name)
    assert match is not None
    layer, kind = int(match.group(1)), match.group(2)
    path, side = family.sites[kind]
    layer_module = layers[layer]
    module = layer_module.get_submodule(path) if path else layer_module
    return HookSite(module=module, module_name=_name_of(model, module), on=side)


def _layers(model: nn.Module, family: _Family) -> nn.ModuleList:
    """The decoder layers of a model of a known family."""
    base = getattr(model, "base_model", model)
    try:
        layers = base.get_submodule(family.layers)
    except AttributeError as exc:
        raise SteeringError(
            f"{type(model).__name__} ({model_type_of(model)}) has no {family.layers!r} "
            "decoder layers where its architecture keeps them"
        ) from exc
    return layers  # type: ignore[return-value]


def _locate_module(model: nn.Module, name: str) -> HookSite:
    """Resolve a Hugging Face module name relative to ``model.base_model`` or to the model."""
    base = getattr(model, "base_model", model)
    for root in (base, model):
        try:
            module = root.get_submodule(name)
        except AttributeError:
            continue
        return HookSite(module=module, module_name=_name_of(model, module), on="output")
    raise SteeringError(
        f"module {name!r} not found in {type(model).__name__} ({model_type_of(model)})",
        hint="module names are relative to model.base_model, e.g. layers.20; TransformerLens "
        f"names look like blocks.20.hook_resid_post (supported: {', '.join(HOOK_KINDS)})",
    )


def _name_of(model: nn.Module, module: nn.Module) -> str:
    """The module's full dotted name inside ``model``."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    return type(module).__name__


@contextmanager
def attach(model: nn.Module, edits: Mapping[str, Edit]) -> Iterator[None]:
    """Replace each hook point's activation by ``edit(activation)`` while the context is open.

    Edits for hook names that land on the same module and side compose in the order given.
    The hooks are always removed on exit, also when the body raises.
    """
    grouped: dict[tuple[int, Side], tuple[HookSite, list[Edit]]] = {}
    for hook_name, edit in edits.items():
        site = locate(model, hook_name)
        grouped.setdefault((id(site.module), site.on), (site, []))[1].append(edit)
    handles: list[RemovableHandle] = []
    try:
        for site, site_edits in grouped.values():
            handles.append(_register(site, _compose(site_edits)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _compose(edits: list[Edit]) -> Edit:
    """One edit applying ``edits`` in order."""
    if len(edits) == 1:
        return edits[0]

    def composed(h: Tensor) -> Tensor:
        for edit in edits:
            h = edit(h)
        return h

    return composed


def _register(site: HookSite, edit: Edit) -> RemovableHandle:
    """Install a forward hook (output) or forward pre-hook (input) applying ``edit``."""
    if site.on == "output":

        def output_hook(module: nn.Module, args: Any, output: Any) -> Any:
            return _replace_first(output, edit, site.module_name)

        return site.module.register_forward_hook(output_hook)

    def input_hook(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if args:
            return (_replace_first(args, edit, site.module_name), kwargs)
        if "hidden_states" in kwargs:
            return (args, {**kwargs, "hidden_states": _apply(edit, kwargs["hidden_states"])})
        raise SteeringError(
            f"{site.module_name} was called without a positional input or hidden_states=, "
            "so its input cannot be edited"
        )

    return site.module.register_forward_pre_hook(input_hook, with_kwargs=True)


def _replace_first(value: Any, edit: Edit, module_name: str) -> Any:
    """Apply ``edit`` to a bare tensor or to the first element of a tuple."""
    import torch

    if isinstance(value, torch.Tensor):
        return _apply(edit, value)
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        return (_apply(edit, value[0]), *value[1:])
    raise SteeringError(
        f"{module_name} produced a {type(value).__name__}, not a tensor or a tuple "
        "starting with one, so it cannot be edited"
    )


def _apply(edit: Edit, h: Tensor) -> Tensor:
    """Run ``edit`` and insist it keeps the activation's shape."""
    edited = edit(h)
    if edited.shape != h.shape:
        raise SteeringError(
            f"a steering edit changed the activation shape from {tuple(h.shape)} "
            f"to {tuple(edited.shape)}"
        )
    return edited
