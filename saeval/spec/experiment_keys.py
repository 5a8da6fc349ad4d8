"""Parsers for the values of an experiment file's keys: each takes a YAML node and returns the
value, or raises ``Invalid`` with a message naming what would be valid."""

from __future__ import annotations

import math
from typing import Any

import yaml

from saeval.spec.csv_records import Invalid
from saeval.spec.yaml_nodes import items, kind, value


def scalar(node: yaml.Node) -> Any:
    """The value of a scalar node; a list or mapping is Invalid."""
    if not isinstance(node, yaml.ScalarNode):
        raise Invalid(f"expected a single value, got {kind(node)}")
    return value(node)


def text(node: yaml.Node) -> str:
    """A non-empty string (numbers are not silently turned into names)."""
    found = scalar(node)
    if not isinstance(found, str) or not found.strip():
        raise Invalid(f"expected text, got {found!r}")
    return found.strip()


def texts(node: yaml.Node) -> tuple[str, ...]:
    """A list of strings, or one string of comma-separated names; empty entries dropped."""
    names: list[str] = []
    for item in items(node):
        names += [name.strip() for name in text(item).split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def whole(node: yaml.Node, minimum: int, maximum: int | None = None) -> int:
    """A whole number in [minimum, maximum]."""
    found = scalar(node)
    if isinstance(found, bool) or not isinstance(found, int):
        raise Invalid(f"expected a whole number >= {minimum}, got {found!r}")
    if found < minimum or (maximum is not None and found > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise Invalid(f"expected a whole number {bound}, got {found}")
    return found


def number(node: yaml.Node) -> float:
    """A finite number (YAML's .nan and .inf are refused)."""
    found = scalar(node)
    if isinstance(found, bool) or not isinstance(found, int | float):
        raise Invalid(f"expected a number, got {found!r}")
    if not math.isfinite(found):
        raise Invalid(f"expected a finite number, got {found}")
    return float(found)


def flag(node: yaml.Node) -> bool:
    """true or false."""
    found = scalar(node)
    if not isinstance(found, bool):
        raise Invalid(f"expected true or false, got {found!r}")
    return found


def choice(node: yaml.Node, options: tuple[str, ...]) -> str:
    """One of ``options``."""
    found = scalar(node)
    if found not in options:
        raise Invalid(f"expected one of {', '.join(options)}, got {found!r}")
    return str(found)


def scales(node: yaml.Node) -> tuple[float, ...]:
    """Steering strengths: a number or a non-empty list of distinct finite numbers."""
    found = tuple(number(item) for item in items(node))
    if not found:
        raise Invalid("expected at least one strength, e.g. [0.5, 1, 2]")
    twice = sorted({scale for scale in found if found.count(scale) > 1})
    if twice:
        raise Invalid(f"strength {twice[0]:g} is listed twice")
    return found


def limit(node: yaml.Node) -> int | float:
    """Documents per task: a whole number >= 1, or a fraction of each task below 1."""
    found = number(node)
    if found >= 1 and found.is_integer():
        return int(found)
    if 0 < found < 1:
        return found
    raise Invalid(f"expected a whole number of documents >= 1 or a fraction below 1, got {found:g}")


def batch_size(node: yaml.Node) -> str:
    """``auto`` or a positive whole number, kept as text (as ``--batch-size`` is)."""
    found = scalar(node)
    if found == "auto":
        return "auto"
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise Invalid(f"expected auto or a whole number >= 1, got {found!r}")
    return str(found)


def margin(node: yaml.Node) -> float:
    """An absolute non-inferiority margin >= 0."""
    found = number(node)
    if found < 0:
        raise Invalid(f"expected a margin >= 0 (absolute, e.g. 0.02), got {found:g}")
    return found


def alpha(node: yaml.Node) -> float:
    """A family-wise error rate strictly between 0 and 1."""
    found = number(node)
    if not 0 < found < 1:
        raise Invalid(f"expected an error rate between 0 and 1 (exclusive), got {found:g}")
    return found
