"""Which pilot candidates cannot be chosen any more: stop paying for their pilot calls.

Every pilot row asks the reference and every candidate still in the pilot.
With many candidates (the 11 of ``jobs/stats/overruling_like.csv`` cost 2.3
reference calls per pilot row, 11% of a run's cost at N = 2,160) much of
that money goes to models the plan could never use: dearer *and* worse than a
mix of others. The profiler checks at a few fixed points of the pilot
(``profiler._PILOT_STEPS``) and drops such candidates from the rest of it.

When a candidate cannot be chosen: the plan's mix program picks at most two
options on the upper concave envelope of the points ``(unit cost, agreement)``,
the reference being ``(c_ref, 1)``. A candidate ``m`` strictly below the
envelope of the *other* points at its own cost is never needed: a mix of those
others costs the same and agrees more. With only pilot counts, the test is
made robust: ``m`` at its optimistic rate (one-sided Clopper-Pearson upper
bound) must lie below the envelope of the others at their pessimistic rates
(lower bounds), both at :data:`LEVEL`. Raising any other model's rate only
lifts the envelope, so in every world inside those bounds ``m`` is off it.

Only candidates costing at least :data:`MIN_COST_SHARE` of the reference may
leave: a cheaper one's remaining pilot calls cost little, and a wrong drop
(the best model unlucky on a few rows) would cost the run's savings. The level
0.35 and the share 0.1 were measured (``jobs.reproduce_paper``, 10 targets x
10 trials, same seeds as without the rule): the OVERRULING-like file saves
5.37x instead of 5.06x at N = 2,160 and 3% more at 21,600, ``small_n`` and
``many_models`` about 0.5% more (mean savings over their cells); the OVERRULING
replay through the operator (``jobs/bench_overruling.py``, 10 seeds) keeps
the same plans at 5.6x instead of 5.3x (target 0.90). One ``many_models``
population at N = 300,000 loses ``large`` on a lucky run of a cheaper model
(10% dearer at targets 0.92-0.96, the same at level 0.2; none at 0.1, which
saves a quarter as much).

Why the guarantee is untouched: the rule looks at pilot counts and prices only,
and pilot counts never enter a bound the plan relies on (``bounds.py``). A
wrong drop (a good model unlucky on a few rows) costs money, never the promise.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from smart_spark.engine.bounds import cp_lower, cp_upper

#: One-sided level of each pilot-internal bound (an efficiency choice, not part of the promise).
LEVEL = 0.35
#: Only a candidate at least this share of the reference's unit cost may leave the pilot early:
#: a cheaper one's remaining pilot calls cost little, while dropping the best model on a few
#: unlucky rows costs the whole run's savings.
MIN_COST_SHARE = 0.1


def dominated_candidates(
    counts: Mapping[str, tuple[int, int]],
    unit_costs: Mapping[str, float],
    reference_cost: float,
    level: float = LEVEL,
) -> list[str]:
    """Candidates that cannot be chosen: optimistically below the others' pessimistic envelope.

    ``counts``: pilot ``(items, agreements)`` per candidate; ``unit_costs``:
    USD per item per candidate (measured or priced); a candidate without a
    known cost is never dropped. A candidate at least as dear as the
    reference is always dropped (the reference agrees with itself).
    """
    names = [m for m in counts if np.isfinite(unit_costs.get(m, np.nan))]
    cost = {m: float(unit_costs[m]) for m in names}
    lower = {m: float(cp_lower(counts[m][1], counts[m][0], level)) for m in names}
    dropped = []
    for m in names:
        if cost[m] >= reference_cost:
            dropped.append(m)
            continue
        if not may_leave(cost[m], reference_cost):
            continue
        upper = float(cp_upper(counts[m][1], counts[m][0], level)) if counts[m][0] else 1.0
        others = [(cost[j], lower[j]) for j in names if j != m and cost[j] < reference_cost]
        if upper < envelope_at(cost[m], [*others, (reference_cost, 1.0)]):
            dropped.append(m)
    return dropped


def may_leave(unit_cost: float, reference_cost: float) -> bool:
    """Whether a candidate at this unit cost may leave the pilot early (unknown costs: yes)."""
    if not (np.isfinite(unit_cost) and np.isfinite(reference_cost)):
        return True
    return unit_cost >= MIN_COST_SHARE * reference_cost


def envelope_at(cost: float, points: list[tuple[float, float]]) -> float:
    """Highest agreement a mix of ``points`` (cost, agreement) reaches at exactly ``cost`` (-inf if none can)."""
    best = -np.inf
    for c_a, p_a in points:
        if c_a > cost:
            continue
        best = max(best, p_a)  # a cheaper point alone (paying less) is at least as good
        for c_b, p_b in points:
            if c_b >= cost and c_b > c_a:
                share_b = (cost - c_a) / (c_b - c_a)
                best = max(best, p_a + share_b * (p_b - p_a))
    return best
