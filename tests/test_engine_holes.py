"""Issue 10's holes, one check each: failed calls, reference failures, routing, small N."""

from __future__ import annotations

import json

import numpy as np

from smart_spark.engine import Profiler, SmartConfig, SmartEngine
from smart_spark.engine.plan import Plan, stable_unit_hash
from smart_spark.engine.profiler import AnswerArrays
from smart_spark.paper.simulation import item_units

REF = "ref"


def _arrays_source(fail_every: int, cost: float = 0.01, ref_fail_every: int = 0):
    """The candidate agrees wherever its call works and fails on every ``fail_every``-th item."""

    def source(model, positions):
        p = np.asarray(positions)
        if model == REF:
            ok = (p % ref_fail_every != 0) if ref_fail_every else np.ones(len(p), dtype=bool)
            return AnswerArrays(keys=np.ones(len(p), dtype=bool), costs=np.full(len(p), 1.0), ok=ok)
        ok = p % fail_every != 0
        return AnswerArrays(keys=np.ones(len(p), dtype=bool), costs=np.where(ok, cost, 0.0), ok=ok)

    return source


def test_failed_candidate_call_counts_as_a_disagreement():
    config = SmartConfig(0.5, 0.95, pilot_size=100, batch_size=50)
    profile = Profiler(config, ["cheap"], REF, _arrays_source(fail_every=5)).run(5000, 5000)
    stats = profile.stats["cheap"]
    assert stats.pilot_n == 100 and stats.pilot_agreements == 80
    if stats.n:
        assert stats.agreements / stats.n <= 0.81


def test_reference_failures_are_measured_and_left_out_of_the_profiled_rows():
    config = SmartConfig(0.5, 0.95, pilot_size=100, batch_size=50)
    profile = Profiler(config, ["cheap"], REF, _arrays_source(5, ref_fail_every=10)).run(5000, 5000)
    assert abs(profile.reference_failure_rate - 0.1) < 0.01
    assert profile.n_profiled == int(profile.reference_ok.sum()) < len(profile.positions)
    assert "reference failed on" in profile.summary()


def _plan(**extra) -> Plan:
    return Plan(
        fractions={"a": 0.3, "b": 0.5, "ref": 0.2}, reference="ref", accuracy_target=0.9, confidence=0.95,
        remaining_target=0.9, n_total=1000, n_remaining=900, unit_costs={"a": 0.01, "b": 0.1, "ref": 1.0},
        bounds={"a": 0.9, "b": 0.95}, **extra,
    )


def test_vectorised_routing_is_the_production_hash():
    plan = _plan()
    keys = [str(i) for i in range(2000)]
    units = item_units(2000, plan.seed)
    assert units[17] == stable_unit_hash("17", plan.seed)
    ordered = sorted(plan.fractions)
    assert [ordered[i] for i in plan.route_units(units)] == [plan.route(k) for k in keys]


def test_failure_slack_is_the_margin_of_the_promise_in_rows():
    plan = _plan()
    # 100 exact profiled rows + 900 * (0.3*0.9 + 0.5*0.95 + 0.2) = 950.5 rows -> bound 0.9505
    assert plan.failure_slack_rows == int(1000 * (plan.agreement_bound - 0.9) + 1e-9) == 50
    assert ": 50 " in plan.summary()


def test_expected_agreement_is_shown_apart_from_the_bound():
    plan = _plan(estimates={"a": 0.95, "b": 0.97, "ref": 1.0})
    assert plan.expected_agreement > plan.agreement_bound
    assert "(guaranteed)" in plan.summary() and "(estimate)" in plan.summary()


def test_plan_json_without_the_new_fields_still_loads():
    data = json.loads(_plan(reason="x", reference_failure_rate=0.01).to_json())
    for name in ("reason", "reference_failure_rate", "estimates"):
        data.pop(name)
    plan = Plan.from_json(json.dumps(data))
    assert plan.reason == "" and plan.failure_slack_rows == 50


def test_escalation_ends_at_the_reference():
    plan = _plan()
    assert plan.escalation("a") == ["b", "ref"] and plan.escalation("ref") == []


def test_profiling_that_cannot_pay_is_skipped_with_a_reason():
    calls = []

    def source(model, positions):
        calls.append(model)
        raise AssertionError("nothing may be called")

    prices = {REF: 1.0, **{f"m{i}": 0.9 for i in range(12)}}
    engine = SmartEngine(SmartConfig(0.98, 0.8), [*prices], REF, prices=prices)
    result = engine.run(300, 300, source)
    assert not calls
    assert result.plan.fractions == {REF: 1.0}
    assert result.profile.reason and result.plan.reason == result.profile.reason
    summary = result.profile.summary()
    assert "not profiled" in summary and "agreement" not in summary.split("not profiled")[1]
