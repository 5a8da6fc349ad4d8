"""saeval.analysis.stats against scipy on constructed data, and Holm against a published example."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from saeval.analysis import stats


def test_mcnemar_is_binomtest_on_the_discordant_pairs() -> None:
    # 30 documents: 12 both right, 5 right->wrong, 11 wrong->right, 2 both wrong
    a = np.array([1] * 12 + [1] * 5 + [0] * 11 + [0] * 2)
    b = np.array([1] * 12 + [0] * 5 + [1] * 11 + [0] * 2)
    result = stats.mcnemar_exact(a, b)
    assert (result.right_to_wrong, result.wrong_to_right) == (5, 11)
    assert result.p == pytest.approx(sps.binomtest(11, 16, 0.5).pvalue, rel=1e-12)
    assert 0.1 < result.p < 0.3  # 11 of 16 is not significant


def test_mcnemar_without_discordant_pairs_has_p_one() -> None:
    a = np.array([1, 0, 1, 1, 0])
    assert stats.mcnemar_exact(a, a) == stats.McNemar(right_to_wrong=0, wrong_to_right=0, p=1.0)


def test_mcnemar_rejects_non_binary_values() -> None:
    with pytest.raises(ValueError, match="0/1"):
        stats.mcnemar_exact([0.5, 1.0], [1.0, 0.0])


def test_paired_t_is_ttest_rel() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    b = a + rng.normal(0.3, 1.0, size=50)
    assert stats.paired_t(a, b) == pytest.approx(sps.ttest_rel(b, a).pvalue, rel=1e-12)


def test_paired_t_without_variance() -> None:
    a = np.array([0.25, 0.5, 1.0])
    assert stats.paired_t(a, a) == 1.0  # ttest_rel says nan
    assert stats.paired_t(a, a + 0.25) == 0.0  # a constant shift: t is infinite
    assert stats.paired_t([0.3], [0.4]) is None  # one document: no test


def test_paired_summary_matches_scipy_sem_and_t_interval() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=40)
    b = a + rng.normal(0.1, 0.5, size=40)
    summary = stats.paired_summary(a, b)
    d = b - a
    assert summary.n == 40
    assert summary.mean == pytest.approx(d.mean())
    assert summary.se == pytest.approx(d.std(ddof=1) / math.sqrt(40))
    interval = sps.ttest_rel(b, a).confidence_interval(0.95)
    assert (summary.ci_low, summary.ci_high) == pytest.approx((interval.low, interval.high))


def test_paired_summary_edge_cases() -> None:
    assert stats.paired_summary([1.0], [0.0]) == stats.PairedSummary(1, -1.0, None, None, None)
    same = stats.paired_summary([1.0, 0.0], [1.0, 0.0])
    assert (same.mean, same.se, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no paired"):
        stats.paired_summary([], [])
    with pytest.raises(ValueError, match="equal"):
        stats.paired_summary([1.0, 2.0], [1.0])


def test_holm_on_the_textbook_example() -> None:
    """Four hypotheses, p = .01, .04, .03, .005 at alpha .05: H4 and H1 are rejected (Holm 1979,
    as worked in Wikipedia's "Holm-Bonferroni method"); adjusted p = .03, .06, .06, .02."""
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(2).uniform(0, 0.2, size=12)
    expected = multitest.multipletests(p, method="holm")[1]
    assert stats.holm(list(p)) == pytest.approx(list(expected))


@given(st.lists(st.floats(0.0, 1.0), max_size=30))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(p: list[float]) -> None:
    adjusted = stats.holm(p)
    assert all(raw <= adj <= 1.0 for raw, adj in zip(p, adjusted, strict=True))
    ranked = sorted(range(len(p)), key=lambda i: p[i])
    assert all(adjusted[i] <= adjusted[j] for i, j in itertools.pairwise(ranked))


def test_unpaired_z_against_the_normal_distribution() -> None:
    result = stats.unpaired_z(0.30, 0.046, 0.34, 0.048)
    se = math.sqrt(0.046**2 + 0.048**2)
    assert result.se == pytest.approx(se)
    assert result.z == pytest.approx(0.04 / se)
    assert result.p == pytest.approx(2 * (1 - sps.norm.cdf(0.04 / se)))
    half = sps.norm.ppf(0.975) * se
    assert (result.ci_low, result.ci_high) == pytest.approx((0.04 - half, 0.04 + half))


def test_unpaired_z_with_zero_standard_errors() -> None:
    assert stats.unpaired_z(0.5, 0.0, 0.5, 0.0).p == 1.0
    different = stats.unpaired_z(0.5, 0.0, 0.7, 0.0)
    assert different.p == 0.0 and math.isinf(different.z)


def test_is_binary() -> None:
    assert stats.is_binary([0.0, 1.0, 1.0])
    assert not stats.is_binary([0.0, 0.5])
