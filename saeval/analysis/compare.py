"""Two result sets -> one Comparison: per (task, metric) values, delta and an honest test.

Paired when both sides logged the same documents (doc_id and doc_hash agree): exact McNemar for
0/1 metrics, paired t for continuous ones; otherwise an unpaired z on the reported standard
errors, labelled as such. Groups pool their subtasks' documents. Holm adjusts across all rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from saeval.analysis import stats
from saeval.analysis.defaults import check_alpha
from saeval.analysis.pairing import OnPaired, Pairing, on_paired, pair_documents, paired_values
from saeval.analysis.results import ResultSet, TaskResult
from saeval.analysis.stats import MCNEMAR, PAIRED_T, SIGN
from saeval.errors import ResultsError, UsageError
from saeval.records.dose import dose_columns
from saeval.records.side_effects import kl_columns

if TYPE_CHECKING:
    import pandas as pd

_NOT_ON_PAIRED = (
    "partial comparison, and this metric has no per-document values on documents both sides "
    "logged (its aggregates are over different documents)"
)
UNPAIRED_Z = "unpaired z"
NO_TEST = "none"

_NULLABLE_DTYPES = {
    "higher_is_better": "boolean",
    "n_a": "Int64",
    "n_b": "Int64",
    "n_paired": "Int64",
    "n_a_reported": "Int64",
    "n_b_reported": "Int64",
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
    dose: float | None = None  # b's own mean ||h' - h|| / ||h|| from its run (saeval.analysis.dose)
    dose_p95: float | None = None
    # a partial comparison: a, b, n and delta are over the paired documents, and these are the
    # aggregates each side reported over all of its documents (not compared with each other)
    a_reported: float | None = None
    n_a_reported: int | None = None
    b_reported: float | None = None
    n_b_reported: int | None = None

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
        pairing = pair_documents(name, a, b)
        if pairing is not None and pairing.note:
            notes.append(f"{name}: {pairing.note}")
        for key in task_a.metrics:
            if key not in task_b.metrics:
                notes.append(f"{name}: {metric_label(key)} only in {a.label}; skipped")
                continue
            if pairing is not None and pairing.partial and not _on_same_documents(pairing, key):
                notes.append(f"{name}: {metric_label(key)} skipped: {_NOT_ON_PAIRED}")
                continue
            row = _row(name, key, task_a, task_b, pairing, 1.0 - alpha)
            rows.append(replace(row, **kl_columns(task_b.kl), **dose_columns(task_b.dose)))
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


def _row(
    name: str,
    key: str,
    task_a: TaskResult,
    task_b: TaskResult,
    pairing: Pairing | None,
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
    paired = paired_values(pairing, key) if pairing is not None and pairing.keys else None
    if pairing is not None and paired is not None:
        if not pairing.partial:
            return _paired_row(base, *paired, confidence=confidence)
        row = _paired_row(_on_paired(base, on_paired(*paired)), *paired, confidence=confidence)
        return replace(row, note="; ".join(filter(None, [_partial_note(row, pairing), row.note])))
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


def _on_same_documents(pairing: Pairing, key: str) -> bool:
    """Whether a metric has per-document values on documents both sides logged."""
    return bool(pairing.keys) and paired_values(pairing, key) is not None


def _on_paired(base: ComparisonRow, values: OnPaired) -> ComparisonRow:
    """``base`` with a, b, their standard errors, n and delta over the paired documents, and
    each side's reported aggregate kept apart."""
    return replace(
        base,
        a=values.a,
        a_stderr=values.a_stderr,
        b=values.b,
        b_stderr=values.b_stderr,
        n_a=values.n,
        n_b=values.n,
        delta=values.b - values.a,
        a_reported=base.a,
        n_a_reported=base.n_a,
        b_reported=base.b,
        n_b_reported=base.n_b,
    )


def _partial_note(row: ComparisonRow, pairing: Pairing) -> str:
    """What a row of a partial comparison is over, and the aggregates it does not compare."""
    label_a, label_b = pairing.labels
    reported = [
        f"{label} {value:.4g} over {'?' if n is None else n} documents"
        for label, value, n in (
            (label_a, row.a_reported, row.n_a_reported),
            (label_b, row.b_reported, row.n_b_reported),
        )
        if value is not None
    ]
    return (
        f"over the {row.n_paired} documents both sides logged; reported over all documents "
        f"(not compared): {', '.join(reported)}"
    )


def _unpaired_reason(pairing: Pairing | None, key: str) -> str:
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
