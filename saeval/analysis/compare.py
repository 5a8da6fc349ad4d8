"""Two result sets -> one Comparison: per (task, metric) values, delta and an honest test.

Paired when both sides logged the same documents (doc_id and doc_hash agree): exact McNemar for
0/1 metrics, paired t for continuous ones; otherwise an unpaired z on the reported standard
errors, labelled as such. Groups pool their subtasks' documents. Holm adjusts across all rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from saeval.analysis import stats
from saeval.analysis.defaults import check_alpha
from saeval.analysis.results import DocSample, ResultSet, TaskResult
from saeval.analysis.side_effects import kl_fields
from saeval.analysis.stats import MCNEMAR, PAIRED_T, SIGN
from saeval.errors import ResultsError, UsageError

if TYPE_CHECKING:
    import pandas as pd

UNPAIRED_Z = "unpaired z"
NO_TEST = "none"

DocKey = tuple[str, int]
_NULLABLE_DTYPES = {
    "higher_is_better": "boolean",
    "n_a": "Int64",
    "n_b": "Int64",
    "n_paired": "Int64",
    "significant": "boolean",
    "right_to_wrong": "Int64",
    "wrong_to_right": "Int64",
}


@dataclass(frozen=True)
class Side:
    """Which results one side of a comparison came from."""

    label: str
    source: str
    model_name: str | None


@dataclass(frozen=True)
class ComparisonRow:
    """One (task, metric): both values, the delta b - a and the test behind its p-value."""

    task: str
    metric: str
    key: str
    higher_is_better: bool | None
    n_a: int | None
    n_b: int | None
    a: float
    a_stderr: float | None
    b: float
    b_stderr: float | None
    delta: float
    test: str
    n_paired: int | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    interval: str = ""  # which interval: exact McNemar, t or z (unadjusted, 1 - alpha)
    p: float | None = None
    p_holm: float | None = None
    significant: bool | None = None
    right_to_wrong: int | None = None
    wrong_to_right: int | None = None
    note: str = ""
    kl: float | None = None  # b's own KL(unsteered || b) per token from its run, not a vs b
    kl_ci_low: float | None = None
    kl_ci_high: float | None = None
    kl_p95: float | None = None

    @property
    def paired(self) -> bool:
        """Whether the delta's uncertainty comes from per-document differences."""
        return self.test in (MCNEMAR, PAIRED_T, SIGN)


@dataclass(frozen=True)
class Comparison:
    """A comparison report: rows, what was skipped and why, and the error rate used."""

    a: Side
    b: Side
    rows: tuple[ComparisonRow, ...]
    notes: tuple[str, ...]
    alpha: float

    @property
    def confidence(self) -> float:
        """The confidence level of every interval in the report (1 - alpha)."""
        return 1.0 - self.alpha

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per row (NaN-free: missing numbers are None)."""
        return [asdict(row) for row in self.rows]

    def to_frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame with one column per ComparisonRow field."""
        import pandas as pd

        columns = [item.name for item in fields(ComparisonRow)]
        frame = pd.DataFrame(self.to_records(), columns=columns)
        return frame.astype(_NULLABLE_DTYPES)


@dataclass(frozen=True)
class _Pairing:
    """Documents both sides logged for one task (pooled over a group's subtasks)."""

    a: Mapping[DocKey, DocSample]
    b: Mapping[DocKey, DocSample]
    keys: tuple[DocKey, ...]
    note: str


def metric_label(key: str) -> str:
    """ "acc,none" -> "acc"; a real filter stays visible: "exact_match,strict-match"."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name in ("", "none") else key


def compare(
    a: ResultSet,
    b: ResultSet,
    *,
    metrics: Sequence[str] | None = None,
    alpha: float = 0.05,
    any_model: bool = False,
) -> Comparison:
    """Compare every (task, metric) present in both result sets; b - a is the delta.

    Results of two different models are a ResultsError unless ``any_model`` (then a note).
    """
    check_alpha(alpha)
    _check_common_tasks(a, b)
    notes = [*_model_notes(a, b, any_model), *a.notes, *b.notes, *_task_notes(a, b)]
    rows: list[ComparisonRow] = []
    for name in _task_order(a, b):
        task_a, task_b = a.tasks[name], b.tasks[name]
        notes.extend(_metadata_notes(name, task_a, task_b))
        pairing = _pairing(name, a, b)
        if pairing is not None and pairing.note:
            notes.append(f"{name}: {pairing.note}")
        for key in task_a.metrics:
            if key not in task_b.metrics:
                notes.append(f"{name}: {metric_label(key)} only in {a.label}; skipped")
                continue
            row = _row(name, key, task_a, task_b, pairing, 1.0 - alpha)
            rows.append(replace(row, **kl_fields(task_b.kl)))
    rows = _select(rows, metrics)
    side_a, side_b = _side(a), _side(b)
    if side_a.label == side_b.label:
        side_a = replace(side_a, label=f"A ({side_a.label})")
        side_b = replace(side_b, label=f"B ({side_b.label})")
    return Comparison(
        a=side_a,
        b=side_b,
        rows=tuple(_with_holm(rows, alpha)),
        notes=tuple(notes),
        alpha=alpha,
    )


def _side(results: ResultSet) -> Side:
    return Side(label=results.label, source=str(results.source), model_name=results.model_name)


def _model_notes(a: ResultSet, b: ResultSet, any_model: bool) -> list[str]:
    """Nothing for one model; for two, a note with ``any_model``, else a ResultsError."""
    names = {name.rstrip("/") for name in (a.model_name, b.model_name) if name}
    if len(names) < 2:
        return []
    if not any_model:
        raise ResultsError(
            f"{a.source} and {b.source} are results of different models "
            f"({a.model_name} vs {b.model_name})",
            hint="a steering effect is measured against a baseline of the same model; "
            "pass --any-model to compare two models anyway",
        )
    return [f"different models: {a.label} is {a.model_name}, {b.label} is {b.model_name}"]


def _check_common_tasks(a: ResultSet, b: ResultSet) -> None:
    """Two evaluations with no task in common have nothing to compare: a ResultsError."""
    if any(name in b.tasks for name in a.tasks):
        return
    raise ResultsError(
        f"{a.source} and {b.source} have no task in common "
        f"({a.label}: {', '.join(a.tasks) or 'none'}; {b.label}: {', '.join(b.tasks) or 'none'})",
        hint="compare two evaluations of the same tasks",
    )


def _task_notes(a: ResultSet, b: ResultSet) -> list[str]:
    notes = [f"skipped {name}: only in {a.label}" for name in a.tasks if name not in b.tasks]
    notes += [f"skipped {name}: only in {b.label}" for name in b.tasks if name not in a.tasks]
    return notes


def _task_order(a: ResultSet, b: ResultSet) -> list[str]:
    """Common tasks, each group followed by its subtasks (as lm-eval prints them)."""
    common = [name for name in a.tasks if name in b.tasks]
    children = {child for name in common for child in a.tasks[name].subtasks}
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in common and name not in ordered:
            ordered.append(name)
            for child in a.tasks[name].subtasks:
                visit(child)

    for name in common:
        if name not in children:
            visit(name)
    return ordered + [name for name in common if name not in ordered]


def _metadata_notes(name: str, task_a: TaskResult, task_b: TaskResult) -> list[str]:
    notes = []
    if task_a.version != task_b.version:
        notes.append(f"{name}: task versions differ ({task_a.version} vs {task_b.version})")
    if task_a.config_hash and task_b.config_hash and task_a.config_hash != task_b.config_hash:
        notes.append(f"{name}: task configs differ (prompt, few-shot or metrics changed)")
    return notes


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


def _pairing(name: str, a: ResultSet, b: ResultSet) -> _Pairing | None:
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
    note = ""
    if len(keys) < max(len(docs_a), len(docs_b)):
        note = (
            f"partial comparison: paired on {len(keys)} common documents "
            f"({a.label} has {len(docs_a)}, {b.label} has {len(docs_b)})"
        )
    return _Pairing(a=docs_a, b=docs_b, keys=keys, note=note)


def _paired_values(pairing: _Pairing, key: str) -> tuple[list[float], list[float]] | None:
    """Both sides' per-document values of one metric, or None if some document lacks it."""
    values_a, values_b = [], []
    for doc in pairing.keys:
        x, y = pairing.a[doc].values.get(key), pairing.b[doc].values.get(key)
        if x is None or y is None:
            return None
        values_a.append(x)
        values_b.append(y)
    return values_a, values_b


def _row(
    name: str,
    key: str,
    task_a: TaskResult,
    task_b: TaskResult,
    pairing: _Pairing | None,
    confidence: float,
) -> ComparisonRow:
    metric_a, metric_b = task_a.metrics[key], task_b.metrics[key]
    base = ComparisonRow(
        task=name,
        metric=metric_label(key),
        key=key,
        higher_is_better=task_a.higher_is_better.get(key.partition(",")[0]),
        n_a=task_a.n,
        n_b=task_b.n,
        a=metric_a.value,
        a_stderr=metric_a.stderr,
        b=metric_b.value,
        b_stderr=metric_b.stderr,
        delta=metric_b.value - metric_a.value,
        test=NO_TEST,
    )
    paired = _paired_values(pairing, key) if pairing is not None and pairing.keys else None
    if paired is not None:
        return _paired_row(base, *paired, confidence=confidence)
    reason = _unpaired_reason(pairing, key)
    if metric_a.stderr is None or metric_b.stderr is None:
        return replace(base, note=f"{reason}; no standard error reported, so no test")
    test = stats.unpaired_z(
        metric_a.value, metric_a.stderr, metric_b.value, metric_b.stderr, confidence
    )
    return replace(
        base,
        test=UNPAIRED_Z,
        se=test.se,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        interval="z",
        p=test.p,
        note=reason,
    )


def _unpaired_reason(pairing: _Pairing | None, key: str) -> str:
    """Why a row could not be paired."""
    if pairing is None:
        return "no per-document samples on both sides"
    if not pairing.keys:
        return "no documents in common"
    if any(key in pairing.a[doc].values for doc in pairing.keys):
        return "per-document values missing for some documents"
    return "no per-document form (corpus-level metric)"


def _paired_row(
    base: ComparisonRow, a: list[float], b: list[float], *, confidence: float
) -> ComparisonRow:
    test = stats.paired_test(a, b, confidence)
    summary = test.summary
    note = ""
    if not math.isclose(summary.mean, base.delta, rel_tol=1e-9, abs_tol=1e-9):
        note = (
            f"paired mean difference over {summary.n} documents is {summary.mean:+.4g} "
            "(the aggregates weigh documents differently)"
        )
    elif test.test == SIGN:
        note = f"all {summary.n} differences are equal: no t interval; exact sign test"
    return replace(
        base,
        test=test.test,
        n_paired=summary.n,
        se=summary.se,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        interval=test.interval,
        p=test.p,
        right_to_wrong=test.right_to_wrong,
        wrong_to_right=test.wrong_to_right,
        note=note,
    )


def _select(rows: list[ComparisonRow], metrics: Sequence[str] | None) -> list[ComparisonRow]:
    """Keep rows whose metric matches one of `metrics` (name, "name,filter" or label)."""
    if not metrics:
        return rows
    wanted = set(metrics)
    unknown = sorted(name for name in wanted if not any(_matches(row, name) for row in rows))
    if unknown:
        available = ", ".join(sorted({row.metric for row in rows})) or "none"
        raise UsageError(
            f"metric {', '.join(unknown)} is not in both result sets",
            hint=f"metrics in both: {available}",
        )
    return [row for row in rows if any(_matches(row, name) for name in wanted)]


def _matches(row: ComparisonRow, name: str) -> bool:
    return name in (row.key, row.metric, row.key.partition(",")[0])


def _with_holm(rows: Iterable[ComparisonRow], alpha: float) -> list[ComparisonRow]:
    """Holm-adjust the p-values of every row that has one."""
    rows = list(rows)
    tested = {index: row.p for index, row in enumerate(rows) if row.p is not None}
    adjusted = stats.holm(list(tested.values()))
    for index, p_holm in zip(tested, adjusted, strict=True):
        rows[index] = replace(rows[index], p_holm=p_holm, significant=p_holm < alpha)
    return rows
