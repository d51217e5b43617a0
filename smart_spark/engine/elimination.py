"""Which pilot candidates cannot pay any more: stop paying for their pilot calls.

Every pilot row asks the reference and every candidate still in the pilot.
With many candidates (the 11 of ``jobs/stats/overruling_like.csv`` cost 2.3
reference calls per pilot row) much of that money goes to models the pays-off
rule will never confirm. The profiler checks at the pilot's fixed steps
(``profiler._PILOT_STEPS``) and drops such candidates from the rest of it.

When a candidate cannot pay: the pays-off rule (``payoff.decide_confirmation``)
prices every confirmation it could buy -- the candidate alone or in a pair at
each budget split, or in a blend -- by its confirmation calls at each size, the
rows the predicted bounds let the plan route to it and their price. A candidate
``m`` leaves the pilot when, with each of its posterior draws raised to its
optimistic rate and each other model's lowered to its pessimistic rate
(one-sided Clopper-Pearson upper and lower bounds at :data:`LEVEL` of the pilot
counts so far), no confirmation that includes it is expected to cost less than
the best one without it, or than stopping now with the reference on the rest
(``payoff.best_totals_with_and_without``). Both sides matter. A rate comparison
alone dropped a model whose optimistic rate lay below the envelope of cheaper
models and the reference, ignoring that confirming those cheaper models cost
more than they could save (``jobs.bench_spark``: the plan fell back to the
reference alone where the dropped model carried every row). Pricing the others
at their posterior only dropped, after 4 of 38 pilot rows, a dear model the
full pilot would confirm once a cheaper one looked worse (``many_models_20000``
at targets 0.90-0.98: 1.5-3.5% dearer). A model the rule would confirm on the
counts so far never leaves.

Only candidates costing at least :data:`MIN_COST_SHARE` of the reference may
leave: a cheaper one's remaining pilot calls cost little, and a wrong drop (the
best model unlucky on a few rows) would cost the run's savings. Only the "mix"
method eliminates: "single" picks the cheapest model whose pilot estimate
clears the target without pricing plans, and "single-early-stop" keeps its
one-go pilot.

Measured (``jobs.bench_pilot_elimination``, 10 seeds per cell, the same seeds
without the rule): ``overruling_like`` N = 2,160, targets 0.80-0.98, every cell
cheaper (cost 0.906-0.991 of the one-go pilot's); ``many_models`` N = 20,000
0.979-1.000, ``small_n`` 0.992-1.000; no miss added; the paper grid has no
candidate at a tenth of gpt-4's cost, so its runs are unchanged.

Why the guarantee is untouched: where the pilot stops to decide is fixed before
any row is seen (fractions of the pilot size), and what it decides there is a
function of pilot counts and prices only. Pilot counts never enter a bound the
plan relies on: the bounds come from fresh confirmation rows, at looks fixed
when the pilot ends (``bounds.py``), so conditioning on any pilot-only choice
leaves them exact. A wrong drop costs money, never the promise.
"""

from __future__ import annotations

import math

from smart_spark.engine.bounds import cp_lower, cp_upper
from smart_spark.engine.payoff import PilotSummary, best_totals_with_and_without, decide_confirmation

#: One-sided level of the optimistic rate a candidate is priced at (an efficiency choice, not part of the promise).
LEVEL = 0.2
#: Only a candidate costing at least this share of the reference's unit cost may leave the pilot early.
MIN_COST_SHARE = 0.1


def may_leave(unit_cost: float, reference_cost: float) -> bool:
    """Whether a candidate at this unit cost may leave the pilot early (unknown costs: no)."""
    if not (math.isfinite(unit_cost) and math.isfinite(reference_cost)):
        return False
    return unit_cost >= MIN_COST_SHARE * reference_cost


def cannot_pay(summary: PilotSummary, active: list[str]) -> list[str]:
    """Candidates of ``active`` no confirmation could pay for, even at their optimistic rate.

    ``summary`` holds the pilot counts so far (models that left earlier are in
    ``summary.excluded``). A candidate at least as dear as the reference always
    leaves: the rule never confirms it, and its pilot calls only measured its
    price.
    """
    costs = summary.unit_costs
    c_ref = costs[summary.reference]
    best = decide_confirmation(summary, "mix")
    chosen = set(best.alphas) | set(best.blend)
    pessimistic = {m: float(cp_lower(k, n, LEVEL)) for m, (n, k) in summary.counts.items()}
    out = []
    for model in active:
        cost = costs.get(model, math.nan)
        if model in chosen or not may_leave(cost, c_ref):
            continue
        if cost >= c_ref:
            out.append(model)
            continue
        n, k = summary.counts[model]
        optimistic = float(cp_upper(k, n, LEVEL)) if n else 1.0
        with_it, without_it = best_totals_with_and_without(summary, model, optimistic, pessimistic)
        if with_it >= without_it:
            out.append(model)
    return out
