"""Clopper-Pearson bounds and group bounds against scipy reference values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from smart_spark.engine.bounds import cp_lower, cp_upper, effective_size, group_lower

CASES = [
    (1, 10, 0.05),
    (5, 10, 0.05),
    (9, 10, 0.025),
    (45, 50, 0.05),
    (90, 100, 0.01),
    (180, 200, 0.05),
    (950, 1000, 0.001),
    (3, 7, 0.2),
    (4990, 5000, 0.0125),
]


@pytest.mark.parametrize("k, n, alpha", CASES)
def test_cp_lower_matches_scipy_beta(k, n, alpha):
    expected = stats.beta.ppf(alpha, k, n - k + 1)
    assert float(cp_lower(k, n, alpha)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("k, n, alpha", CASES)
def test_cp_upper_matches_scipy_beta(k, n, alpha):
    if k == n:
        pytest.skip("k == n handled by the edge-case test")
    expected = stats.beta.ppf(1 - alpha, k + 1, n - k)
    assert float(cp_upper(k, n, alpha)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("k, n, alpha", CASES)
def test_cp_bounds_defining_property(k, n, alpha):
    lower = float(cp_lower(k, n, alpha))
    upper = float(cp_upper(k, n, alpha))
    # lower bound L: P[Binom(n, L) >= k] == alpha
    assert stats.binom.sf(k - 1, n, lower) == pytest.approx(alpha, rel=1e-6)
    # upper bound U: P[Binom(n, U) <= k] == alpha
    assert stats.binom.cdf(k, n, upper) == pytest.approx(alpha, rel=1e-6)
    assert 0.0 < lower < k / n < upper < 1.0


def test_edge_cases():
    assert float(cp_lower(0, 10, 0.05)) == 0.0
    assert float(cp_lower(0, 1000, 0.05)) == 0.0
    assert float(cp_upper(10, 10, 0.05)) == 1.0
    assert float(cp_upper(1000, 1000, 0.05)) == 1.0
    assert float(cp_lower(0, 0, 0.05)) == 0.0
    assert float(cp_upper(0, 0, 0.05)) == 1.0
    # k == n: lower bound alpha ** (1 / n)
    assert float(cp_lower(10, 10, 0.05)) == pytest.approx(0.05 ** (1 / 10), rel=1e-12)
    # k == 0: upper bound 1 - alpha ** (1 / n)
    assert float(cp_upper(0, 10, 0.05)) == pytest.approx(1 - 0.05 ** (1 / 10), rel=1e-12)
    # all bounds are in [0, 1] and finite
    for value in (cp_lower(0, 0, 0.5), cp_upper(0, 0, 0.5), cp_lower(5, 5, 1e-12)):
        assert np.isfinite(value) and 0.0 <= float(value) <= 1.0


def test_monotone_in_alpha_and_n():
    alphas = np.array([0.001, 0.01, 0.05, 0.1, 0.3])
    lowers = cp_lower(90, 100, alphas)
    uppers = cp_upper(90, 100, alphas)
    assert np.all(np.diff(lowers) > 0)
    assert np.all(np.diff(uppers) < 0)
    ns = np.array([10, 100, 1000, 10000])
    assert np.all(np.diff(cp_lower(0.9 * ns, ns, 0.05)) > 0)
    assert np.all(np.diff(cp_upper(0.9 * ns, ns, 0.05)) < 0)


def test_vectorised_over_arrays():
    k = np.array([[0, 5, 10], [45, 50, 20]])
    n = np.array([[10, 10, 10], [50, 50, 40]])
    alpha = np.array([0.05, 0.01, 0.1])  # broadcasts along the last axis
    lower = cp_lower(k, n, alpha)
    upper = cp_upper(k, n, alpha)
    assert lower.shape == upper.shape == (2, 3)
    for idx in np.ndindex(k.shape):
        a = alpha[idx[1]]
        assert lower[idx] == pytest.approx(float(cp_lower(int(k[idx]), int(n[idx]), a)), abs=1e-15)
        assert upper[idx] == pytest.approx(float(cp_upper(int(k[idx]), int(n[idx]), a)), abs=1e-15)
    assert lower[0, 0] == 0.0
    assert upper[0, 2] == 1.0 and upper[1, 1] == 1.0
    assert lower[1, 0] == pytest.approx(stats.beta.ppf(0.05, 45, 6), rel=1e-9)


def test_non_integer_counts_use_continuous_extension():
    # effective sample sizes give fractional counts; the bound must be monotone and finite
    k = np.linspace(80, 90, 21)
    lower = cp_lower(k, 100.0, 0.05)
    assert np.all(np.isfinite(lower)) and np.all(np.diff(lower) > 0)
    assert float(cp_lower(89.5, 99.5, 0.05)) == pytest.approx(
        stats.beta.ppf(0.05, 89.5, 11.0), rel=1e-9
    )


def test_effective_size():
    assert float(effective_size(100, np.inf)) == 100.0
    assert float(effective_size(100, 100)) == pytest.approx(50.0)
    assert float(effective_size(100, 300)) == pytest.approx(75.0)
    sizes = effective_size(100, np.array([1, 10, 100, 1e3, 1e6, np.inf]))
    assert np.all(np.diff(sizes) > 0) and np.all(sizes <= 100.0)


def test_group_lower_infinite_group_is_plain_cp():
    for k, n, alpha in CASES:
        plain = float(cp_lower(k, n, alpha))
        assert float(group_lower(k, n, alpha, np.inf, np.inf)) == pytest.approx(plain, rel=1e-12)


def test_group_lower_smaller_groups_give_smaller_bounds():
    k, n, alpha = 180, 200, 0.05
    plain = float(cp_lower(k, n, alpha))
    groups = np.array([5.0, 20.0, 100.0, 1_000.0, 10_000.0, 1e6])
    bounds = group_lower(k, n, alpha, groups, 1e7)
    assert np.all(bounds < plain)
    assert np.all(np.diff(bounds) > 0)  # monotone increasing in group size
    assert bounds[-1] == pytest.approx(plain, abs=1e-3)
    # the group is capped at the remaining items
    assert float(group_lower(k, n, alpha, 1e9, 500)) == pytest.approx(
        float(group_lower(k, n, alpha, 500, 500)), rel=1e-12
    )
    # equals the plain bound at the effective size with the scaled count
    m = 300.0
    n_eff = n * m / (n + m)
    assert float(group_lower(k, n, alpha, m, 1e7)) == pytest.approx(
        float(cp_lower(k * n_eff / n, n_eff, alpha)), rel=1e-12
    )
    assert float(group_lower(0, 0, alpha, 100, 100)) == 0.0


@pytest.mark.parametrize("p", [0.8, 0.9, 0.95])
def test_cp_lower_coverage(p):
    n, alpha, draws = 200, 0.05, 20_000
    rng = np.random.default_rng(int(p * 1000))
    k = rng.binomial(n, p, size=draws)
    miss_rate = float(np.mean(cp_lower(k, n, alpha) > p))
    se = np.sqrt(alpha * (1 - alpha) / draws)
    assert miss_rate <= alpha + 3 * se
    # and the upper bound
    miss_upper = float(np.mean(cp_upper(k, n, alpha) < p))
    assert miss_upper <= alpha + 3 * se


def test_approx_lower_tracks_the_exact_bound_used_for_plans():
    """The look-ahead's fast Wilson bound stays close to Clopper-Pearson where decisions are made."""
    from smart_spark.engine.bounds import approx_lower

    n = np.array([20, 50, 100, 500, 2000, 10000])
    for rate in (0.5, 0.8, 0.9, 0.95):
        for alpha in (0.05, 0.0125, 0.002):
            k = np.round(rate * n)
            gap = np.abs(approx_lower(k, n, alpha) - cp_lower(k, n, alpha))
            assert np.all(gap <= 0.04), (rate, alpha, gap)
            assert np.all(gap[n >= 500] <= 0.005), (rate, alpha, gap)
