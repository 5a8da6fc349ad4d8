"""The experiment leaderboard on constructed results with known answers: effects, controls,
one Holm family, sweet spots, the figure and every rendering."""

from __future__ import annotations

import colorsys
import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from matplotlib.colors import to_rgb
from scipy import stats as sps

from saeval.analysis.board_rows import Entry
from saeval.analysis.compare import MCNEMAR
from saeval.analysis.leaderboard import Leaderboard, leaderboard
from saeval.analysis.leaderboard_plot import control_color, draw, plot_leaderboard, points
from saeval.analysis.leaderboard_render import render_leaderboard, summary_lines, table
from saeval.analysis.results_io import DocSample, MetricValue, ResultSet, TaskResult
from saeval.errors import ResultsError

N = 40  # documents per task
KEY = "acc,none"


def _task(name: str, values: list[float]) -> TaskResult:
    docs = {i: DocSample(i, f"{name}-{i}", {KEY: value}) for i, value in enumerate(values)}
    mean = sum(values) / len(values)
    stderr = float(sps.sem(values)) if len(set(values)) > 1 else 0.0
    return TaskResult(name, {KEY: MetricValue(mean, stderr)}, len(values), "1", "h", {"acc": True},
                      samples=docs)  # fmt: skip


def _results(label: str, target_right: int, cap_b_lost: int = 0) -> ResultSet:
    """Target: the first ``target_right`` documents right (the baseline has none right);
    capability: cap_a all right, cap_b all right but the first ``cap_b_lost``."""
    tasks = {
        "tgt": _task("tgt", [1.0] * target_right + [0.0] * (N - target_right)),
        "cap_a": _task("cap_a", [1.0] * N),
        "cap_b": _task("cap_b", [0.0] * cap_b_lost + [1.0] * (N - cap_b_lost)),
    }
    return ResultSet(label, Path(label), (), "tiny", "", tasks)


def _entries() -> list[Entry]:
    """good: +10/+20/+30 target documents at 1/2/4, losing 20 cap_b documents at 4;
    bad: one target document at 1; good's random control moves nothing."""
    found = [
        Entry("good", 1.0, _results("good@1", 10)),
        Entry("good", 2.0, _results("good@2", 20)),
        Entry("good", 4.0, _results("good@4", 30, cap_b_lost=20)),
        Entry("bad", 1.0, _results("bad@1", 1)),
    ]
    found += [Entry("good", s, _results(f"control@{s}", 0), control=1) for s in (1.0, 2.0, 4.0)]
    return found


def _board(**options: object) -> Leaderboard:
    """80 capability documents: with no flip the exact test bounds a drop by ~0.065 (one-sided,
    after Holm over 11 tests), so the margin is 0.1; 0.02 cannot be shown with 80 documents."""
    settings = {"target": ["tgt"], "capability": ["cap_a", "cap_b"], "margin": 0.1, **options}
    return leaderboard(_results("baseline", 0), _entries(), **settings)  # type: ignore[arg-type]


def _row(board: Leaderboard, name: str, scale: float, control: int | None = None):  # type: ignore[no-untyped-def]
    (found,) = [
        r for r in board.rows if (r.intervention, r.scale, r.control) == (name, scale, control)
    ]
    return found


def _mcnemar_p(flips: int) -> float:
    return float(sps.binomtest(flips, flips).pvalue)


def _holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down, written out independently of saeval.analysis.stats."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def test_effects_are_paired_deltas_pooled_over_each_family() -> None:
    board = _board()
    good4 = _row(board, "good", 4.0)
    assert good4.target is not None and good4.target.delta == pytest.approx(0.75)
    assert good4.target.test == MCNEMAR and good4.target.n == N
    assert good4.target.p == pytest.approx(_mcnemar_p(30))
    assert good4.capability is not None and good4.capability.n == 2 * N
    assert good4.capability.delta == pytest.approx(-20 / 80)
    assert good4.worst is not None and good4.worst.task == "cap_b"
    assert good4.worst.delta == pytest.approx(-0.5)
    control = _row(board, "good", 2.0, control=1)
    assert control.target is not None and control.target.delta == 0.0
    assert control.versus is not None and control.versus.delta == pytest.approx(
        0.5
    )  # good - control
    assert control.versus.p == pytest.approx(_mcnemar_p(20))


def test_non_inferiority_of_a_0_1_metric_is_an_exact_binomial_test() -> None:
    """good@4 lost 20 of 80 capability documents, none moved up: a drop of 0.3 or more needs a
    discordance rate of 0.3 or more, so p = P(Binomial(80, 0.3) <= 20) (scipy binomtest). Nothing
    moved is not a certainty either: P(Binomial(80, margin) = 0) = (1 - margin)^80."""
    board = _board(margin=0.3)
    good4 = _row(board, "good", 4.0)
    expected = sps.binomtest(20, 80, 0.3, alternative="less").pvalue
    assert good4.p_non_inferior == pytest.approx(expected)
    assert 0.1 < expected < 0.2 and good4.non_inferior is False
    assert _row(board, "good", 1.0).p_non_inferior == pytest.approx(0.7**80)
    assert _row(_board(margin=0.02), "good", 1.0).p_non_inferior == pytest.approx(0.98**80)
    assert _row(_board(margin=0.02), "good", 1.0).non_inferior is False  # 0.2: not shown


def test_non_inferiority_of_a_continuous_metric_is_a_one_sided_paired_t() -> None:
    """A metric with values outside [0, 1] gets the relative margin: 5% of the baseline."""
    from saeval.analysis.compare import ComparisonRow
    from saeval.analysis.margins import non_inferiority_p

    a = [10.0, 12.0, 11.0, 9.0, 13.0, 10.5]
    d = [0.2, -0.4, 0.1, -0.3, 0.0, -0.2]  # b - a, higher is better
    ci = sps.ttest_rel([x + y for x, y in zip(a, d, strict=True)], a).confidence_interval()
    se = float(sps.sem(d))
    row = ComparisonRow("t", "score", "score,none", True, 6, 6, 10.9, None, 10.8, None,
                        sum(d) / 6, "paired t", 6, se, ci.low, ci.high)  # fmt: skip
    margin = 0.05 * 10.9
    expected = sps.ttest_1samp(d, -margin, alternative="greater").pvalue
    assert non_inferiority_p(row, margin) == pytest.approx(expected)
    assert non_inferiority_p(replace(row, se=0.0), margin) is None  # no variance: no t


def test_one_holm_family_holds_targets_non_inferiority_and_controls() -> None:
    board = _board()
    good = [_row(board, "good", s) for s in (1.0, 2.0, 4.0)]
    bad = _row(board, "bad", 1.0)
    controls = [_row(board, "good", s, control=1) for s in (1.0, 2.0, 4.0)]
    tests = [(r.target, r.p_non_inferior) for r in [*good, bad]]
    raw = [p for target, ni in tests for p in (target.p, ni)]  # type: ignore[union-attr]
    raw += [c.versus.p for c in controls]  # type: ignore[union-attr]
    assert board.family_size == len(raw) == 11
    expected = _holm([float(p) for p in raw])  # type: ignore[arg-type]
    got = [p for r in [*good, bad] for p in (r.target.p_holm, r.p_non_inferior_holm)]  # type: ignore[union-attr]
    got += [c.versus.p_holm for c in controls]  # type: ignore[union-attr]
    assert got == pytest.approx(expected)
    assert controls[0].target is not None and controls[0].target.p_holm is None  # not in the family


def test_the_sweet_spot_is_the_largest_significant_effect_within_the_margin() -> None:
    board = _board()
    assert board.sweet_spots == {"good": 2.0, "bad": None}  # 4 loses capability; bad is n.s.
    assert [r.scale for r in board.rows if r.sweet_spot] == [2.0]
    assert _row(board, "good", 4.0).non_inferior is False
    assert _board(margin=0.3).sweet_spots["good"] == 2.0  # 4 is still not shown to be inside
    assert _board(margin=0.6).sweet_spots["good"] == 4.0
    assert _board(target_direction="decrease").sweet_spots == {"good": None, "bad": None}


def test_without_target_tasks_the_sweet_spot_is_the_strongest_safe_scale() -> None:
    board = _board(target=[])
    assert board.sweet_spots == {"good": 2.0, "bad": 1.0}
    assert all(r.target is None for r in board.rows)
    control = _row(board, "good", 4.0, control=1)
    assert control.versus is not None and control.versus.delta == pytest.approx(-0.25)


def test_a_metric_no_task_reports_is_one_error_naming_the_metrics() -> None:
    with pytest.raises(ResultsError, match=r"tgt: metric 'exact_match' is not reported.*acc,none"):
        _board(target_metric="exact_match")


def test_the_figure_draws_every_point_with_controls_lighter_and_the_margin_band(
    tmp_path: Path,
) -> None:
    board = _board()
    drawn = {p.label: p for p in points(board)}
    assert len(drawn) == 7
    good4 = drawn["good@4"]
    row = _row(board, "good", 4.0)
    assert (good4.x, good4.y) == (pytest.approx(0.75), pytest.approx(-0.25))
    assert good4.y_err == pytest.approx(
        (-0.25 - row.capability.ci_low, row.capability.ci_high + 0.25)
    )  # type: ignore[union-attr]
    assert drawn["good~random1@2"].control and drawn["good@2"].sweet_spot
    axes = draw(board).axes[0]
    band = axes.patches[0].get_extents().transformed(axes.transData.inverted())
    assert (band.y0, band.y1) == pytest.approx((-0.1, 0.0))
    colors = [to_rgb(c.lines[0].get_color()) for c in axes.containers]
    assert colors.count(pytest.approx(control_color("C0"))) == 3 and len(colors) == 7
    hue, light, _ = colorsys.rgb_to_hls(*to_rgb("C0"))
    c_hue, c_light, _ = colorsys.rgb_to_hls(*control_color("C0"))
    assert c_hue == pytest.approx(hue) and c_light > light  # the same hue, lighter
    assert "star" in axes.get_title()  # good@2 is a sweet spot
    plain = replace(board, rows=tuple(replace(r, sweet_spot=False) for r in board.rows))
    assert "star" not in draw(plain).axes[0].get_title()
    path = plot_leaderboard(board, tmp_path / "board.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_rendering_shows_the_rows_and_the_sweet_spots() -> None:
    board = _board()
    markdown = render_leaderboard(board, "markdown")
    assert "- sweet spot of good: scale 2" in markdown and "- sweet spot of bad: —" in markdown
    # no flip in 40 target documents: +-(1 - 0.025^(1/40)) = +-0.0881, not a certain [0, 0]
    assert f"{1 - 0.025 ** (1 / 40):.4f}" == "0.0881"
    assert "| good~random1 | 2 | +0.0000 | [-0.0881, +0.0881] | (1) |" in markdown
    records = list(csv.DictReader(io.StringIO(render_leaderboard(board, "csv"))))
    assert [(r["intervention"], r["control"], r["scale"]) for r in records[:3]] == [
        ("good", "", "1.0"),
        ("good", "1", "1.0"),  # each control right under its intervention
        ("good", "", "2.0"),
    ]
    assert [r["sweet_spot"] for r in records].count("True") == 1 and records[2]["sweet_spot"]
    assert float(records[4]["worst_delta"]) == pytest.approx(-0.5)
    data = json.loads(render_leaderboard(board, "json"))
    assert data["schema"] == "saeval.leaderboard/1" and data["family_size"] == 11
    assert data["sweet_spots"] == {"good": 2.0, "bad": None}
    assert "Holm's correction across all 11 tests" in summary_lines(board)[2]
    assert table(board).row_count == 7


def _ppl_results(label: str, shift: float) -> ResultSet:
    """One capability task whose gen_ppl (lower is better) is near 2000, shifted by ``shift``."""
    values = [2000.0 + 10 * (i % 7) + shift + (i % 3) * (shift > 0) for i in range(N)]
    docs = {i: DocSample(i, f"p-{i}", {"gen_ppl,none": v}) for i, v in enumerate(values)}
    metric = MetricValue(sum(values) / N, float(sps.sem(values)))
    task = TaskResult("cap", {"gen_ppl,none": metric}, N, "1", "h", {"gen_ppl": False},
                      samples=docs)  # fmt: skip
    return ResultSet(label, Path(label), (), "tiny", "", {"cap": task})


def test_an_unbounded_capability_metric_gets_the_relative_margin() -> None:
    """+30 on a gen_ppl near 2030 is inside 5% of the baseline (101.5), not inside 0.02."""
    entries = [
        Entry("x", 1.0, _ppl_results("x@1", 30.0)),
        Entry("x", 2.0, _ppl_results("x@2", 400.0)),
    ]
    board = leaderboard(_ppl_results("baseline", 0.0), entries, capability=["cap"],
                        capability_metric="gen_ppl")  # fmt: skip
    baseline = sum(2000.0 + 10 * (i % 7) for i in range(N)) / N
    assert board.capability_margin == pytest.approx(0.05 * baseline) and board.margin == 0.02
    one = _row(board, "x", 1.0)
    d = [30.0 + (i % 3) for i in range(N)]  # steered - baseline; H0: a rise of the margin or more
    expected = sps.ttest_1samp(d, 0.05 * baseline, alternative="less").pvalue
    assert one.p_non_inferior == pytest.approx(expected) and one.non_inferior is True
    assert _row(board, "x", 2.0).non_inferior is False
    assert f"margin {0.05 * baseline:.4g})" in render_leaderboard(board, "markdown")
