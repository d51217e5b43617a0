"""Pilot elimination (engine/elimination.py): priced as the pays-off rule prices a confirmation (no Spark)."""

from __future__ import annotations

import dataclasses

import pytest

from smart_spark.engine.elimination import cannot_pay
from smart_spark.engine.payoff import PilotSummary, best_totals_with_and_without, decide_confirmation

#: Unit costs of conf/simulated_models.yaml's models per item of jobs.bench_spark (gpt-4 = 1).
COSTS = {"gpt-4": 1.0, "text-davinci-002": 0.63, "gpt-3.5-turbo": 0.065, "text-curie-001": 0.065, "gptj_6B": 0.02}


def _summary(agreements: dict[str, int], n: int, target: float) -> PilotSummary:
    return PilotSummary(
        unit_costs=COSTS, reference="gpt-4", n_total=5_000, n_profiled=n, accuracy_target=target, budget=0.05,
        counts={m: (n, k) for m, k in agreements.items()}, max_more=5_000 - n,
    )


def test_a_dear_model_the_plan_may_need_stays():
    # jobs.bench_spark's case: gpt-3.5-turbo unlucky on the first pilot rows, text-davinci-002 right on all.
    # A rate envelope dropped text-davinci-002 here and the plan fell back to the reference alone.
    summary = _summary({"text-davinci-002": 10, "gpt-3.5-turbo": 8, "text-curie-001": 7, "gptj_6B": 5}, 10, 0.85)
    assert cannot_pay(summary, list(summary.counts)) == []


def test_a_dear_model_a_cheaper_one_beats_even_at_its_optimistic_rate_leaves():
    summary = _summary({"text-davinci-002": 7, "gpt-3.5-turbo": 10, "text-curie-001": 7, "gptj_6B": 5}, 10, 0.9)
    assert decide_confirmation(summary, "mix").alphas == {"gpt-3.5-turbo": 0.05}
    # the cheap models (below a tenth of the reference's cost) never leave, whatever their counts
    assert cannot_pay(summary, list(summary.counts)) == ["text-davinci-002"]


def test_totals_move_with_the_model_and_the_others_plausible_rates():
    summary = _summary({"text-davinci-002": 7, "gpt-3.5-turbo": 9, "text-curie-001": 7, "gptj_6B": 5}, 10, 0.9)
    model = "text-davinci-002"
    best = decide_confirmation(summary, "mix").expected_total_cost
    with_it, without_it = best_totals_with_and_without(summary, model, 0.0, {})
    assert with_it >= best and without_it == pytest.approx(best)  # at the posterior the rule did not choose it
    rising = [best_totals_with_and_without(summary, model, floor, {})[0] for floor in (0.0, 0.7, 0.9, 1.0)]
    assert rising == sorted(rising, reverse=True)
    capped = best_totals_with_and_without(summary, model, 0.0, {"gpt-3.5-turbo": 0.6})
    assert capped[1] >= without_it  # the others at their pessimistic rates leave a dearer plan without it
    excluded = dataclasses.replace(summary, excluded=(model,))
    assert best_totals_with_and_without(excluded, model, 1.0, {})[0] == float("inf")
    # an excluded model keeps its posterior draws, so the others' decision is the one they had beside it
    assert decide_confirmation(excluded, "mix") == decide_confirmation(summary, "mix")


@pytest.mark.parametrize("target", [0.85, 0.95])
def test_every_model_the_rule_would_confirm_stays(target):
    summary = _summary({"text-davinci-002": 10, "gpt-3.5-turbo": 9, "text-curie-001": 8, "gptj_6B": 6}, 10, target)
    chosen = decide_confirmation(summary, "mix").alphas
    assert not set(chosen) & set(cannot_pay(summary, list(summary.counts)))
