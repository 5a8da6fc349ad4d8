"""An experiment's leaderboard: per intervention x strength, the target effect and the
capability cost against the one shared baseline, its random controls beside it, the KL to the
unsteered model (token-weighted over every task that measured it) and the sweet spot per
intervention; one Holm family over every test it reports.

Effects are paired deltas (steered - baseline) pooled over the documents of a family of tasks
(the target tasks, the capability tasks), as a group pools its subtasks; ``saeval.analysis.
compare`` computes each one on a virtual group holding the family's tasks. For every
intervention x strength the family of tests holds:

- the target effect: two-sided (exact McNemar for 0/1 metrics, else paired t);
- capability non-inferiority: one-sided test of H0 "capability drops by the margin or more"
  (for a metric where lower is better: rises by it or more): exact for 0/1 metrics
  (``margins.non_inferiority_p``), paired t otherwise; the margin is ``margin`` for metrics in
  [0, 1] and the default relative margin of the baseline for unbounded ones
  (``saeval.analysis.margins``);
- each random control against the intervention: two-sided, paired on the same documents, on
  the target family (the capability family when there are no target tasks);
- each row of a prompt intervention with ``compare_to`` against the steering configuration it
  names, likewise (the steering minus the prompt).

A prompt intervention's rows (``prompt``: the system prompt they were asked with; ``steers``
False for a prompt alone, reported at strength 0) are tested against the baseline like any row.

Holm's step-down adjusts all of them together; the confidence intervals are not adjusted (each
is the unadjusted 1 - alpha interval of its row). Each steering intervention's sweet spot is
``saeval.analysis.sweet_spots``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from saeval.analysis import stats
from saeval.analysis.board_rows import BoardRow, Effect, Entry
from saeval.analysis.compare import Comparison, ComparisonRow, Side, compare
from saeval.analysis.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN, check_alpha, check_margin
from saeval.analysis.dose import pooled_dose
from saeval.analysis.margins import MarginTest, non_inferiority_p
from saeval.analysis.results import MetricValue, ResultSet, TaskResult
from saeval.analysis.side_effects import pooled_kl
from saeval.analysis.sweet_spots import sweet_spots
from saeval.errors import ResultsError, UsageError

TARGET = "[target]"
CAPABILITY = "[capability]"
DIRECTIONS = ("increase", "decrease")


@dataclass(frozen=True)
class Leaderboard:
    """Every row, the sweet spots and the settings behind them."""

    baseline: Side
    rows: tuple[BoardRow, ...]
    sweet_spots: Mapping[str, float | None]
    target_tasks: tuple[str, ...]
    capability_tasks: tuple[str, ...]
    target_metric: str
    capability_metric: str
    target_direction: str
    margin: float
    capability_margin: float  # the margin the tests used: ``margin``, or relative (unbounded)
    alpha: float
    family_size: int
    notes: tuple[str, ...] = ()

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per row (``target_delta``, ``capability_ci_low``, ...), for CSV."""
        records = []
        for row in self.rows:
            record: dict[str, Any] = {
                "intervention": row.intervention,
                "control": row.control,
                "scale": row.scale,
            }
            for name in ("target", "capability", "worst", "versus"):
                effect = getattr(row, name)
                for key in _EFFECT_FIELDS:
                    record[f"{name}_{key}"] = None if effect is None else getattr(effect, key)
            record["non_inferior"] = row.non_inferior
            record["p_non_inferior"] = row.p_non_inferior
            record["p_non_inferior_holm"] = row.p_non_inferior_holm
            record["sweet_spot"] = row.sweet_spot
            record["kl"] = row.kl
            record["prompt"] = row.prompt
            record["steers"] = row.steers
            record["dose"] = row.dose
            records.append(record)
        return records


def _capability_margin(base: ResultSet, families: _Families, margin: float) -> float:
    """The capability metric's margin: ``margin`` where its values lie in [0, 1], else the
    relative margin of the baseline's value (``MarginTest.for_metric``)."""
    value = base.tasks[CAPABILITY].metrics[families.keys[CAPABILITY]].value
    return MarginTest(absolute=margin).for_metric(families.keys[CAPABILITY], value, []).value


def leaderboard(
    baseline: ResultSet,
    entries: Sequence[Entry],
    *,
    target: Sequence[str] = (),
    capability: Sequence[str] = (),
    target_metric: str = "acc",
    capability_metric: str = "acc",
    target_direction: str = "increase",
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    compare_to: Mapping[str, tuple[str, float]] | None = None,
) -> Leaderboard:
    """Rank every intervention x strength (see the module docstring for the tests);
    ``compare_to`` pairs a prompt intervention's rows with one steering configuration
    (intervention, strength)."""
    check_margin(margin)
    check_alpha(alpha)
    if target_direction not in DIRECTIONS:
        raise UsageError(f"target_direction must be increase or decrease, got {target_direction!r}")
    if not target and not capability:
        raise UsageError("a leaderboard needs target or capability tasks")
    families = _Families(
        baseline, tuple(target), tuple(capability), target_metric, capability_metric
    )
    base = families.add_to(baseline)
    size = _capability_margin(base, families, margin) if capability else margin
    sets = {(e.intervention, e.control, e.scale): families.add_to(e.results) for e in entries}
    rows, notes = [], []
    for entry in entries:
        key = (entry.intervention, entry.control, entry.scale)
        comparison = compare(base, sets[key], alpha=alpha)
        notes += [f"{entry.label}@{entry.scale:g}: {note}" for note in comparison.notes]
        paired = _paired_with(entry, compare_to or {})
        versus = None if paired is None else families.versus(sets, key, paired, alpha)
        rows.append(families.row(entry, comparison, versus, size))
    order = {
        name: index for index, name in enumerate(dict.fromkeys(e.intervention for e in entries))
    }
    rows.sort(
        key=lambda r: (order[r.intervention], r.scale, -1 if r.control is None else r.control)
    )
    rows, family_size = _with_holm(rows, alpha)
    rows, spots = sweet_spots(rows, alpha, target_direction, bool(target))
    return Leaderboard(
        baseline=Side(baseline.label, str(baseline.source), baseline.model_name),
        rows=tuple(rows),
        sweet_spots=spots,
        target_tasks=tuple(target),
        capability_tasks=tuple(capability),
        target_metric=families.keys[TARGET] if target else target_metric,
        capability_metric=families.keys[CAPABILITY] if capability else capability_metric,
        target_direction=target_direction,
        margin=margin,
        capability_margin=size,
        alpha=alpha,
        family_size=family_size,
        notes=tuple(dict.fromkeys(notes)),
    )


_Key = tuple[str, int | None, float]  # (intervention, control, scale) of an entry


def _paired_with(entry: Entry, compare_to: Mapping[str, tuple[str, float]]) -> _Key | None:
    """The configuration an entry's ``versus`` compares with: a control's intervention at the
    same strength, or the steering configuration a prompt intervention's ``compare_to`` names."""
    if entry.control is not None:
        return entry.intervention, None, entry.scale
    if entry.intervention in compare_to:
        name, scale = compare_to[entry.intervention]
        return name, None, scale
    return None


class _Families:
    """The target and capability tasks as two virtual groups, with their metric keys."""

    def __init__(
        self,
        baseline: ResultSet,
        target: tuple[str, ...],
        capability: tuple[str, ...],
        target_metric: str,
        capability_metric: str,
    ) -> None:
        self.tasks = {TARGET: target, CAPABILITY: capability}
        self.keys = {
            name: _family_key(baseline, tasks, metric, name)
            for name, tasks, metric in (
                (TARGET, target, target_metric),
                (CAPABILITY, capability, capability_metric),
            )
            if tasks
        }

    def add_to(self, results: ResultSet) -> ResultSet:
        """``results`` with a virtual group per family (its value the document-weighted mean)."""
        added = dict(results.tasks)
        for name, key in self.keys.items():
            added[name] = _group(results, name, self.tasks[name], key)
        return replace(results, tasks=added)

    def primary(self, comparison: Comparison) -> Effect:
        """The effect on the target family (the capability family without target tasks)."""
        name = TARGET if TARGET in self.keys else CAPABILITY
        return Effect.of(_row_of(comparison, name, self.keys[name]))

    def versus(
        self, sets: Mapping[_Key, ResultSet], key: _Key, paired: _Key, alpha: float
    ) -> Effect:
        """The configuration ``paired`` minus configuration ``key``, on the primary family."""
        mine = sets.get(paired)
        if mine is None:
            name, _, scale = key
            raise ResultsError(f"{name}@{scale:g} has no intervention {paired[0]} to compare")
        return self.primary(compare(sets[key], mine, alpha=alpha))

    def row(
        self, entry: Entry, comparison: Comparison, versus: Effect | None, margin: float
    ) -> BoardRow:
        """The leaderboard row of one entry compared with the baseline."""
        target = capability = worst = None
        p_ni = None
        if TARGET in self.keys:
            target = Effect.of(_row_of(comparison, TARGET, self.keys[TARGET]))
        if CAPABILITY in self.keys:
            key = self.keys[CAPABILITY]
            pooled = _row_of(comparison, CAPABILITY, key)
            capability = Effect.of(pooled)
            p_ni = non_inferiority_p(pooled, margin)
            tasks = [_row_of(comparison, task, key) for task in self.tasks[CAPABILITY]]
            loss = max(tasks, key=_loss)
            worst = Effect.of(loss, task=loss.task)
        return BoardRow(
            intervention=entry.intervention,
            control=entry.control,
            scale=entry.scale,
            target=target,
            capability=capability,
            worst=worst,
            non_inferior=None,
            p_non_inferior=p_ni,
            versus=versus,
            kl=pooled_kl([task.kl for task in entry.results.tasks.values() if task.kl]),
            prompt=entry.prompt,
            steers=entry.steers,
            dose=pooled_dose([task.dose for task in entry.results.tasks.values() if task.dose]),
        )


def _family_key(results: ResultSet, tasks: Sequence[str], metric: str, family: str) -> str:
    """The one results key (``acc,none``) of ``metric`` that every task of a family reports."""
    keys = []
    for name in tasks:
        task = results.tasks.get(name)
        if task is None:
            raise ResultsError(f"{results.source}: no results for {family} task {name}")
        matches = [k for k in task.metrics if metric in (k, k.partition(",")[0])]
        if len(matches) > 1:
            matches = [k for k in matches if k.endswith(",none")] or matches
        if len(matches) != 1:
            known = ", ".join(task.metrics) or "none"
            which = "names several filters" if matches else "is not reported"
            raise ResultsError(
                f"{name}: metric {metric!r} {which} (metrics: {known})",
                hint="set metric: in the experiment file to one of them, with its filter",
            )
        keys.append(matches[0])
    if len(set(keys)) > 1:
        found = ", ".join(f"{name}: {key}" for name, key in zip(tasks, keys, strict=True))
        raise ResultsError(f"the {family} tasks report {metric!r} under different keys ({found})")
    return keys[0]


def _group(results: ResultSet, name: str, tasks: Sequence[str], key: str) -> TaskResult:
    """A virtual group of ``tasks``: lm-eval's weight_by_size mean of their values."""
    parts = [results.tasks[task] for task in tasks if task in results.tasks]
    if len(parts) != len(tasks) or any(part.n is None for part in parts):
        missing = [task for task in tasks if task not in results.tasks]
        raise ResultsError(f"{results.source}: no document counts or no results for {missing}")
    total = sum(part.n or 0 for part in parts)
    value = sum((part.n or 0) * part.metrics[key].value for part in parts) / max(total, 1)
    metric = key.partition(",")[0]
    better = parts[0].higher_is_better.get(metric)
    return TaskResult(
        name, {key: MetricValue(value, None)}, total, None, None, {metric: better}, tuple(tasks)
    )


def _row_of(comparison: Comparison, task: str, key: str) -> ComparisonRow:
    for row in comparison.rows:
        if row.task == task and row.key == key:
            return row
    raise ResultsError(f"{comparison.b.source}: {task} has no {key} on both sides")


def _loss(row: ComparisonRow) -> float:
    """How much a row lost: -delta, or +delta where lower is better."""
    return row.delta if row.higher_is_better is False else -row.delta


def _with_holm(rows: list[BoardRow], alpha: float) -> tuple[list[BoardRow], int]:
    """Holm-adjust every reported test together; set each row's non-inferiority verdict."""
    slots: list[tuple[int, str, float]] = []  # (row, which test, p)
    for index, row in enumerate(rows):
        tests = {"versus": row.versus.p if row.versus else None}
        if row.control is None:
            tests |= {
                "target": row.target.p if row.target else None,
                "non_inferior": row.p_non_inferior,
            }
        slots += [(index, name, p) for name, p in tests.items() if p is not None]
    adjusted = stats.holm([p for _, _, p in slots])
    for (index, name, _), p_holm in zip(slots, adjusted, strict=True):
        row = rows[index]
        if name == "non_inferior":
            rows[index] = replace(row, p_non_inferior_holm=p_holm, non_inferior=p_holm < alpha)
        else:
            rows[index] = replace(row, **{name: replace(getattr(row, name), p_holm=p_holm)})
    return rows, len(slots)


_EFFECT_FIELDS = tuple(item.name for item in fields(Effect))
