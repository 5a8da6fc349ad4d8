"""What every saeval figure shares: readable metric names, the bounds of bounded metrics, the
strength axis (logarithmic when the strengths are geometric), the colours of interventions and
their random controls, and what each task is called and how many documents it has."""

from __future__ import annotations

import colorsys
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.analysis.compare import metric_label

if TYPE_CHECKING:
    from saeval.analysis.results import ResultSet

METRIC_NAMES = {
    "acc": "accuracy",
    "acc_norm": "accuracy (length-normalised)",
    "exact_match": "exact match",
    "word_perplexity": "word perplexity",
    "byte_perplexity": "byte perplexity",
    "bits_per_byte": "bits per byte",
    "gen_ppl": "perplexity of generations",
    "distinct_2": "distinct-2 of generations",
    "repetition_4": "4-gram repetition of generations",
    "gen_tokens": "tokens per generation",
}
BOUNDED = frozenset({"acc", "acc_norm", "exact_match", "distinct_2", "repetition_4", "f1"})
PERPLEXITIES = frozenset({"word_perplexity", "byte_perplexity", "gen_ppl"})  # >= 1, log axis
# distinct-2 and the repetition rate say nothing about answers of a few tokens
TEXT_MEASURES = frozenset({"distinct_2", "repetition_4"})
MIN_TEXT_TOKENS = 16.0


@dataclass(frozen=True)
class TaskFacts:
    """What a figure says about each task: its display name, its number of documents, and
    whether it is a target task (where the capability margin does not apply)."""

    titles: Mapping[str, str] = field(default_factory=dict)
    n: Mapping[str, int] = field(default_factory=dict)
    targets: frozenset[str] = frozenset()

    def title(self, task: str) -> str:
        """The task's alias (its own name for itself), else its id."""
        return self.titles.get(task, task)

    def titled(self, task: str) -> str:
        """'alias (n = 40)', or the alias alone when n is unknown."""
        n = self.n.get(task)
        return self.title(task) if n is None else f"{self.title(task)} (n = {n})"


def task_facts(baseline: ResultSet, targets: Sequence[str] = ()) -> TaskFacts:
    """The aliases and document counts of a run's baseline tasks."""
    tasks = baseline.tasks.values()
    return TaskFacts(
        titles={task.name: task.alias for task in tasks if task.alias},
        n={task.name: task.n for task in tasks if task.n is not None},
        targets=frozenset(targets),
    )


def metric_name(metric: str) -> str:
    """'accuracy' for acc; a filter stays visible ('exact match [strip]'); unknown names as is."""
    name, _, filter_name = metric_label(metric).partition(",")
    readable = METRIC_NAMES.get(name, name)
    return f"{readable} [{filter_name}]" if filter_name else readable


def base_metric(metric: str) -> str:
    """'exact_match,strip' -> 'exact_match'."""
    return metric.partition(",")[0]


def bounds(metric: str) -> tuple[float, float]:
    """The range a metric's values can take: [0, 1] for proportions, [1, inf) for perplexities,
    [0, inf) otherwise."""
    if base_metric(metric) in BOUNDED:
        return 0.0, 1.0
    return (1.0 if base_metric(metric) in PERPLEXITIES else 0.0), math.inf


def interval_bars(
    lows: Sequence[float], highs: Sequence[float], metric: str
) -> tuple[list[float], list[float]]:
    """Intervals cut at the metric's bounds as (centres, half widths), to draw as error bars
    of their own: a bar is the interval, wherever the point lies (a group's value can lie
    outside the interval of its pooled documents)."""
    floor, ceiling = bounds(metric)
    cut = [(max(low, floor), min(high, ceiling)) for low, high in zip(lows, highs, strict=True)]
    return [(low + high) / 2 for low, high in cut], [(high - low) / 2 for low, high in cut]


def geometric(scales: Sequence[float]) -> bool:
    """Whether three or more strengths are positive with one common ratio (0.5, 1, 2, 4)."""
    ordered = sorted(set(scales))
    if len(ordered) < 3 or ordered[0] <= 0:
        return False
    ratios = [b / a for a, b in itertools.pairwise(ordered)]
    return ratios[0] > 1.2 and all(abs(r / ratios[0] - 1.0) < 0.1 for r in ratios)


def strength_axis(axes: Any, scales: Sequence[float]) -> None:
    """Label the x axis as the strength, logarithmic with the strengths as ticks when they are
    geometric, else linear."""
    axes.set_xlabel("steering strength (times the coefficients)")
    if geometric(scales):
        from matplotlib.ticker import FixedLocator, NullLocator

        axes.set_xscale("log", base=2)
        ordered = sorted(set(scales))
        axes.xaxis.set_major_locator(FixedLocator(ordered))
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xticklabels([f"{scale:g}" for scale in ordered])
        axes.set_xlim(ordered[0] / 1.3, ordered[-1] * 1.3)


def bounded_limits(axes: Any, metric: str) -> None:
    """y limits of a proportion: inside [0, 1] (with a little room), at least 0.1 tall."""
    if base_metric(metric) not in BOUNDED:
        return
    low, high = axes.get_ylim()
    if high - low < 0.1:
        middle = (low + high) / 2
        low, high = middle - 0.05, middle + 0.05
    axes.set_ylim(max(low, -0.02), min(high, 1.02))


def model_title(model: str | None) -> str:
    """A model as a figure names it: a local folder by its last part, a hub id as is."""
    if not model:
        return "the model"
    return model.rstrip("/").rsplit("/", 1)[-1] if model.startswith(("/", ".", "~")) else model


def lighter(color: str, amount: float = 0.55) -> tuple[float, float, float]:
    """The same hue, lighter: for the random controls of the intervention drawn in ``color``."""
    from matplotlib.colors import to_rgb

    hue, lightness, saturation = colorsys.rgb_to_hls(*to_rgb(color))
    return colorsys.hls_to_rgb(hue, lightness + (1.0 - lightness) * amount, saturation * 0.8)
