"""The savings ceiling: its information-theoretic pieces, and that real runs stay under it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from smart_spark.engine.bounds import group_lower
from smart_spark.paper.ceiling import (
    routed_share,
    binary_kl,
    largest_probability,
    nearest_divergence,
    savings_ceiling,
    told_in_advance_plan,
    told_in_advance_savings,
)
from smart_spark.paper.simulation import SimDataset, SimModel, run_trial


def test_single_model_divergence_is_the_binary_kl_below_the_rate_and_zero_above():
    levels = np.array([0.5, 0.8, 0.899, 0.95])
    got = nearest_divergence(np.array([0.9]), np.array([1.0]), levels)
    assert got[:3] == pytest.approx(binary_kl(0.9, levels[:3]), rel=1e-6)
    assert got[3] == 0.0


def test_pair_divergence_is_the_minimum_over_worlds_meeting_the_level():
    """Against a generic solver over every joint distribution of the two flags."""
    rates, weights, level = np.array([0.9, 0.95]), np.array([0.4, 0.6]), 0.88
    got = float(nearest_divergence(rates, weights, np.array([level]))[0])
    cells = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    truth = np.prod(np.where(cells == 1, rates, 1 - rates), axis=1)
    result = optimize.minimize(
        lambda q: float(np.sum(truth * np.log(truth / q))),
        truth,
        method="SLSQP",
        bounds=[(1e-9, 1)] * 4,
        constraints=[
            {"type": "eq", "fun": lambda q: q.sum() - 1},
            {"type": "eq", "fun": lambda q: q @ (cells @ weights) - level},
        ],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert result.success
    assert got == pytest.approx(result.fun, rel=1e-4)


def testlargest_probability_inverts_the_binary_kl():
    budget = np.array([0.0, 0.5, 2.0, 10.0])
    g = largest_probability(budget, 0.05)
    assert g[0] == pytest.approx(0.05)
    assert binary_kl(g[1:3], 0.05) == pytest.approx(budget[1:3], rel=1e-4)
    assert g[3] == 1.0  # kl(1, 0.05) = log 20 < 10: certainty is affordable


def test_ceiling_falls_as_the_promise_gets_harder():
    candidates = {"cheap": (0.94, 0.03), "middle": (0.9, 0.05)}
    by_target = [savings_ceiling(5000, t, 0.95, candidates, 1.0).savings for t in (0.8, 0.88, 0.92)]
    by_confidence = [savings_ceiling(5000, 0.88, c, candidates, 1.0).savings for c in (0.8, 0.95, 0.99)]
    assert by_target == sorted(by_target, reverse=True)
    assert by_confidence == sorted(by_confidence, reverse=True)
    assert by_target[0] < 1 / 0.03  # profiling is never free


def test_no_candidate_cheaper_than_the_reference_gives_no_savings():
    ceiling = savings_ceiling(1000, 0.9, 0.95, {"dear": (0.99, 2.0)}, 1.0)
    assert (ceiling.savings, ceiling.models) == (1.0, ())


def test_engine_runs_stay_under_the_ceiling():
    """The engine is a valid procedure, so its mean savings cannot beat the ceiling."""
    dataset = SimDataset(
        "sms-like", 5574, SimModel("reference", 1.0, 1.0),
        (SimModel("cheap", 0.94, 0.0333), SimModel("middle", 0.88, 0.0425)),
    )
    candidates = {m.name: (m.agreement, m.unit_cost) for m in dataset.candidates}
    for target in (0.8, 0.9):
        ceiling = savings_ceiling(dataset.n_items, target, 0.95, candidates, 1.0)
        runs = [run_trial(dataset, target, "mix", seed=s, solver="enumerate")["savings"] for s in range(6)]
        assert 0.5 * ceiling.savings < np.mean(runs) <= ceiling.savings
        assert ceiling.models == ("cheap",)


def test_told_look_with_routing_noise_keeps_a_valid_share_and_costs_at_least_the_plain_one():
    candidates = {"cheap": (0.94, 1 / 30)}
    for target in (0.84, 0.94):
        plain = told_in_advance_plan(5574, target, 0.95, candidates, 1.0)
        routed = told_in_advance_plan(5574, target, 0.95, candidates, 1.0, routed=True)
        assert plain[0] == pytest.approx(told_in_advance_savings(5574, target, 0.95, candidates, 1.0))
        assert routed[0] <= plain[0] + 1e-12 and routed[1] == "cheap"
    # Where the told look shares the rows with the reference, the routed group's bound costs some savings.
    assert routed[0] < plain[0]
    left = 5574 - routed[2]
    share = routed_share(np.array([round(0.94 * routed[2])]), np.array([routed[2]]), 0.05, np.array([left]),
                          np.array([(0.94 * 5574 - routed[2]) / left]), np.array([1.0]), group_lower)
    bound = group_lower(round(0.94 * routed[2]), routed[2], 0.05, share[0] * left, left)
    assert share[0] * bound + (1 - share[0]) >= (0.94 * 5574 - routed[2]) / left - 1e-9
