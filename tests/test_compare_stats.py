"""A comparison's statistics end to end: the interval agrees with the test on paired 0/1 data,
labels say what is adjusted, tiny n is never a certainty, and B's KL is labelled as B's own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats as sps

from saeval.analysis import number_text, render
from saeval.analysis.compare import MCNEMAR, compare
from saeval.analysis.results import DocSample, MetricValue, ResultSet, TaskResult
from saeval.records.side_effects import KlSummary

KEY = "acc,none"


def _side(label: str, values: list[int], kl: KlSummary | None = None) -> ResultSet:
    docs = {i: DocSample(i, f"h{i}", {KEY: float(v)}) for i, v in enumerate(values)}
    metric = MetricValue(sum(values) / len(values), None)
    task = TaskResult("t", {KEY: metric}, len(values), "1", "h", {"acc": True}, samples=docs, kl=kl)
    return ResultSet(label, Path(label), (), "m", "", {"t": task})


def _flips(right_to_wrong: int, wrong_to_right: int, n: int) -> tuple[list[int], list[int]]:
    rest = n - right_to_wrong - wrong_to_right
    same = [1] * (rest // 2) + [0] * (rest - rest // 2)
    a = [1] * right_to_wrong + [0] * wrong_to_right + same
    b = [0] * right_to_wrong + [1] * wrong_to_right + same
    return a, b


@pytest.mark.parametrize(
    ("right_to_wrong", "wrong_to_right", "n"),
    [(0, 5, 5), (5, 0, 5), (0, 12, 12), (12, 0, 12), (0, 100, 100), (100, 0, 100),
     (6, 1, 20), (2, 9, 30), (1, 0, 100), (0, 0, 12), (40, 60, 100), (29, 48, 100)],
)  # fmt: skip
def test_paired_binary_rows_agree_with_their_test_and_stay_in_range(
    right_to_wrong: int, wrong_to_right: int, n: int
) -> None:
    a, b = _flips(right_to_wrong, wrong_to_right, n)
    (row,) = compare(_side("base", a), _side("steer", b)).rows
    m = right_to_wrong + wrong_to_right
    p = 1.0 if m == 0 else sps.binomtest(wrong_to_right, m).pvalue
    assert row.test == MCNEMAR and row.interval == "exact McNemar" and row.p == pytest.approx(p)
    assert row.ci_low is not None and row.ci_high is not None
    assert -1.0 <= row.ci_low <= row.delta <= row.ci_high <= 1.0
    assert (row.ci_low > 0 or row.ci_high < 0) == (p < 0.05)


def test_twelve_documents_all_moved_the_same_way_are_not_p_below_1e_4() -> None:
    a, b = _flips(0, 12, 12)
    comparison = compare(_side("base", a), _side("steer", b))
    (row,) = comparison.rows
    assert row.p == pytest.approx(2 / 2**12) and number_text.fmt_p(row.p) == "0.00049"
    assert row.ci_high == 1.0 and row.ci_low == pytest.approx(2 * 0.025 ** (1 / 12) - 1)
    markdown = render.render(comparison, "markdown")
    assert "| unadjusted 95% CI |" in markdown and "<1e-4" not in markdown


def test_the_kl_column_is_labelled_as_b_s_own() -> None:
    a, b = _flips(1, 3, 20)
    kl = KlSummary(0.25, 0.2, 0.3, 0.9, 400, 20)
    comparison = compare(_side("A", a), _side("B", b, kl))
    assert comparison.rows[0].kl == 0.25  # B's KL against its own unsteered model
    markdown = render.render(comparison, "markdown")
    assert "| B KL (nats/token) |" in markdown and "| KL (nats/token) |" not in markdown
    plain = compare(_side("A", a), _side("B", b))
    assert "KL" not in render.render(replace(plain, notes=()), "markdown")
