"""Which documents feed a comparison: both sides' samples matched on (task, doc_id).

A task (a group: its leaves pooled) is paired on the documents both sides logged, each checked
to be the same document (doc_hash). When one side logged documents the other did not (a
`--limit 10` baseline against a `--limit 20` steered run), the comparison is *partial*: every
column of a row is then computed over the paired documents only, and the aggregates each side
reported over all of its documents are kept apart (``Reported``), labelled, never subtracted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from saeval.analysis.results import DocSample, ResultSet
from saeval.errors import ResultsError

DocKey = tuple[str, int]


@dataclass(frozen=True)
class Pairing:
    """Documents both sides logged for one task (pooled over a group's subtasks)."""

    a: Mapping[DocKey, DocSample]
    b: Mapping[DocKey, DocSample]
    keys: tuple[DocKey, ...]
    labels: tuple[str, str]

    @property
    def partial(self) -> bool:
        """Whether a side logged documents the other did not."""
        return len(self.keys) < max(len(self.a), len(self.b))

    @property
    def note(self) -> str:
        """The task's note for a partial comparison ('' otherwise)."""
        if not self.partial:
            return ""
        label_a, label_b = self.labels
        return (
            f"partial comparison: paired on {len(self.keys)} common documents "
            f"({label_a} has {len(self.a)}, {label_b} has {len(self.b)}); every column is over "
            f"those {len(self.keys)}, each side's reported aggregate is shown apart"
        )


@dataclass(frozen=True)
class OnPaired:
    """One metric's values restricted to the paired documents: the mean and its standard error
    (sample sd / sqrt(n), as lm-eval computes a mean metric's) on each side."""

    a: float
    a_stderr: float | None
    b: float
    b_stderr: float | None
    n: int


def _leaves(results: ResultSet, name: str) -> list[str]:
    """The leaf tasks under a task or (nested) group."""
    task = results.tasks.get(name)
    if task is None or not task.subtasks:
        return [name]
    return [leaf for child in task.subtasks for leaf in _leaves(results, child)]


def _docs(results: ResultSet, name: str) -> dict[DocKey, DocSample] | None:
    """Per-document samples of a task, pooled over a group's leaves; None if any is missing."""
    pooled: dict[DocKey, DocSample] = {}
    for leaf in _leaves(results, name):
        task = results.tasks.get(leaf)
        if task is None or task.samples is None:
            return None
        pooled.update({(leaf, doc_id): doc for doc_id, doc in task.samples.items()})
    return pooled


def pair_documents(name: str, a: ResultSet, b: ResultSet) -> Pairing | None:
    """Match documents on (task, doc_id) and check doc_hash; None without samples on a side."""
    docs_a, docs_b = _docs(a, name), _docs(b, name)
    if docs_a is None or docs_b is None:
        return None
    keys = tuple(key for key in docs_a if key in docs_b)
    for key in keys:
        if docs_a[key].doc_hash != docs_b[key].doc_hash:
            raise ResultsError(
                f"{key[0]}: document {key[1]} differs between {a.label} and {b.label} "
                f"(doc_hash {docs_a[key].doc_hash[:12]} vs {docs_b[key].doc_hash[:12]})",
                hint="the two runs evaluated different data; compare runs of the same "
                "task version and dataset",
            )
    return Pairing(a=docs_a, b=docs_b, keys=keys, labels=(a.label, b.label))


def paired_values(pairing: Pairing, key: str) -> tuple[list[float], list[float]] | None:
    """Both sides' per-document values of one metric, or None if some document lacks it."""
    values_a, values_b = [], []
    for doc in pairing.keys:
        x, y = pairing.a[doc].values.get(key), pairing.b[doc].values.get(key)
        if x is None or y is None:
            return None
        values_a.append(x)
        values_b.append(y)
    return values_a, values_b


def on_paired(a: list[float], b: list[float]) -> OnPaired:
    """Each side's mean and standard error over the same (paired) documents."""

    def stderr(values: list[float]) -> float | None:
        n = len(values)
        return statistics.stdev(values) / math.sqrt(n) if n > 1 else None

    return OnPaired(
        a=math.fsum(a) / len(a),
        a_stderr=stderr(a),
        b=math.fsum(b) / len(b),
        b_stderr=stderr(b),
        n=len(a),
    )
