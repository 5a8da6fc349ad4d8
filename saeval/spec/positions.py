"""Which positions of a sequence a row steers: its ``positions`` mode (no torch here).

Per request type (``saeval.steering.positions`` describes each forward pass):

- loglikelihood: the context is the prompt, the continuation is generated;
- loglikelihood_rolling: every position is generated, none is prompt;
- generate_until: the prefill (the whole prompt) is prompt; each decoding step is generated.

Padding is never steered by a mode other than ``all``.
"""

from __future__ import annotations

from saeval.spec.csv_records import Invalid

ALL = "all"
ALL_BUT_BOS = "all_but_bos"
PROMPT = "prompt"
GENERATED = "generated"
MODES = {
    ALL: "every position",
    ALL_BUT_BOS: "every position but the first of each sequence (its BOS, where the tokenizer "
    "adds one)",
    PROMPT: "the conditioning text only (a loglikelihood context, a generate_until prompt)",
    GENERATED: "what the model produces only (a continuation, each decoding step)",
}


def positions_mode(text: str) -> str | None:
    """A ``positions`` cell: one of ``MODES``, or None (empty: the run's default)."""
    value = text.strip().lower()
    if not value:
        return None
    if value in MODES:
        return value
    raise Invalid(
        f"unknown positions {text!r}; valid: {', '.join(MODES)} (empty: the run's default)"
    )


def phrase(mode: str) -> str:
    """How ``validate`` names a mode after a row's formula: ``at generated positions``."""
    if mode == ALL_BUT_BOS:
        return "at every position but the first (BOS or not)"
    return f"at {mode} positions"
