"""Cascades as planner options beside plain models: chosen when cheapest, promise kept (small simulation)."""

from __future__ import annotations

import math

import numpy as np

from jobs.sim_cascade_mix import run_setting
from smart_spark.engine.cascade_options import cascade_flags, pick_threshold, plan_with_cascade_options


def _sample(n: int, seed: int):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    cheap = rng.uniform(size=n) < confidence  # calibrated
    plain = rng.uniform(size=n) < 0.93
    return confidence, cheap, plain


def test_the_planner_takes_the_cascade_when_it_is_cheapest():
    confidence, cheap, plain = _sample(600, 1)
    costs = {"cheap": 1 / 16, "plain": 0.9, "reference": 1.0}
    solution, cascades = plan_with_cascade_options(
        {"cheap": cheap, "plain": plain}, {"cheap": confidence}, costs, reference="reference", n_total=5000,
        accuracy_target=0.9, confidence=0.9, pilot_size=200,
    )
    (name,) = cascades
    assert cascades[name].model == "cheap" and math.isfinite(cascades[name].threshold)
    assert solution.fractions.get(name, 0.0) > 0.5
    assert solution.cost_per_item < 0.6


def test_a_cheap_plain_model_above_the_target_beats_the_cascade():
    confidence, cheap, plain = _sample(600, 2)
    costs = {"cheap": 1 / 16, "plain": 0.05, "reference": 1.0}
    solution, _ = plan_with_cascade_options(
        {"cheap": cheap, "plain": plain}, {"cheap": confidence}, costs, reference="reference", n_total=5000,
        accuracy_target=0.9, confidence=0.9, pilot_size=200,
    )
    assert max(solution.fractions, key=solution.fractions.get) == "plain"


def test_pick_threshold_escalates_the_unsure_rows():
    confidence, cheap, _ = _sample(400, 3)
    t = pick_threshold(confidence, cheap, 1 / 16, 1.0, 0.9)
    assert 0.5 < t < 1.0
    assert cascade_flags(confidence, cheap, t).mean() > cheap.mean()


def test_promise_holds_beside_plain_models_near_the_target():
    result = run_setting(300, 0.8, 0.9, runs=100, seed=11)
    assert result["violation_rate"] <= result["noise_band"]
