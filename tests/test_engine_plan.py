"""Plan: serialisation, stable routing across processes, escalation, cost arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smart_spark.engine.plan import Plan, stable_unit_hash

ROOT = Path(__file__).resolve().parents[1]


def _plan(**overrides) -> Plan:
    values = dict(
        fractions={"cheap": 0.5, "mid": 0.3, "ref": 0.2},
        reference="ref",
        accuracy_target=0.9,
        confidence=0.95,
        remaining_target=0.88,
        n_total=10_000,
        n_remaining=9_000,
        unit_costs={"cheap": 0.001, "mid": 0.004, "ref": 0.03, "unused": 0.002},
        bounds={"cheap": 0.85, "mid": 0.93, "ref": 1.0},
        alphas={"cheap": 0.025, "mid": 0.025},
        method="mix",
        seed=7,
    )
    values.update(overrides)
    return Plan(**values)


def test_json_round_trip():
    plan = _plan()
    text = plan.to_json()
    assert json.loads(text)["fractions"] == plan.fractions
    again = Plan.from_json(text)
    assert again == plan
    assert again.to_json() == text
    assert [again.route(f"k{i}") for i in range(200)] == [plan.route(f"k{i}") for i in range(200)]


@pytest.mark.parametrize(
    "fractions",
    [{}, {"a": 0.5, "ref": 0.4}, {"a": 0.7, "ref": 0.7}, {"a": -0.2, "ref": 1.2}, {"a": 1.1}],
)
def test_invalid_fractions_raise(fractions):
    with pytest.raises(ValueError):
        _plan(fractions=fractions)


def test_route_deterministic_and_in_plan():
    plan = _plan()
    keys = [f"row-{i}" for i in range(2_000)]
    first = [plan.route(k) for k in keys]
    assert first == [plan.route(k) for k in keys]
    assert set(first) <= set(plan.fractions)
    assert all(0.0 <= stable_unit_hash(k, 7) < 1.0 for k in keys[:100])
    # non-string keys hash by their str()
    assert plan.route(123) == plan.route("123")


def test_route_identical_across_processes():
    plan = _plan()
    keys = [f"id-{i}" for i in range(1_000)]
    parent = [plan.route(k) for k in keys]
    code = (
        "import json, sys\n"
        "from smart_spark.engine.plan import Plan\n"
        "plan = Plan.from_json(sys.stdin.read())\n"
        "print(json.dumps([plan.route(f'id-{i}') for i in range(1000)]))\n"
    )
    parent_seed = os.environ.get("PYTHONHASHSEED", "")
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "12345" if parent_seed != "12345" else "54321"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=plan.to_json(),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    child = json.loads(out.stdout)
    assert child == parent


def test_realised_split_matches_fractions():
    plan = _plan()
    n = 100_000
    routed = [plan.route(str(i)) for i in range(n)]
    models, counts = np.unique(routed, return_counts=True)
    realised = dict(zip(models.tolist(), counts.tolist()))
    for model, share in plan.fractions.items():
        se = np.sqrt(share * (1 - share) / n)
        assert abs(realised.get(model, 0) / n - share) <= 4 * se, (model, realised)


def test_single_model_plan_routes_everything_there():
    plan = _plan(fractions={"ref": 1.0})
    assert {plan.route(f"k{i}") for i in range(500)} == {"ref"}


def test_different_seeds_route_differently():
    keys = [f"k{i}" for i in range(2_000)]
    a = [_plan(seed=1).route(k) for k in keys]
    b = [_plan(seed=2).route(k) for k in keys]
    differ = sum(x != y for x, y in zip(a, b)) / len(keys)
    # independent routings with shares .5/.3/.2 disagree on 1 - (.25+.09+.04) = 62% of keys
    assert 0.5 < differ < 0.75
    assert stable_unit_hash("k", 1) != stable_unit_hash("k", 2)


def test_escalation():
    plan = _plan()
    assert plan.models_by_cost == ["cheap", "mid", "ref"]
    assert plan.escalation("cheap") == ["mid", "ref"]
    assert plan.escalation("mid") == ["ref"]
    assert plan.escalation("ref") == []


def test_escalation_skips_cheaper_models():
    plan = _plan(
        fractions={"a": 0.2, "b": 0.3, "c": 0.3, "ref": 0.2},
        unit_costs={"a": 0.001, "b": 0.002, "c": 0.003, "ref": 0.03},
        bounds={},
        alphas={},
    )
    assert plan.escalation("a") == ["b", "c", "ref"]
    assert plan.escalation("b") == ["c", "ref"]
    assert plan.escalation("c") == ["ref"]
    assert plan.escalation("ref") == []


def test_cost_arithmetic():
    plan = _plan()
    per_item = 0.5 * 0.001 + 0.3 * 0.004 + 0.2 * 0.03
    assert plan.expected_cost_per_item == pytest.approx(per_item, rel=1e-12)
    assert plan.expected_cost == pytest.approx(per_item * 9_000, rel=1e-12)
    assert plan.reference_only_cost == pytest.approx(0.03 * 9_000, rel=1e-12)
    ref_only = _plan(fractions={"ref": 1.0})
    assert ref_only.expected_cost == pytest.approx(ref_only.reference_only_cost)


def test_summary_mentions_every_model():
    plan = _plan()
    text = plan.summary()
    for model in plan.fractions:
        assert model in text
    assert "mix" in text and "9000" in text and "10000" in text
    assert "cheaper" in text
    # a zero-cost plan does not divide by zero
    free = _plan(fractions={"ref": 1.0}, unit_costs={"ref": 0.0}, bounds={}, alphas={})
    assert "ref" in free.summary()


def test_agreement_bound_counts_profiled_rows_as_exact():
    plan = _plan()
    remaining = 0.5 * 0.85 + 0.3 * 0.93 + 0.2 * 1.0
    assert plan.agreement_bound == pytest.approx((1_000 + 9_000 * remaining) / 10_000)
    assert "agreement over all rows >=" in plan.summary()


def test_plan_module_loads_without_the_solver_stack():
    """Executors import only the plan to route rows: no pulp, no engine internals."""
    code = (
        "import sys; import smart_spark.engine.plan; "
        "print(sorted(m for m in ('pulp', 'smart_spark.engine.profiler', 'smart_spark.engine.payoff') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
