"""What the sweep figures draw: log strength axis for geometric strengths, CIs inside a
metric's bounds, the margin band only where it applies, text measures left out for short
generations, the tasks' aliases and n, and one summary figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saeval.analysis.compare import Side
from saeval.analysis.figure_style import TaskFacts, geometric, interval_bars, metric_name
from saeval.analysis.margins import Margin, MarginTest
from saeval.analysis.plots import plot_sweep
from saeval.analysis.summary_figure import SUMMARY_FILE, main_series
from saeval.analysis.sweep import Sweep, SweepPoint, SweepSeries
from saeval.analysis.sweep_panels import draw_series, pyplot, skipped_measures

SCALES = (0.5, 1.0, 2.0, 4.0)


def _series(task: str, metric: str, base: float, deltas: list[float], half: float) -> SweepSeries:
    """A series with value base + delta and the CI delta +- half at each of SCALES."""
    points = tuple(
        SweepPoint(
            scale=scale,
            value=base + delta,
            stderr=None,
            delta=delta,
            ci_low=delta - half,
            ci_high=delta + half,
            p=0.5,
            test="McNemar",
            safe=None,
        )
        for scale, delta in zip(SCALES, deltas, strict=True)
    )
    return SweepSeries(task, metric, True, base, None, points, None, None, Margin(0.02, False))


def _sweep() -> Sweep:
    series = (
        _series("know", "acc", 0.9, [0.0, -0.05, -0.2, -0.4], 0.2),  # CI passes 1.0 at 0.5x
        _series("dog", "acc", 0.5, [0.1, 0.2, 0.3, 0.45], 0.1),
        _series("gen", "distinct_2", 1.0, [0.0] * 4, 0.0),
        _series("gen", "gen_tokens", 3.0, [0.0] * 4, 0.5),
        _series("gen", "exact_match,strip", 0.6, [0.0, -0.1, -0.2, -0.3], 0.1),
    )
    return Sweep(Side("baseline", "b", "/cache/gemma-3-270m"), series, MarginTest(0.02), 0.05, ())


FACTS = TaskFacts(titles={"dog": "dog preference"}, n={"dog": 40, "know": 100},
                  targets=frozenset({"dog"}))  # fmt: skip


def test_geometric_strengths_get_a_log_axis() -> None:
    assert geometric([0.5, 1, 2, 4]) and geometric([1, 3, 9])
    assert not geometric([1, 2, 3]) and not geometric([0, 1, 2]) and not geometric([1, 2])
    plt = pyplot()
    figure, axes = plt.subplots()
    draw_series(axes, _sweep().series[0], _sweep(), FACTS)
    assert axes.get_xscale() == "log"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["0.5", "1", "2", "4"]
    plt.close(figure)


def test_intervals_stay_inside_the_metric_bounds() -> None:
    centres, halves = interval_bars([0.7, -0.3], [1.1, 0.2], "acc")
    assert np.subtract(centres, halves).tolist() == pytest.approx([0.7, 0.0])
    assert np.add(centres, halves).tolist() == pytest.approx([1.0, 0.2])
    centres, halves = interval_bars([0.5], [90.0], "gen_ppl")  # at least 1, unbounded above
    assert (centres[0] - halves[0], centres[0] + halves[0]) == pytest.approx((1.0, 90.0))
    plt = pyplot()
    figure, axes = plt.subplots()
    draw_series(axes, _sweep().series[0], _sweep(), FACTS)
    (bars,) = [c for c in axes.containers if c.has_yerr]
    ends = np.concatenate([seg[:, 1] for seg in bars.lines[2][0].get_segments()])
    assert ends.max() == pytest.approx(1.0) and ends.min() >= 0.0  # 0.9 + 0.2 cut at 1
    plt.close(figure)


def test_the_margin_band_is_drawn_on_capability_tasks_only() -> None:
    plt = pyplot()
    result = _sweep()
    for series, bands in ((result.series[0], 1), (result.series[1], 0)):
        figure, axes = plt.subplots()
        draw_series(axes, series, result, FACTS)
        assert len(axes.patches) == bands, series.task
        plt.close(figure)


def test_text_measures_of_short_generations_are_left_out_and_said_so(tmp_path: Path) -> None:
    result = _sweep()
    (note,) = skipped_measures(result, FACTS)
    assert note.startswith("gen: distinct-2 and repetition not plotted") and "3.0 tokens" in note
    written = {path.name for path in plot_sweep(result, tmp_path, FACTS)}
    assert "sweep_gen_distinct_2.png" not in written and "sweep_gen_gen_tokens.png" in written
    assert SUMMARY_FILE in written


def test_the_summary_has_each_task_once_targets_first() -> None:
    chosen = [(s.task, s.metric) for s in main_series(_sweep(), FACTS)]
    assert chosen == [("dog", "acc"), ("know", "acc"), ("gen", "exact_match,strip")]
    assert FACTS.titled("dog") == "dog preference (n = 40)" and FACTS.titled("x") == "x"
    assert metric_name("exact_match,strip") == "exact match [strip]"
    assert metric_name("acc,none") == "accuracy"
