"""PyTorch hooks on a model's modules for the length of a ``with`` block.

Every hook saeval puts on a model (the steering edits, the shared layers of a multi-configuration
pass, the logits kept, the description of each forward call, the demo's activation capture) is a
``ModuleHook`` registered by ``registered``, which removes them all on leaving the block, also
when the body or a later registration raises. torch is not imported here: the hooks' modules
bring it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from saeval.spec.hook_points import Side

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.hooks import RemovableHandle


@dataclass(frozen=True)
class ModuleHook:
    """A hook run after ``module``'s forward (``output``: ``hook(module, args, output)``) or
    before it (``input``: ``hook(module, args)``); ``with_kwargs`` passes the call's keyword
    arguments too (``hook(module, args, kwargs[, output])``), as PyTorch defines them."""

    module: nn.Module
    hook: Callable[..., Any]
    on: Side = "output"
    with_kwargs: bool = False

    def register(self) -> RemovableHandle:
        """Register the hook on its module; the handle removes it."""
        if self.on == "output":
            return self.module.register_forward_hook(self.hook, with_kwargs=self.with_kwargs)
        return self.module.register_forward_pre_hook(self.hook, with_kwargs=self.with_kwargs)


@contextmanager
def registered(*hooks: ModuleHook) -> Iterator[Sequence[RemovableHandle]]:
    """Register ``hooks`` in order (PyTorch runs one module's hooks in the order they were
    registered) and remove every one on leaving; yields their handles, so that a hook may
    remove them earlier (removing twice is harmless)."""
    handles: list[RemovableHandle] = []
    try:
        for hook in hooks:
            handles.append(hook.register())
        yield handles
    finally:
        for handle in handles:
            handle.remove()
