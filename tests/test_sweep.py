"""Dose-response sweeps: non-inferiority, the largest safe strength, plots and rendering."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import invoke
from test_leaderboard import _holm

from saeval.analysis import render
from saeval.analysis.compare import MCNEMAR, NO_TEST
from saeval.analysis.margins import EQUIVALENCE, MarginTest
from saeval.analysis.plots import plot_path, plot_sweep
from saeval.analysis.results_io import DocSample, MetricValue, ResultSet, TaskResult, load_side
from saeval.analysis.summary_figure import SUMMARY_FILE
from saeval.analysis.sweep import Sweep, SweepPoint, SweepSeries, largest_safe, sweep
from saeval.errors import UsageError

GOLDEN = Path(__file__).parent / "golden" / "lmeval"


@pytest.fixture(scope="module")
def golden_sweep() -> Sweep:
    """Scale 0.5 is the baseline again (no change), scale 1 the golden steered run. With 22-24
    documents and no flip, |delta| is bounded only by ~0.15 (exact), so the margin is 0.2."""
    baseline = load_side(GOLDEN / "baseline")
    steered = {1.0: load_side(GOLDEN / "steered"), 0.5: load_side(GOLDEN / "baseline")}
    return sweep(baseline, steered, margin=0.2)


def _series(result: Sweep, task: str, metric: str) -> SweepSeries:
    (found,) = (s for s in result.series if s.task == task and s.metric == metric)
    return found


@pytest.mark.parametrize(
    ("low", "high", "higher_is_better", "expected"),
    [
        (-0.01, 0.05, True, True),
        (-0.03, 0.05, True, False),
        (-0.05, 0.01, False, True),  # lower is better: the upper bound must stay below +margin
        (-0.05, 0.03, False, False),
        (-0.01, 0.01, None, True),  # direction unknown: both bounds inside the margin
        (-0.01, 0.03, None, False),
        (None, None, True, None),
    ],
)
def test_non_inferior(
    low: float | None, high: float | None, higher_is_better: bool | None, expected: bool | None
) -> None:
    assert MarginTest().passes(low, high, higher_is_better, 0.02) is expected


def _point(scale: float, ok: bool | None) -> SweepPoint:
    return SweepPoint(scale, 0.5, None, 0.0, None, None, None, NO_TEST, ok)


def test_largest_safe_stops_at_the_first_failure() -> None:
    points = [_point(4.0, True), _point(0.5, True), _point(1.0, True), _point(2.0, False)]
    assert largest_safe(points) == 1.0  # 4.0 passing after 2.0 failed does not count
    assert largest_safe([_point(0.5, False), _point(1.0, True)]) is None
    assert largest_safe([_point(0.5, None)]) is None


def test_largest_safe_is_per_sign_direction() -> None:
    points = [_point(-2.0, False), _point(-1.0, True), _point(1.0, True), _point(3.0, True)]
    assert largest_safe(points) == 3.0  # the failure at -2 does not stop the positive side
    assert largest_safe(points, negative=True) == -1.0
    assert largest_safe([_point(-1.0, False), _point(2.0, True)]) == 2.0
    assert largest_safe([_point(2.0, True)], negative=True) is None


def test_mixed_sign_sweep_reports_both_directions() -> None:
    """-1 is the golden steered run (it loses acc_norm), 1 and -0.5 the baseline again."""
    baseline = load_side(GOLDEN / "baseline")
    steered = {-1.0: load_side(GOLDEN / "steered"), -0.5: baseline, 1.0: baseline}
    result = sweep(baseline, steered, margin=0.2)
    norm = _series(result, "tiny_group", "acc_norm")
    assert (norm.largest_safe, norm.largest_safe_negative) == (1.0, -0.5)
    markdown = render.render(result, "markdown")
    expected = "acc_norm: largest scale with no drop beyond 0.2: 1 (negative scales: -0.5)"
    assert f"tiny_group {expected}" in markdown
    only_negative = sweep(baseline, {-1.0: baseline}, margin=0.2)
    assert "tiny_mc acc: largest scale with no drop beyond 0.2: -1\n" in render.render(
        only_negative, "markdown"
    )


def test_golden_sweep_series(golden_sweep: Sweep) -> None:
    mc = _series(golden_sweep, "tiny_mc", "acc")
    assert [p.scale for p in mc.points] == [0.5, 1.0]
    assert mc.baseline == 0.25 and mc.points[1].value == pytest.approx(2 / 3)
    assert mc.points[0].delta == 0.0 and mc.points[0].test == MCNEMAR
    assert mc.largest_safe == 1.0  # an improvement is non-inferior
    norm = _series(golden_sweep, "tiny_group", "acc_norm")
    assert [p.safe for p in norm.points] == [True, False]
    assert norm.largest_safe == 0.5
    ppl = _series(golden_sweep, "tiny_ppl", "word_perplexity")
    assert ppl.largest_safe is None and ppl.points[1].safe is None


def test_sweep_rejects_bad_settings() -> None:
    baseline = load_side(GOLDEN / "baseline")
    with pytest.raises(UsageError, match="at least one"):
        sweep(baseline, {})
    with pytest.raises(UsageError, match="margin"):
        sweep(baseline, {1.0: baseline}, margin=-1)


def test_plot_sweep_writes_one_png_per_series(golden_sweep: Sweep, tmp_path: Path) -> None:
    written = plot_sweep(golden_sweep, tmp_path / "plots")
    assert written[-1] == tmp_path / "plots" / SUMMARY_FILE  # and one summary figure
    assert len(written[:-1]) == len(golden_sweep.series) == 13
    expected = tmp_path / "plots" / "sweep_tiny_gen_exact_match_strict-match.png"
    assert expected in written
    assert plot_path(tmp_path / "plots", _series(golden_sweep, "tiny_mc", "acc")).name == (
        "sweep_tiny_mc_acc.png"
    )
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def _unweighted_group(sub_a: list[float], sub_b: list[float]) -> ResultSet:
    """A group whose acc is the plain mean of its two subtasks' accs (weight_by_size false)."""
    tasks = {}
    for name, values in (("sub_a", sub_a), ("sub_b", sub_b)):
        docs = {i: DocSample(i, f"{name}{i}", {"acc,none": v}) for i, v in enumerate(values)}
        metrics = {"acc,none": MetricValue(sum(values) / len(values), 0.1)}
        tasks[name] = TaskResult(name, metrics, len(values), "1", None, {"acc": True}, (), docs)
    group_acc = (
        tasks["sub_a"].metrics["acc,none"].value + tasks["sub_b"].metrics["acc,none"].value
    ) / 2
    tasks["group"] = TaskResult(
        "group",
        {"acc,none": MetricValue(group_acc, 0.1)},
        None,
        None,
        None,
        {"acc": True},
        ("sub_a", "sub_b"),
    )
    return ResultSet("x", Path("x"), (), "m", "", tasks)


def test_plot_draws_a_group_whose_delta_lies_outside_its_pooled_ci(tmp_path: Path) -> None:
    baseline = _unweighted_group([0.0] * 2, [0.0] * 20)
    steered = {1.0: _unweighted_group([1.0] * 2, [0.0] * 20), 2.0: baseline}
    result = sweep(baseline, steered)
    point = next(p for p in _series(result, "group", "acc").points if p.scale == 1.0)
    assert point.ci_high is not None and point.delta > point.ci_high  # 0.5 vs a pooled 2/22
    written = plot_sweep(result, tmp_path)
    assert len(written) == 3 + 1 and all(path.stat().st_size > 5000 for path in written)


def test_sweep_renders_in_every_format(golden_sweep: Sweep) -> None:
    markdown = render.render(golden_sweep, "markdown")
    assert "| tiny_mc | acc | baseline | 0.2500 ± 0.0903 |" in markdown
    assert "- tiny_mc acc: largest scale with no drop beyond 0.2: 1" in markdown
    rows = list(csv.DictReader(io.StringIO(render.render(golden_sweep, "csv"))))
    assert len(rows) == 26 and {row["scale"] for row in rows} == {"0.5", "1.0"}
    data = json.loads(render.render(golden_sweep, "json"))
    assert data["margin"] == 0.2 and len(data["series"]) == 13
    assert r"\begin{tabular}" in render.render(golden_sweep, "latex")
    table = render.table(golden_sweep)
    assert table.row_count == 13 * 3


def _task_set(columns: dict[str, list[float]], better: dict[str, bool]) -> ResultSet:
    """One task "gen" with per-document values of each metric."""
    n = len(next(iter(columns.values())))
    docs = {i: DocSample(i, f"h{i}", {k: v[i] for k, v in columns.items()}) for i in range(n)}
    metrics = {key: MetricValue(sum(v) / n, None) for key, v in columns.items()}
    task = TaskResult("gen", metrics, n, "1", None, better, (), docs)
    return ResultSet("x", Path("x"), (), "m", "", {"gen": task})


def _gen_sweep(**settings: object) -> Sweep:
    """40 documents: gen_ppl near 2000 rises by 30 (1.5%) at scale 1 and by 400 (20%) at 2;
    acc loses 10 documents at scale 2 (right->wrong), none at 1."""
    ppl = [2000.0 + 10 * (i % 7) for i in range(40)]
    acc = [1.0] * 30 + [0.0] * 10
    better = {"gen_ppl": False, "acc": True}
    baseline = _task_set({"gen_ppl,none": ppl, "acc,none": acc}, better)
    one = _task_set(
        {"gen_ppl,none": [v + 30 + (i % 3) for i, v in enumerate(ppl)], "acc,none": acc}, better
    )
    two = _task_set(
        {
            "gen_ppl,none": [v + 400 + (i % 3) for i, v in enumerate(ppl)],
            "acc,none": [0.0] * 10 + acc[10:],
        },
        better,
    )
    return sweep(baseline, {1.0: one, 2.0: two}, **settings)  # type: ignore[arg-type]


def test_unbounded_metrics_get_a_relative_margin_and_bounded_ones_an_absolute_one() -> None:
    result = _gen_sweep(margin=0.1)
    ppl, acc = _series(result, "gen", "gen_ppl"), _series(result, "gen", "acc")
    baseline_ppl = sum(2000.0 + 10 * (i % 7) for i in range(40)) / 40
    assert ppl.margin.relative and ppl.margin.value == pytest.approx(0.05 * baseline_ppl)
    assert not acc.margin.relative and acc.margin.value == 0.1
    # +30 of ~2030 is inside 5% (~101): safe; +400 is not. 0.02 absolute would fail both.
    assert [p.safe for p in ppl.points] == [True, False] and ppl.largest_safe == 1.0
    lines = render.summary_lines(result)
    rise = f"no rise beyond 5% of baseline ({0.05 * baseline_ppl:.4g})"
    assert f"gen gen_ppl: largest scale with {rise}: 1" in lines
    assert "gen acc: largest scale with no drop beyond 0.1: 1" in lines


def test_equivalence_needs_the_whole_interval_inside_the_margin() -> None:
    """The issue's case: a large improvement passes non-inferiority ("no drop beyond 0.02") but
    is not "within 0.02 of the baseline"; the equivalence test says so."""
    baseline = load_side(GOLDEN / "baseline")
    steered = {1.0: load_side(GOLDEN / "steered")}
    mc = _series(sweep(baseline, steered, margin=0.2), "tiny_mc", "acc")
    point = mc.points[0]
    assert point.delta == pytest.approx(5 / 12) and point.ci_low is not None and point.ci_low > 0
    assert point.safe is True
    result = sweep(baseline, steered, margin=0.2, margin_test=EQUIVALENCE)
    assert _series(result, "tiny_mc", "acc").points[0].safe is False
    assert "tiny_mc acc: largest scale equivalent within ±0.2: —" in render.summary_lines(result)
    assert MarginTest(test=EQUIVALENCE).passes(-0.01, 0.01, True, 0.02) is True
    assert MarginTest(test=EQUIVALENCE).passes(-0.01, 0.03, True, 0.02) is False
    with pytest.raises(UsageError, match="--margin-test must be noninferiority or equivalence"):
        MarginTest(test="both")


def test_the_sweep_holm_adjusts_every_point_together(golden_sweep: Sweep) -> None:
    points = [
        point for series in golden_sweep.series for point in series.points if point.p is not None
    ]
    expected = _holm([point.p for point in points])  # type: ignore[misc]
    assert [point.p_holm for point in points] == pytest.approx(expected)
    markdown = render.render(golden_sweep, "markdown")
    assert "| p | p (Holm) |" in markdown and "unadjusted 95% CI" in markdown
    assert f"p (Holm) adjusts all {len(points)} tests of the sweep" in markdown


def _cli(*args: str | Path) -> tuple[int, str]:
    result = invoke(*args, columns=200)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_the_cli_takes_the_margin_test_and_the_relative_margin(tmp_path: Path) -> None:
    run = Path(shutil.copytree(GOLDEN, tmp_path / "run", ignore=shutil.ignore_patterns("*.md")))
    (run / "steered").rename(run / "steered@1")
    shutil.copytree(run / "baseline", run / "steered@0.5")
    out = tmp_path / "sweep.json"
    args = ("compare", run, "-m", "acc", "--margin", "0.2", "--margin-test", "equivalence")
    code, _ = _cli(*args, "--relative-margin", "0.1", "-o", out)
    assert code == 0
    data = json.loads(out.read_text())
    assert (data["margin_test"], data["relative_margin"]) == ("equivalence", 0.1)
    safe = {(s["task"], s["metric"]): s["largest_safe"] for s in data["series"]}
    assert safe[("tiny_mc", "acc")] == 0.5  # +0.42 at 1 is a change beyond 0.2, not equivalent
    code, output = _cli(*args[:-2], "--margin-test", "both")
    assert code == 2 and "'both' is not one of 'noninferiority', 'equivalence'" in output
    code, output = _cli(*args, "--relative-margin", "-0.5")
    assert code == 2 and "error: --relative-margin must be a finite fraction >= 0" in output


def test_a_run_checks_the_margin_options_before_any_model() -> None:
    from saeval.run.config import RunConfig

    with pytest.raises(UsageError, match="--margin-test must be noninferiority or equivalence"):
        RunConfig(steer_files=(), tasks=("t",), margin_test="both").check()
    with pytest.raises(UsageError, match="--relative-margin must be a finite fraction"):
        RunConfig(steer_files=(), tasks=("t",), relative_margin=math.nan).check()
