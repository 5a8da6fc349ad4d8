"""What results files hold once read: metrics, per-document values, tasks, sides of a comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from saeval.records.dose import DoseSummary
from saeval.records.side_effects import KlSummary


@dataclass(frozen=True)
class MetricValue:
    """An aggregated metric as lm-eval reports it; `stderr` is None where lm-eval says "N/A"."""

    value: float
    stderr: float | None


@dataclass(frozen=True)
class DocSample:
    """One document's scalar per-metric values, keyed like lm-eval's results ("acc,none").

    Metrics whose per-document value is not a number (perplexity's (loglikelihood, length) pair,
    BLEU's (reference, prediction)), or whose aggregate is not the mean of the per-document
    values (a loglikelihood task's perplexity, whose per-document value is the log-likelihood),
    only exist as corpus-level aggregates and are left out.
    """

    doc_id: int
    doc_hash: str
    values: Mapping[str, float]


@dataclass(frozen=True)
class TaskResult:
    """One task (or group) of a results file, with its per-document samples when logged."""

    name: str
    metrics: Mapping[str, MetricValue]
    n: int | None
    version: str | None
    config_hash: str | None
    higher_is_better: Mapping[str, bool | None]
    subtasks: tuple[str, ...] = ()
    samples: Mapping[int, DocSample] | None = None
    samples_file: Path | None = None
    kl: KlSummary | None = None  # KL(unsteered || steered) on its prompts, if measured
    dose: DoseSummary | None = None  # ||h' - h|| / ||h|| in the same pass, if measured
    alias: str | None = None  # the task's own display name (lm-eval's task_alias), if it has one


@dataclass(frozen=True)
class ResultSet:
    """Everything one side of a comparison holds, from one or more lm-eval results files."""

    label: str
    source: Path
    files: tuple[Path, ...]
    model_name: str | None
    model_args: str
    tasks: Mapping[str, TaskResult]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSides:
    """A saeval run folder: the baseline and the steered configurations keyed by scale."""

    run: Path
    baseline: ResultSet
    steered: Mapping[float, ResultSet] = field(default_factory=dict)
