"""Edit activations of a Hugging Face model at TransformerLens hook points, through PyTorch hooks.

``saeval.spec.hook_points`` says which module's input or output holds a hook point's activation;
this module finds that module in a loaded model and replaces the activation with
``edit(activation)`` through a hook of ``saeval.steering.module_hooks``. A hook name that does
not start with ``blocks.`` is a Hugging Face module name relative to ``model.base_model``
(``layers.20``) or to the model (``model.layers.20``); the module's output is edited. torch is
imported only inside the functions that need a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.hook_points import (
    FAMILIES,
    HOOK_KINDS,
    TL_NAME,
    Family,
    Side,
    check_hook_name,
    is_module_name,
)
from saeval.steering.module_hooks import ModuleHook, registered

if TYPE_CHECKING:
    from torch import Tensor, nn

Edit = Callable[["Tensor"], "Tensor"]


@dataclass(frozen=True)
class HookSite:
    """The module whose input or output is a hook point's activation."""

    module: nn.Module
    module_name: str
    on: Side


def model_type_of(model: nn.Module) -> str:
    """The ``config.model_type`` of a Hugging Face model ("unknown" when it has none)."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "unknown"))


def locate(model: nn.Module, hook_name: str) -> HookSite:
    """Find the module (and side) holding ``hook_name``'s activation in a Hugging Face model."""
    if is_module_name(hook_name):
        return _locate_module(model, hook_name)
    model_type = model_type_of(model)
    family = FAMILIES.get(model_type)
    layers = _layers(model, family) if family is not None else None
    check_hook_name(model_type, hook_name, None if layers is None else len(layers))
    assert family is not None and layers is not None  # check_hook_name raised otherwise
    match = TL_NAME.fullmatch(hook_name)
    assert match is not None
    layer, kind = int(match.group(1)), match.group(2)
    path, side = family.sites[kind]
    layer_module = layers[layer]
    module = layer_module.get_submodule(path) if path else layer_module
    return HookSite(module=module, module_name=_name_of(model, module), on=side)


def decoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The decoder layers of a model of a known family (None for other architectures)."""
    family = FAMILIES.get(model_type_of(model))
    return None if family is None else _layers(model, family)


def _layers(model: nn.Module, family: Family) -> nn.ModuleList:
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
    hooks = [_hook(site, _compose(site_edits)) for site, site_edits in grouped.values()]
    with registered(*hooks):
        yield


def _compose(edits: list[Edit]) -> Edit:
    """One edit applying ``edits`` in order."""
    if len(edits) == 1:
        return edits[0]

    def composed(h: Tensor) -> Tensor:
        for edit in edits:
            h = edit(h)
        return h

    return composed


def _hook(site: HookSite, edit: Edit) -> ModuleHook:
    """A forward hook (output) or forward pre-hook (input) applying ``edit``."""
    if site.on == "output":

        def output_hook(module: nn.Module, args: Any, output: Any) -> Any:
            return _replace_first(output, edit, site.module_name)

        return ModuleHook(site.module, output_hook)

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

    return ModuleHook(site.module, input_hook, on="input", with_kwargs=True)


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
