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
    # a constant shift: t would be infinite (p 0, a certainty 3 documents cannot give); the exact
    # sign test of 3 equal signs says 2 / 2^3
    assert stats.paired_t(a, a + 0.25) == pytest.approx(sps.binomtest(3, 3).pvalue) == 0.25
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


def _pairs(right_to_wrong: int, wrong_to_right: int, n: int) -> tuple[list[int], list[int]]:
    """Paired 0/1 outcomes with the given flips; the concordant rest split between 1/1 and 0/0."""
    rest = n - right_to_wrong - wrong_to_right
    a = [1] * right_to_wrong + [0] * wrong_to_right + [1] * (rest // 2) + [0] * (rest - rest // 2)
    b = [0] * right_to_wrong + [1] * wrong_to_right + [1] * (rest // 2) + [0] * (rest - rest // 2)
    return a, b


# (right->wrong, wrong->right, n): all discordant one way at n = 5, 12, 100, balanced flips,
# no flips, one flip, the issue's -0.25 with p 0.062 and near-boundary counts
BINARY_CASES = [
    (0, 5, 5), (5, 0, 5), (0, 12, 12), (12, 0, 12), (0, 100, 100), (100, 0, 100),
    (0, 0, 5), (0, 0, 100), (1, 0, 100), (0, 1, 12), (3, 3, 12), (6, 0, 24), (1, 6, 20),
    (2, 9, 30), (2, 8, 30), (20, 0, 80), (40, 60, 100), (30, 48, 100), (29, 48, 100),
]  # fmt: skip


@pytest.mark.parametrize(("right_to_wrong", "wrong_to_right", "n"), BINARY_CASES)
@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.9])
def test_the_binary_interval_agrees_with_the_exact_mcnemar_test(
    right_to_wrong: int, wrong_to_right: int, n: int, confidence: float
) -> None:
    a, b = _pairs(right_to_wrong, wrong_to_right, n)
    result = stats.paired_test(a, b, confidence)
    m = right_to_wrong + wrong_to_right
    p = 1.0 if m == 0 else sps.binomtest(wrong_to_right, m, 0.5).pvalue  # the exact McNemar p
    assert result.test == stats.MCNEMAR and result.p == pytest.approx(p, rel=1e-12)
    assert result.interval == stats.EXACT_INTERVAL
    low, high = result.ci_low, result.ci_high
    assert low is not None and high is not None
    delta = (wrong_to_right - right_to_wrong) / n
    assert -1.0 <= low <= delta <= high <= 1.0  # inside what is possible, around the estimate
    assert (low > 0 or high < 0) == (p < 1 - confidence)  # interval and test agree


def test_the_binary_interval_by_hand() -> None:
    """12 of 12 documents moved up: pi's Clopper-Pearson lower limit solves L^12 = 0.025 (by
    hand: 0.025 ** (1/12)) and delta = 2L - 1; the upper side is the discordance rate's upper
    limit, 1. With no flip in 100 the interval is +-(1 - 0.025 ** (1/100)), not [0, 0]."""
    low, high = stats.mcnemar_interval(0, 12, 12)
    assert (low, high) == pytest.approx((2 * 0.025 ** (1 / 12) - 1, 1.0))
    assert sps.binomtest(12, 12).pvalue == pytest.approx(2 / 2**12)  # and the test rejects
    u = 1 - 0.025 ** (1 / 100)
    assert stats.mcnemar_interval(0, 0, 100) == pytest.approx((-u, u))
    # 5 right->wrong, 11 wrong->right of 30: (16/30)(2 pi - 1) on Clopper-Pearson's pi limits
    ci = sps.binomtest(11, 16).proportion_ci(0.95, method="exact")
    expected = (16 / 30 * (2 * ci.low - 1), 16 / 30 * (2 * ci.high - 1))
    assert stats.mcnemar_interval(5, 11, 30) == pytest.approx(expected)


def test_the_binary_interval_at_the_exact_boundary() -> None:
    """5 of 5 one way has exact p = 2 / 32 = 0.0625: at confidence 1 - 0.0625 the test does not
    reject (p < alpha is false) and the interval's limit touches 0 (pi's limit is exactly 0.5)."""
    alpha = 2 / 2**5
    assert sps.binomtest(5, 5).pvalue == alpha
    low, high = stats.mcnemar_interval(0, 5, 5, 1 - alpha)
    assert low == pytest.approx(0.0, abs=1e-12) and high == 1.0
    assert not low > 0  # closed interval holding 0: no rejection, as the test says


def test_the_issue_case_no_longer_disagrees() -> None:
    """acc -0.25 with McNemar p 0.062 had a t interval [-0.458, -0.042] that excluded 0."""
    a, b = _pairs(6, 1, 20)  # -0.25 over 20 documents, exact p = 0.125
    result = stats.paired_test(a, b)
    assert result.summary.mean == -0.25
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0 < result.ci_high and result.p is not None and result.p > 0.05


def test_continuous_rows_keep_the_t_interval_and_equal_differences_get_no_interval() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=30)
    b = a + rng.normal(0.2, 1.0, size=30)
    result = stats.paired_test(a, b)
    interval = sps.ttest_rel(b, a).confidence_interval(0.95)
    assert result.test == stats.PAIRED_T and result.interval == stats.T_INTERVAL
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    shifted = stats.paired_test([0.5] * 12, [0.75] * 12)  # 12 documents, all moved +0.25
    assert (shifted.test, shifted.ci_low, shifted.ci_high) == (stats.SIGN, None, None)
    assert shifted.p == pytest.approx(sps.binomtest(12, 12).pvalue) and shifted.p > 1e-4


@pytest.mark.parametrize(("right_to_wrong", "wrong_to_right", "n"), BINARY_CASES)
@pytest.mark.parametrize("margin", [0.02, 0.1, 0.3])
def test_the_margin_test_is_the_dual_of_the_interval(
    right_to_wrong: int, wrong_to_right: int, n: int, margin: float
) -> None:
    """One-sided p < alpha exactly when the (1 - 2 alpha) interval's lower limit is above
    -margin, where that limit is the conditional one (flips both ways, m > margin n)."""
    p = stats.mcnemar_margin_p(right_to_wrong, wrong_to_right, n, margin)
    m = right_to_wrong + wrong_to_right
    if m > margin * n and wrong_to_right > 0:
        pi0 = (1 - margin * n / m) / 2
        assert p == pytest.approx(sps.binomtest(wrong_to_right, m, pi0, "greater").pvalue)
    else:  # the right->wrong rate: delta <= -margin needs a rate of at least margin
        assert p == pytest.approx(sps.binomtest(right_to_wrong, n, margin, "less").pvalue)
    for alpha in (0.025, 0.05):
        low, _ = stats.mcnemar_interval(right_to_wrong, wrong_to_right, n, 1 - 2 * alpha)
        if m > margin * n or wrong_to_right == 0:
            assert (p < alpha) == (low > -margin)
        else:  # too few flips for the conditional limit to reach the margin: the rate decides
            assert low > -margin and p >= sps.binom.pmf(0, n, margin)


def test_twelve_documents_all_moved_up_are_not_a_certainty() -> None:
    """The issue's zero-variance case: 12 questions all moved the same way. Nothing can be
    < 1e-4: the exact tests give 2 / 2^12 two-sided and the margin test its binomial p."""
    a, b = _pairs(0, 12, 12)
    result = stats.paired_test(a, b)
    assert result.p == pytest.approx(2 / 2**12) and result.p > 1e-4
    assert stats.mcnemar_margin_p(0, 12, 12, 0.02) == pytest.approx(0.49**12)  # 1.9e-4
    assert stats.mcnemar_margin_p(0, 0, 12, 0.02) == pytest.approx(0.98**12)  # nothing moved
