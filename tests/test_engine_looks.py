"""Correlated confirmation looks: the inflation factor keeps every look's bound jointly at 1 - alpha."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from smart_spark.engine.bounds import cp_lower
from smart_spark.engine.looks import joint_failure, look_inflation
from smart_spark.engine.payoff import look_schedule


def test_one_look_gains_nothing():
    assert look_inflation([500], [1.0], 0.05) == 1.0


def test_joint_failure_matches_monte_carlo():
    times, weights, alpha, factor = (0.125, 0.25, 0.5, 1.0), (0.1, 0.2, 0.3, 0.4), 0.05, 1.3
    rng = np.random.default_rng(7)
    steps = rng.standard_normal((200_000, 4)) * np.sqrt(np.diff((0.0, *times)))
    walk = np.cumsum(steps, axis=1) / np.sqrt(times)
    edges = stats.norm.isf(factor * np.asarray(weights) * alpha)
    simulated = (walk > edges).any(axis=1).mean()
    assert joint_failure(times, weights, alpha, factor) == pytest.approx(simulated, abs=0.002)


def test_closer_looks_allow_more():
    spread = look_inflation([100, 1_000], [0.5, 0.5], 0.05)
    close = look_inflation([100, 120], [0.5, 0.5], 0.05)
    assert 1.0 < spread < close <= 2.0


def _exact_failure(sizes, lowers, p) -> float:
    """P(some look's plain Clopper-Pearson lower bound exceeds p), by enumerating the binomial walk."""
    counts, done, failed = np.array([1.0]), 0, 0.0
    for n, lower in zip(sizes, lowers):
        counts = np.convolve(counts, stats.binom.pmf(np.arange(n - done + 1), n - done, p))
        done = n
        above = lower > p
        failed += counts[above].sum()
        counts = np.where(above, 0.0, counts)
    return failed


@pytest.mark.parametrize("planned, max_more, alpha", [(40, 10_000, 0.05), (120, 10_000, 0.0125), (150, 400, 0.0375)])
def test_discrete_bounds_hold_jointly(planned, max_more, alpha):
    """The factor from the normal limit keeps the exact binomial failure probability within alpha."""
    looks = look_schedule(planned, max_more)
    sizes = [s for s, _ in looks]
    factor = look_inflation(sizes, [w for _, w in looks], alpha)
    assert factor > 1.1
    lowers = [cp_lower(np.arange(n + 1), n, factor * w * alpha) for n, w in looks]
    # The failure probability jumps up where p falls below a bound: check just below the bounds, plus a grid.
    jumps = np.unique(np.concatenate(lowers))
    jumps = jumps[(jumps > 0.5) & (jumps < 0.995)] - 1e-9
    jumps = jumps[np.linspace(0, len(jumps) - 1, min(len(jumps), 300)).astype(int)]
    worst = max(_exact_failure(sizes, lowers, p) for p in np.concatenate([np.linspace(0.5, 0.995, 60), jumps]))
    assert worst <= alpha
