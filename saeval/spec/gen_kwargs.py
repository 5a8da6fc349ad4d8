"""``--gen-kwargs`` (an experiment's ``gen_kwargs:``) checked as lm-eval will read it, before any
model loads.

lm-eval splits the text on commas into ``name=value`` pairs (``lm_eval.utils.
simple_parse_args_string``) and hands them to the model's ``generate``: a part without ``=``
becomes an empty string (``temperature`` alone is ``temperature=""``), which fails only at the
first generation. Each part must be ``name=value``; the sampling settings whose type is known
must be numbers in their range, ``do_sample`` true or false.
"""

from __future__ import annotations

import math
import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# name -> (whole number?, smallest allowed, what is valid)
_NUMBERS = {
    "temperature": (False, 0.0, "a number >= 0"),
    "top_p": (False, 0.0, "a number from 0 to 1"),
    "min_p": (False, 0.0, "a number from 0 to 1"),
    "top_k": (True, 0, "a whole number >= 0"),
    "max_gen_toks": (True, 1, "a whole number >= 1"),
    "max_new_tokens": (True, 1, "a whole number >= 1"),
    "repetition_penalty": (False, 0.0, "a number > 0"),
}
_AT_MOST_ONE = ("top_p", "min_p")


def gen_kwargs_problem(text: str) -> str | None:
    """What is wrong with a ``--gen-kwargs`` text (``temperature=0,max_gen_toks=64``), or None."""
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        name, equals, value = (side.strip() for side in part.partition("="))
        if not equals or not value or not _NAME.fullmatch(name):
            return f"part {part!r} is not name=value (e.g. temperature=0,max_gen_toks=64)"
        problem = _value_problem(name, value)
        if problem is not None:
            return f"{name}={value}: expected {problem}"
    return None


def _value_problem(name: str, value: str) -> str | None:
    """What ``value`` should be for a setting of known type, if it is not."""
    if name == "do_sample":
        return None if value.lower() in ("true", "false") else "true or false"
    if name not in _NUMBERS:
        return None
    whole, low, valid = _NUMBERS[name]
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        return valid
    if not math.isfinite(number) or number < low or (number == 0 and name == "repetition_penalty"):
        return valid
    if name in _AT_MOST_ONE and number > 1:
        return valid
    return None
