"""Blends: two models certified as one (one exact bound at the whole alpha), routed by a second hash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smart_spark.engine import SmartConfig, SmartEngine, payoff, profiler
from smart_spark.engine.bounds import cp_lower
from smart_spark.engine.plan import Plan, blend_member, split_unit_hash, stable_unit_hash
from smart_spark.engine.profiler import AnswerArrays


def _plan(**overrides) -> Plan:
    values = dict(
        fractions={"a": 0.36, "b": 0.54, "ref": 0.10}, reference="ref", accuracy_target=0.9, confidence=0.95,
        remaining_target=0.89, n_total=10_000, n_remaining=9_000,
        unit_costs={"a": 0.01, "b": 0.05, "ref": 1.0}, bounds={"ref": 1.0}, alphas={"a": 0.05, "b": 0.05},
        seed=3, blend={"a": 0.4, "b": 0.6}, blend_bound=0.88,
    )
    values.update(overrides)
    return Plan(**values)


def test_route_is_one_block_then_the_split_hash():
    plan = _plan()
    keys = [f"row-{i}" for i in range(4_000)]
    routed = [plan.route(k) for k in keys]
    units = np.array([stable_unit_hash(k, 3) for k in keys])
    split = np.array([split_unit_hash(k, 3) for k in keys])
    ordered = sorted(plan.fractions)
    assert [ordered[i] for i in plan.route_units(units, split)] == routed
    in_blend = [r for r in routed if r in plan.blend]
    assert abs(len(in_blend) / len(keys) - 0.90) < 0.03
    assert abs(in_blend.count("a") / len(in_blend) - 0.4) < 0.04
    # inside the block the member is the split hash's, whatever the route hash says
    assert all(r == blend_member(plan.blend, s) for r, s in zip(routed, split) if r in plan.blend)
    with pytest.raises(ValueError, match="split_units"):
        plan.route_units(units)


def test_json_round_trip_and_old_plans_without_blend():
    plan = _plan()
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.route("x") == plan.route("x")
    old = json.loads(plan.to_json())
    for name in ("blend", "blend_bound"):
        old.pop(name)
    old["bounds"] = {"a": 0.85, "b": 0.93, "ref": 1.0}
    loaded = Plan.from_json(json.dumps(old))
    assert loaded.blend == {} and loaded.route("x") in loaded.fractions


def test_agreement_bound_uses_the_blend_bound():
    plan = _plan()
    assert plan.agreement_bound == pytest.approx((1_000 + 9_000 * (0.9 * 0.88 + 0.1)) / 10_000)
    assert "certified as one model" in plan.summary()


@pytest.mark.parametrize("blend", [{"a": 0.5}, {"a": 0.5, "zz": 0.5}, {"a": 0.3, "b": 0.3}])
def test_invalid_blend_raises(blend):
    with pytest.raises(ValueError, match="blend"):
        _plan(blend=blend)


def test_profiler_scores_each_confirmation_row_by_its_split_member(monkeypatch):
    """A always agrees, B never: the blend's count is the number of rows the split hash gives to A."""
    n_total, keys = 4_000, [f"id{i}" for i in range(4_000)]
    config = SmartConfig(0.5, 0.95, seed=5, pilot_size=40)
    blend = {"A": 0.5, "B": 0.5}
    monkeypatch.setattr(profiler, "decide_confirmation",
                        lambda summary, method: payoff.Confirmation(400, {"A+B": config.error_budget}, 0.0, blend))

    def source(model, positions):
        ok = np.ones(len(positions), dtype=bool)
        keys_ = ok if model in ("ref", "A") else ~ok
        return AnswerArrays(keys=keys_, costs=np.full(len(positions), {"ref": 1.0, "A": 0.01, "B": 0.02}[model]), ok=ok)

    engine = SmartEngine(config, ["A", "B", "ref"], "ref", solver="enumerate", max_parallel_models=1,
                         row_keys=lambda positions: [keys[p] for p in positions])
    result = engine.run(n_total, n_total, source)
    stats = result.profile.stats["A+B"]
    confirmation = range(40, 40 + stats.n)
    expected = sum(blend_member(blend, split_unit_hash(keys[p], 5)) == "A" for p in confirmation)
    assert stats.agreements == expected and 0 < expected < stats.n
    assert stats.lower == pytest.approx(float(cp_lower(expected, stats.n, stats.level)))
    assert result.profile.stats["A"].status == "blended"
    plan = result.plan
    assert plan.blend == blend and plan.blend_bound == pytest.approx(plan.bounds.get("A+B", plan.blend_bound))
    assert plan.fractions["A"] == pytest.approx(plan.fractions["B"])
    assert plan.agreement_bound >= 0.5 - 1e-9


def test_day2_confirmation_flags_a_blend_whose_members_drifted():
    """Day 2 confirms a blend plan's members (Bonferroni, valid); the blend fails when its weighted uppers drop."""
    from smart_spark.engine.confirm import PlanEstimates, confirm_plan

    plan = _plan(fractions={"a": 0.45, "b": 0.45, "ref": 0.10}, blend={"a": 0.5, "b": 0.5}, blend_bound=0.88,
                 n_total=20_000, n_remaining=20_000, remaining_target=0.9)
    config = SmartConfig(0.9, 0.95, seed=3, batch_size=4096)
    estimates = PlanEstimates({"a": (800, 690), "b": (800, 750)})
    rng = np.random.default_rng(0)

    def source_with(rate_a):
        flags = {"a": rng.random(20_000) < rate_a, "b": rng.random(20_000) < 0.94}

        def source(model, positions):
            positions = np.asarray(positions, dtype=np.int64)
            keys = flags[model][positions] if model in flags else np.ones(len(positions), dtype=bool)
            return AnswerArrays(keys=keys, costs=np.full(len(positions), plan.unit_costs[model]),
                                ok=np.ones(len(positions), dtype=bool))
        return source

    fine = confirm_plan(plan, 20_000, 20_000, source_with(0.86), config, rates=estimates, solver="enumerate")
    assert fine.holds
    drifted = confirm_plan(plan, 20_000, 20_000, source_with(0.50), config, rates=estimates, solver="enumerate")
    assert not drifted.holds and set(drifted.failing_models) == {"a", "b"}
    assert drifted.plan.agreement_bound >= 0.9 - 1e-9 or set(drifted.plan.fractions) == {"ref"}
