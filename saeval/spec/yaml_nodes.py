"""A YAML file read as nodes that know their line, so every key is checked where it is written.

PyYAML's safe loader builds the node tree (``compose``); values are constructed one node at a
time (``value``), so a problem names ``file:line key``. Duplicate keys, which PyYAML silently
resolves to the last one, are problems here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from saeval.spec.csv_records import Problems


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` of a mapping: the key, its 1-based line and the value's node."""

    key: str
    line: int
    node: yaml.Node


def line_of(node: yaml.Node) -> int:
    """The 1-based line a node starts on."""
    return int(node.start_mark.line) + 1


def compose(text: str, problems: Problems) -> yaml.Node | None:
    """The document's root node (None for an empty document, or a syntax problem recorded)."""
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = None if mark is None else int(mark.line) + 1
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        problems.add(line, None, f"not valid YAML: {problem}{f' {context}' if context else ''}")
        return None
    finally:
        loader.dispose()


def value(node: yaml.Node) -> Any:
    """The Python value of a node (scalars typed as YAML 1.1's safe schema types them)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def entries(node: yaml.Node, where: str, problems: Problems) -> Iterator[Entry]:
    """The entries of a mapping node; a non-mapping, a non-text key or a repeated key is a
    problem (``where`` names the mapping in messages)."""
    if not isinstance(node, yaml.MappingNode):
        problems.add(line_of(node), where or None, f"expected a mapping of keys, got {kind(node)}")
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = value(key_node)
        line = line_of(key_node)
        if not isinstance(key, str):
            problems.add(line, where or None, f"key {key!r} is not text")
            continue
        if key in seen:
            problems.add(line, qualified(where, key), f"given twice (first on line {seen[key]})")
            continue
        seen[key] = line
        yield Entry(key, line, value_node)


def items(node: yaml.Node) -> list[yaml.Node]:
    """The nodes of a sequence, or the node itself as a one-item list."""
    return list(node.value) if isinstance(node, yaml.SequenceNode) else [node]


def qualified(where: str, key: str) -> str:
    """``slurm.partition`` for key ``partition`` of mapping ``slurm`` (the key alone at the top)."""
    return f"{where}.{key}" if where else key


def kind(node: yaml.Node) -> str:
    """What a node holds, for messages: a mapping, a list, or the scalar's value."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(value(node))
