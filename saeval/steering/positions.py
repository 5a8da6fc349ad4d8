"""Which positions of one forward pass hold what: padding, the leading token, the conditioning
text (prompt) and what the model produces (generated).

Whoever runs a forward pass that rows with a ``positions`` mode other than ``all`` may steer
(``SteeredHFLM``'s generation, saeval's loglikelihood request loop, the KL passes) describes its
batch with a ``Positions`` and opens ``describing(positions)`` around the pass; the steering edits
read it with ``current_positions()`` and act only where ``Positions.mask(mode, length)`` is true.
A batch of ``k`` copies of the same rows (the shared-prefix pass) describes one copy: each edit
sees its own copy's rows.

Row ``b`` of the batch holds real tokens at ``[start[b], end[b])`` (padding elsewhere),
conditioning text at ``[start[b], prompt_end[b])`` and generated tokens at
``[prompt_end[b], end[b])``. ``continues`` marks a pass that continues its sequences from a KV
cache (a decoding step): it holds no leading token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.steering.module_hooks import ModuleHook, registered

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module


@dataclass(frozen=True)
class Positions:
    """The layout of every row of one forward pass (each tensor is ``(batch,)``, long)."""

    start: Tensor
    end: Tensor
    prompt_end: Tensor
    continues: bool = False
    _masks: dict[Any, Tensor | None] = field(default_factory=dict, repr=False, compare=False)

    def mask(self, mode: str, length: int) -> Tensor | None:
        """``(batch, length)`` bool: where a row with ``mode`` acts; ``None`` for ``all``."""
        if mode == "all":
            return None
        key = (mode, length)
        if key not in self._masks:
            self._masks[key] = self._build(mode, length)
        return self._masks[key]

    def _build(self, mode: str, length: int) -> Tensor:
        import torch

        index = torch.arange(length, device=self.start.device)[None, :]
        start, end, prompt_end = self.start[:, None], self.end[:, None], self.prompt_end[:, None]
        real = (index >= start) & (index < end)
        if mode == "all_but_bos":
            return real if self.continues else real & (index != start)
        if mode == "prompt":
            return real & (index < prompt_end)
        if mode == "generated":
            return real & (index >= prompt_end)
        raise ValueError(f"unknown positions mode {mode!r}")


_CURRENT: ContextVar[Positions | None] = ContextVar("saeval_positions", default=None)


@contextmanager
def describing(positions: Positions) -> Iterator[None]:
    """Make ``positions`` the layout of the forward passes run inside the context."""
    token = _CURRENT.set(positions)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_positions() -> Positions | None:
    """The layout of the forward pass running now, if its caller described one."""
    return _CURRENT.get()


def prompt_positions(attention_mask: Tensor) -> Positions:
    """A batch of prompts (a generate_until prefill): real tokens where ``attention_mask``
    (batch, pos) is 1, left or right padded; every real token is conditioning text."""
    import torch

    real = attention_mask.bool()
    length = real.shape[1]
    index = torch.arange(length, device=real.device).expand_as(real)
    start = torch.where(real, index, length).min(dim=1).values
    end = torch.where(real, index + 1, 0).max(dim=1).values
    return Positions(start=start, end=end, prompt_end=end)


def decoding_step(batch: int, device: Any) -> Positions:
    """One decoding step of ``batch`` sequences from a KV cache: one generated token each."""
    import torch

    zeros = torch.zeros(batch, dtype=torch.long, device=device)
    return Positions(start=zeros, end=zeros + 1, prompt_end=zeros, continues=True)


@contextmanager
def describing_calls(module: Module, layout: Callable[[int, Tensor], Positions]) -> Iterator[None]:
    """Describe the ``n``-th forward call of ``module`` inside the context (``n`` from 0) as
    ``layout(n, input_ids)``, for passes whose caller is out of reach (``generate``)."""
    tokens: list[Token[Positions | None]] = []
    calls = 0

    def before(module: Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        nonlocal calls
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        tokens.append(_CURRENT.set(layout(calls, input_ids)))
        calls += 1

    def after(module: Module, args: tuple[Any, ...], output: Any) -> None:
        _CURRENT.reset(tokens.pop())

    hooks = ModuleHook(module, before, on="input", with_kwargs=True), ModuleHook(module, after)
    try:
        with registered(*hooks):
            yield
    finally:
        while tokens:  # a call that raised never reached ``after``
            _CURRENT.reset(tokens.pop())
