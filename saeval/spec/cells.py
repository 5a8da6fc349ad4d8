"""Parsers for one steer-file cell each: raise ``Invalid`` with a message naming what is valid."""

from __future__ import annotations

import math
import re

from saeval.spec.csv_records import Invalid
from saeval.spec.dialects import CLAMPS, Action, Dialect

_EMPTY_COEFFICIENT = {
    Action.ADD: "an add row needs the multiple of W_dec[latent] to add, e.g. 240.0",
    Action.ADD_THROUGH_SAE: "an add_through_sae row needs the multiple of W_dec[latent] to add "
    "to the SAE's input, e.g. 240.0",
    Action.PROJECT: "a project row needs the value to set the projection on the direction to, "
    "e.g. 10.0",
}


def action(text: str, dialect: Dialect) -> Action:
    """The action a cell names (empty: add)."""
    value = text.lower()
    if not value:
        return Action.ADD
    if value in dialect.actions:
        return dialect.actions[value]
    valid = ", ".join(dialect.actions)
    if value in dialect.refused:
        raise Invalid(f"{text!r} is not supported: {dialect.refused[value]}; valid: {valid}")
    raise Invalid(f"unknown action {text!r}; valid: {valid}")


def latent(text: str) -> int:
    """A latent index: a whole number >= 0."""
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    if not text:
        raise Invalid("empty; expected a latent index, a whole number >= 0 such as 12082")
    if re.fullmatch(r"-[0-9]+(\.0*)?", text):
        raise Invalid(f"{text!r} is negative; a latent index is a whole number >= 0")
    if re.fullmatch(r"[0-9]+\.0*", text):
        raise Invalid(
            f"{text!r} has a decimal point; write the latent index as a whole number "
            f"({text.split('.')[0]})"
        )
    raise Invalid(f"{text!r} is not a whole number; expected a latent index such as 12082")


def head_index(text: str) -> int | None:
    """An attention head's index (a whole number >= 0), or None when empty."""
    if not text:
        return None
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    raise Invalid(f"{text!r} is not a head index; expected a whole number >= 0 such as 3")


def coefficient(text: str, acting: Action | None, dialect: Dialect) -> float:
    """The coefficient for ``acting`` (None: invalid): a multiple, a target value, ablate 0.0."""
    if acting is Action.ABLATE:
        if text and number(text) != 0.0:
            raise Invalid(
                f"ablate sets the latent to 0 and takes no coefficient, got {text!r}; "
                "leave it empty, or clamp to set another value"
            )
        return 0.0
    if text:
        return number(text)
    if acting in CLAMPS:
        raise Invalid(
            f"empty; a clamp row needs the value to clamp the latent to, e.g. 50.0"
            f"{dialect.clamp_note}"
        )
    if acting is not None:
        raise Invalid(f"empty; {_EMPTY_COEFFICIENT[acting]}")
    return 0.0  # the action itself is invalid and already reported


# A plain decimal number: ASCII digits, an optional sign, point and exponent. Python's float()
# also takes "1_000", other scripts' digits ("١٢") and "infinity"; a steer file does not.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def number(text: str) -> float:
    """A finite plain decimal number (``240``, ``-0.5``, ``2.5e-3``) that float64 holds without
    becoming 0."""
    stripped = text.strip()
    if _NON_FINITE.fullmatch(stripped):
        raise Invalid(f"{text!r} is not finite; expected a finite number such as 240.0")
    if not _DECIMAL.fullmatch(stripped):
        raise Invalid(
            f"{text!r} is not a number; expected a plain decimal number (digits 0-9, an optional "
            "sign, point and exponent) such as 240.0 or 2.5e-3"
        )
    value = float(stripped)
    if not math.isfinite(value):
        raise Invalid(f"{text!r} is not finite; expected a finite number such as 240.0")
    mantissa = re.split(r"[eE]", stripped)[0]
    if value == 0.0 and any(digit in "123456789" for digit in mantissa):
        raise Invalid(f"{text!r} is too small for a float64 and would become 0; write 0 for zero")
    return value
