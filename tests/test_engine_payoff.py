"""The pays-off rule: look schedule, size grid, confirmation decision."""

from __future__ import annotations

import numpy as np
import pytest

from smart_spark.engine.payoff import (
    LOOK_WEIGHTS,
    PilotSummary,
    candidate_allocations,
    decide_confirmation,
    look_schedule,
    posterior_scenarios,
    remaining_target,
    size_grid,
)


def test_look_weights_sum_to_one():
    assert sum(LOOK_WEIGHTS) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "planned, max_more",
    [(10, 10_000), (40, 10_000), (100, 10_000), (1_000, 100_000), (500, 600), (800, 800), (5, 3), (3_000, 1_000)],
)
def test_look_schedule(planned, max_more):
    looks = look_schedule(planned, max_more)
    sizes = [size for size, _ in looks]
    weights = [weight for _, weight in looks]
    assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert all(w > 0 for w in weights)
    assert all(b > a for a, b in zip(sizes, sizes[1:]))  # strictly increasing
    assert all(0 < s <= max_more for s in sizes)
    assert sizes[-1] <= max_more


def test_look_schedule_uncapped_shape():
    looks = look_schedule(800, 100_000)
    assert [s for s, _ in looks] == [100, 200, 400, 800, 1600, 3200]
    assert dict(looks)[800] == pytest.approx(0.45)


def test_look_schedule_pools_collapsed_looks():
    looks = look_schedule(800, 1_000)
    assert [s for s, _ in looks] == [100, 200, 400, 800, 1000]
    assert dict(looks)[1000] == pytest.approx(0.25)


@pytest.mark.parametrize("max_more", [1, 5, 10, 11, 100, 1_234, 100_000])
def test_size_grid(max_more):
    grid = size_grid(max_more)
    assert grid[0] == 0
    assert grid[-1] == max_more
    assert np.all(np.diff(grid) > 0)


def test_size_grid_empty():
    assert size_grid(0).tolist() == [0]
    assert size_grid(-3).tolist() == [0]


def test_remaining_target():
    assert float(remaining_target(0.9, 1000, 100)) == pytest.approx((900 - 100) / 900)
    assert float(remaining_target(0.9, 1000, 0)) == pytest.approx(0.9)
    assert float(remaining_target(0.5, 1000, 600)) <= 0.0


def test_posterior_scenarios_are_independent_posterior_quantiles():
    from scipy import stats

    from smart_spark.engine.payoff import SCENARIOS

    counts = {"a": (30, 27), "b": (30, 15)}
    rates = posterior_scenarios(counts, ["a", "b"])
    assert rates.shape == (SCENARIOS, 2)
    levels = (np.arange(SCENARIOS) + 0.5) / SCENARIOS
    for column, (n, k) in enumerate(counts.values()):
        # Each model's draws are exactly its Jeffreys posterior quantiles...
        expected = stats.beta.ppf(levels, k + 0.5, n - k + 0.5)
        np.testing.assert_allclose(np.sort(rates[:, column]), expected)
    # ...paired up independently across models (not all models high together).
    assert not np.array_equal(np.argsort(rates[:, 0]), np.argsort(rates[:, 1]))
    # Deterministic: the decision depends on the counts only.
    np.testing.assert_array_equal(rates, posterior_scenarios(counts, ["a", "b"]))


def test_candidate_allocations():
    allocations = candidate_allocations(3)
    singles = [a for a in allocations if len(a) == 1]
    pairs = [a for a in allocations if len(a) == 2]
    assert len(singles) == 3
    assert pairs and all(sum(share for _, share in a) == pytest.approx(1.0) for a in pairs)


def _pilot(counts, unit_costs, n_total=100_000, n_profiled=30, target=0.9, max_more=None):
    return PilotSummary(
        counts=counts,
        unit_costs=unit_costs,
        reference="ref",
        n_total=n_total,
        n_profiled=n_profiled,
        accuracy_target=target,
        budget=0.05,
        max_more=n_total - n_profiled if max_more is None else max_more,
    )


@pytest.mark.parametrize("method", ["mix", "single", "single-early-stop"])
def test_no_cheaper_candidate_gives_size_zero(method):
    pilot = _pilot({"dear": (30, 30), "same": (30, 30)}, {"dear": 0.05, "same": 0.03, "ref": 0.03})
    decision = decide_confirmation(pilot, method)
    assert decision.size == 0
    assert decision.alphas == {}
    assert decision.expected_total_cost == pytest.approx((100_000 - 30) * 0.03)


def test_no_candidates_gives_size_zero():
    decision = decide_confirmation(_pilot({}, {"ref": 0.03}), "mix")
    assert decision.size == 0 and decision.alphas == {}


def test_nothing_left_gives_size_zero():
    pilot = _pilot({"cheap": (30, 30)}, {"cheap": 0.001, "ref": 0.03}, n_total=30, n_profiled=30, max_more=0)
    assert decide_confirmation(pilot, "mix").size == 0


@pytest.mark.parametrize("method", ["mix", "single", "single-early-stop"])
def test_good_cheap_candidate_is_confirmed(method):
    pilot = _pilot(
        {"cheap": (30, 30), "bad": (30, 5)},
        {"cheap": 0.001, "bad": 0.0005, "ref": 0.03},
    )
    decision = decide_confirmation(pilot, method)
    assert decision.size > 0
    assert "cheap" in decision.alphas
    if method != "mix":
        # single methods confirm one model; the mix may rationally confirm a small
        # share of a poor but cheaper model alongside the good one
        assert decision.alphas == {"cheap": pytest.approx(0.05)}
    assert sum(decision.alphas.values()) <= 0.05 + 1e-12
    assert decision.size <= pilot.max_more
    if method != "single":  # "single" does not estimate the total
        assert decision.expected_total_cost < (100_000 - 30) * 0.03


def test_mix_single_good_candidate_takes_whole_budget():
    pilot = _pilot({"cheap": (30, 30)}, {"cheap": 0.001, "ref": 0.03})
    decision = decide_confirmation(pilot, "mix")
    assert decision.size > 0
    assert decision.alphas == {"cheap": pytest.approx(0.05)}


def test_mix_expected_total_is_cheaper_than_stop():
    pilot = _pilot({"cheap": (30, 30)}, {"cheap": 0.001, "ref": 0.03})
    decision = decide_confirmation(pilot, "mix")
    # confirming then routing to the cheap model must be far cheaper than the reference
    assert decision.expected_total_cost < 0.2 * (100_000 - 30) * 0.03


@pytest.mark.parametrize("n_items, target, confidence", [(300, 0.98, 0.99), (1_000, 0.90, 0.95), (3_000, 0.80, 0.80)])
def test_best_possible_saving_bounds_what_a_perfect_model_saves(n_items, target, confidence):
    """Even a candidate that always agrees cannot save more than the bound (pilot included)."""
    from smart_spark.engine.payoff import best_possible_saving
    from smart_spark.engine.profiler import auto_pilot_size
    from smart_spark.paper.simulation import SimDataset, SimModel, run_trial

    dataset = SimDataset("perfect", n_items, SimModel("ref", 1.0, 1.0), (SimModel("perfect", 1.0, 0.05),))
    pilot = auto_pilot_size(n_items)
    bound = best_possible_saving(n_items, pilot, target, 1 - confidence, 0.05, 1.0)
    for seed in range(3):
        run = run_trial(dataset, target, "mix", confidence, seed, solver="enumerate")
        assert run["reference_cost"] - run["cost"] <= bound + 1e-9
    assert bound > 0
    assert best_possible_saving(n_items, pilot, target, 1 - confidence, 1.0, 1.0) == 0.0


def test_pilot_prediction_prices_in_the_routed_group():
    """A model that would get a small share is worth less than its confirmation count suggests."""
    base = dict(unit_costs={"ref": 1.0, "a": 0.05}, reference="ref", n_total=2_000, n_profiled=20,
                accuracy_target=0.95, budget=0.05, counts={"a": (20, 18)}, max_more=1_980)
    aware = decide_confirmation(PilotSummary(**base), "mix")
    naive = decide_confirmation(PilotSummary(**base, group_aware=False), "mix")
    assert aware.expected_total_cost > naive.expected_total_cost
