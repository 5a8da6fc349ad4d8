"""The token ids a model generated, kept per prompt, so that measures of generations score the
tokens the model produced rather than a re-tokenisation of lm-eval's decoded text (which can
split differently at the prompt boundary and inside the text)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Prompt = tuple[int, ...]


class GeneratedTokens:
    """Generated token ids by prompt ids, collected over ``generate`` calls until taken."""

    def __init__(self) -> None:
        self._by_prompt: dict[Prompt, list[list[int]]] = {}

    def record(
        self, context: torch.Tensor, attention_mask: torch.Tensor | None, output: torch.Tensor
    ) -> None:
        """Keep each row's generated ids (``output`` past the left-padded ``context``) under its
        prompt ids (the positions the attention mask keeps)."""
        width = context.shape[1]
        kept = context.new_ones(context.shape) if attention_mask is None else attention_mask
        for prompt, mask, row in zip(context.tolist(), kept.tolist(), output.tolist(), strict=True):
            key = tuple(token for token, keep in zip(prompt, mask, strict=True) if keep)
            self._by_prompt.setdefault(key, []).append(row[width:])

    def take(self) -> dict[Prompt, list[list[int]]]:
        """Everything recorded so far (forgotten here)."""
        taken, self._by_prompt = self._by_prompt, {}
        return taken
