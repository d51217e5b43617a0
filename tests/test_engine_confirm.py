"""Confirming a saved plan on new data (smart_spark.engine.confirm).

The guarantee is proved on day-2 populations drawn afresh (same agreement as
day 1, lower, far lower = drift): the plan the confirmation returns is applied
with the production routing hash in every run, whether or not it "holds", so
the bound itself is tested; the violation rate must stay within 1 - confidence
plus binomial noise. Longer runs and the figures: ``python -m jobs.bench_reuse``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from jobs.bench_reuse import day2_rows, day2_trial, fit_day1, shifted
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.confirm import (
    LOOKS,
    SINGLE_LOOK,
    PlanEstimates,
    confirm_plan,
    confirmation_design,
    confirmation_size,
)
from smart_spark.engine.looks import look_inflation
from smart_spark.engine.plan import Plan
from smart_spark.engine.profiler import AnswerArrays
from smart_spark.paper.simulation import SimDataset, SimModel

CONFIG = SmartConfig(0.9, 0.95, "mix", seed=7, batch_size=4096)
RUNS = 300  # per day-2 setting here; jobs/bench_reuse.py runs 1,000 and more
#: 1 - confidence plus three binomial standard deviations at RUNS runs.
MAX_VIOLATION_RATE = 0.05 + 3 * (0.05 * 0.95 / RUNS) ** 0.5

#: Agreement with gpt-4 and mean recorded cost per row of the 12 OVERRULING models
#: (computed from ../shared/data/overruling_12llm.csv by jobs.bench_reuse.overruling_like).
OVERRULING_LIKE = (
    ("gptneox_20B", 0.718, 0.000479), ("gptj_6B", 0.473, 6.85e-05), ("fairseq_gpt_13B", 0.599, 0.000202),
    ("text-davinci-002", 0.969, 0.00587), ("text-curie-001", 0.726, 0.000587), ("gpt-3.5-turbo", 0.948, 0.000597),
    ("j1-jumbo", 0.755, 0.0055), ("j1-grande", 0.686, 0.00096), ("j1-large", 0.728, 0.00036),
    ("xlarge", 0.909, 0.00318), ("medium", 0.485, 0.00318),
)


def _dataset(n_items: int, candidates) -> SimDataset:
    return SimDataset("day", n_items, SimModel("gpt-4", 1.0, 0.00895),
                      tuple(SimModel(name, rate, cost) for name, rate, cost in candidates))


def _plan(fractions, bounds, alphas, unit_costs, n_total=1000) -> Plan:
    return Plan(fractions=fractions, reference="ref", accuracy_target=0.9, confidence=0.95, remaining_target=0.9,
                n_total=n_total, n_remaining=n_total, unit_costs=unit_costs, bounds=bounds, alphas=alphas)


CHEAP_PLAN = _plan({"cheap": 0.7, "ref": 0.3}, {"cheap": 0.86, "ref": 1.0}, {"cheap": 0.05}, {"cheap": 0.01, "ref": 1.0})
ESTIMATES = PlanEstimates({"cheap": (400, 352)})  # day 1 saw 0.88


@dataclass
class Answer:
    label: str | None
    raw: str | None
    cost: float
    error: str | None = None


def _flag_source(flags: dict[str, np.ndarray], costs: dict[str, float], calls: list | None = None):
    def source(model, positions):
        if calls is not None:
            calls.append((model, list(positions)))
        positions = np.asarray(positions, dtype=np.int64)
        keys = flags[model][positions] if model in flags else np.ones(len(positions), dtype=bool)
        return AnswerArrays(keys=keys, costs=np.full(len(positions), costs[model]), ok=np.ones(len(positions), dtype=bool))

    return source


# --- design -----------------------------------------------------------------------------
def test_reference_only_plan_needs_no_confirmation_and_pays_nothing():
    plan = _plan({"ref": 1.0}, {"ref": 1.0}, {}, {"cheap": 0.01, "ref": 1.0})
    assert confirmation_size(plan, 5000, CONFIG) == 0
    calls = []
    result = confirm_plan(plan, 5000, 5000, _flag_source({}, {"ref": 1.0}, calls), CONFIG)
    assert calls == [] and result.spent == 0.0
    assert result.holds and result.decision == "reference-only"
    assert result.plan.fractions == {"ref": 1.0} and result.plan.n_remaining == 5000


def test_size_is_deterministic_and_a_function_of_the_saved_state_only():
    size = confirmation_size(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES)
    assert 0 < size < 20_000
    assert size == confirmation_size(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES.to_dict()["counts"])
    # More new rows to save on buy a larger (or equal) confirmation.
    assert confirmation_size(CHEAP_PLAN, 200_000, CONFIG, ESTIMATES) >= size


def test_confirmation_that_cannot_pay_runs_the_reference_alone():
    # 30 rows and a "cheap" model at 0.6 of the reference's price: confirming costs
    # 1.6 per sampled row, more than the model could save on what is left.
    plan = _plan({"cheap": 0.7, "ref": 0.3}, {"cheap": 0.86, "ref": 1.0}, {"cheap": 0.05}, {"cheap": 0.6, "ref": 1.0})
    assert confirmation_size(plan, 30, CONFIG, ESTIMATES) == 0
    assert confirmation_size(plan, 100_000, CONFIG, ESTIMATES) > 0
    result = confirm_plan(plan, 30, 30, _flag_source({}, {"ref": 1.0}), CONFIG, rates=ESTIMATES)
    assert result.decision == "reference-only" and result.plan.fractions == {"ref": 1.0}


def test_confirmation_asks_only_reference_and_plan_models_on_the_pool_prefix():
    n = 20_000
    rng = np.random.default_rng(1)
    flags = {"cheap": rng.random(n) < 0.88, "unused": rng.random(n) < 0.5}
    calls = []
    source = _flag_source(flags, {"cheap": 0.01, "ref": 1.0, "unused": 0.001}, calls)
    size = confirmation_size(CHEAP_PLAN, n, CONFIG, ESTIMATES)
    result = confirm_plan(CHEAP_PLAN, n, n, source, CONFIG, rates=ESTIMATES)
    assert {m for m, _ in calls} == {"ref", "cheap"}
    asked = result.profile.confirmation_size
    assert 0 < asked <= size  # an early look may stop before the planned size
    assert sorted({p for _, ps in calls for p in ps}) == list(range(asked))
    assert result.profile.n_profiled == asked and result.plan.n_remaining == n - asked
    assert result.spent == pytest.approx(asked * 1.01)
    assert result.plan.alphas == {"cheap": pytest.approx(0.05)}
    assert result.plan.agreement_bound >= 0.9 - 1e-9


def test_design_takes_the_cheaper_schedule_in_expectation():
    auto = confirmation_design(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES)
    single = confirmation_design(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES, looks=SINGLE_LOOK)
    two = confirmation_design(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES, looks=LOOKS)
    assert single.looks == ((single.size, 1.0),)
    assert auto.expected_total_cost == min(single.expected_total_cost, two.expected_total_cost)


def test_looks_spend_each_models_alpha_and_a_clear_sample_stops_at_the_first_look():
    design = confirmation_design(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES, looks=LOOKS)
    assert len(design.looks) == 2 and design.looks[-1][0] == design.size
    # Shares sum to 1 before the nested looks' correlation lets each grow by one common factor (looks.py).
    factor = look_inflation([size for size, _ in design.looks], [0.5, 0.5], 0.05)
    assert factor > 1.0
    assert [w for _, w in design.looks] == pytest.approx([0.5 * factor, 0.5 * factor])
    always = {"cheap": np.ones(20_000, dtype=bool)}
    result = confirm_plan(CHEAP_PLAN, 20_000, 20_000, _flag_source(always, {"cheap": 0.01, "ref": 1.0}), CONFIG,
                          rates=ESTIMATES, design=design)
    first_size, first_weight = design.looks[0]
    assert result.profile.confirmation_size == first_size
    assert result.profile.stats["cheap"].level == pytest.approx(0.05 * first_weight)
    assert result.plan.fractions == {"cheap": 1.0} and result.holds


def test_drift_stops_at_the_first_look():
    design = confirmation_design(CHEAP_PLAN, 20_000, CONFIG, ESTIMATES, looks=LOOKS)
    never = {"cheap": np.zeros(20_000, dtype=bool)}
    result = confirm_plan(CHEAP_PLAN, 20_000, 20_000, _flag_source(never, {"cheap": 0.01, "ref": 1.0}), CONFIG,
                          rates=ESTIMATES, design=design)
    assert result.profile.confirmation_size == design.looks[0][0]
    assert not result.holds and result.failing_models == ["cheap"] and result.decision == "drift"
    assert result.plan.fractions.get("ref", 0.0) > 0.85  # still a valid plan: the reference covers the gap


def test_pool_smaller_than_the_size_caps_the_sample():
    flags = {"cheap": np.ones(20_000, dtype=bool)}
    result = confirm_plan(CHEAP_PLAN, 20_000, 50, _flag_source(flags, {"cheap": 0.01, "ref": 1.0}), CONFIG, rates=ESTIMATES)
    assert result.profile.n_profiled == 50


def test_failed_candidate_call_counts_as_disagreement_and_failed_reference_leaves_row_unprofiled():
    def source(model, positions):
        out = []
        for p in positions:
            if model == "ref":
                out.append(Answer(None, None, 1.0, "timeout") if p == 0 else Answer("Yes", "Yes", 1.0))
            else:
                out.append(Answer(None, None, 0.01, "HTTP 500") if p % 2 else Answer("Yes", "Yes.", 0.01))
        return out

    result = confirm_plan(CHEAP_PLAN, 20_000, 20_000, source, CONFIG, rates=ESTIMATES)
    size = result.profile.confirmation_size
    stats = result.profile.stats["cheap"]
    assert stats.n == size - 1  # the row the reference failed on is not profiled
    assert stats.agreements == len([p for p in range(1, size) if p % 2 == 0])
    items = result.profile.items
    assert items[0].error == "timeout" and items[1].label == "Yes" and items[1].raw == "Yes"
    assert result.profile.n_profiled == size - 1


# --- round trip ---------------------------------------------------------------------------
def test_estimates_round_trip_through_plain_json():
    day1 = _dataset(3000, [("cheap", 0.93, 0.0005), ("mid", 0.96, 0.003)])
    plan, estimates, _ = fit_day1(day1, CONFIG, seed=3)
    text = json.dumps({"plan": json.loads(plan.to_json()), "estimates": estimates.to_dict()})
    data = json.loads(text)
    again = PlanEstimates.from_dict(data["estimates"])
    assert again == estimates
    plan_again = Plan.from_json(json.dumps(data["plan"]))
    assert confirmation_design(plan_again, 3000, CONFIG, again) == confirmation_design(plan, 3000, CONFIG, estimates)


@pytest.mark.parametrize("bad", [{}, {"counts": {"m": [5]}}, {"counts": {"m": [5, 7]}}, {"counts": {"m": "x"}}])
def test_bad_estimates_are_a_clear_error(bad):
    with pytest.raises(ValueError, match="plan estimates"):
        PlanEstimates.from_dict(bad)


# --- the promise on day 2, drift, cost ---------------------------------------------------
DAY1 = _dataset(1000, [("cheap", 0.93, 0.0005), ("mid", 0.97, 0.003)])


@pytest.fixture(scope="module")
def day1_plan():
    plan, estimates, _ = fit_day1(DAY1, CONFIG, seed=11)
    assert "cheap" in plan.fractions, plan.summary()
    return plan, estimates


DAY2 = {
    "same agreement": {},
    "slightly lower (0.91)": {"cheap": 0.91},
    "at the target (0.90)": {"cheap": 0.90},
    "far lower (0.80)": {"cheap": 0.80, "mid": 0.85},
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(DAY2))
def test_promise_held_on_day2_populations(day1_plan, setting):
    plan, estimates = day1_plan
    day2 = shifted(DAY1, DAY2[setting])
    rows = day2_rows(plan, estimates, day2, CONFIG, RUNS, mode="correlated", refit=False)
    missed = np.mean([not r["satisfied"] for r in rows])
    print(f"{setting}: missed {missed:.3f}, drift flagged {np.mean([not r['holds'] for r in rows]):.3f}")
    assert missed <= MAX_VIOLATION_RATE, f"{setting}: {missed:.3f} of {RUNS} runs missed the target"


def test_drift_is_detected_and_the_failing_model_named(day1_plan):
    plan, estimates = day1_plan
    drifted = shifted(DAY1, {"cheap": 0.70})
    rows = [day2_trial(plan, estimates, drifted, CONFIG, seed, refit=False) for seed in range(20)]
    assert all(not r["holds"] and "cheap" in r["failing"] for r in rows)
    assert all(r["satisfied"] for r in rows)  # the returned plan keeps the promise even so
    same = [day2_trial(plan, estimates, DAY1, CONFIG, seed) for seed in range(20)]
    assert sum(r["holds"] for r in same) >= 18


def test_confirmation_costs_clearly_less_than_a_fresh_profile():
    """12 OVERRULING-like models, N = 1,080: day 2 (confirm + apply) against the engine from scratch.

    The confirmation buys more rows than the fewest that would confirm the plan
    when tighter bounds save more on the rest than the rows cost, so both the
    confirmation's own spend and the day's total are compared.
    """
    day1 = _dataset(1080, OVERRULING_LIKE)
    plan, estimates, _ = fit_day1(day1, CONFIG, seed=7)
    rows = day2_rows(plan, estimates, day1, CONFIG, runs=8, fresh_runs=8)
    confirm = np.mean([r["confirm_cost"] for r in rows]) / np.mean([r["fresh_profile_cost"] for r in rows])
    total = np.mean([r["day2_cost"] for r in rows]) / np.mean([r["fresh_cost"] for r in rows])
    print(f"confirmation / fresh profiling {confirm:.3f}; day-2 total / fresh total {total:.3f}")
    assert confirm < 0.85 and total < 0.9
    assert all(r["satisfied"] and r["holds"] for r in rows)
