"""The pays-off rule: after the pilot, how much confirmation profiling is worth buying.

Profiling an item costs the reference plus every candidate being confirmed, so
more profiling only pays if the tighter bounds it buys let the plan route enough
of the remaining items to cheap models. For each confirmation size ``n`` on a
geometric grid we predict the bounds the confirmation would give, solve the mix
program for the remaining items, and add the profiling spend::

    expected_total(n) = n * (c_ref + sum of confirmed candidates' costs)
                        + (R - n) * E[plan cost per item | bounds at n]

The expectation runs over the uncertainty left after the pilot: each model's
agreement is drawn from its Jeffreys posterior, independently across models
(the prototype used a normal around the observed rate). We keep the size and the
error-budget split with the lowest expected total; size 0 means "stop now and
send the rest to the reference".

Allocations: one model with the whole budget, a pair splitting it (union
bound; the plan may lean on either after confirmation, a hedge), or a *blend*:
two models certified as one at the whole budget, their ratio fixed here
(``BLEND_RATIOS``). A blend's confirmation scores each row by the member the
split hash picks, so its rate is ``r p_i + (1 - r) p_j`` and its bound is one
exact bound; it drops half of each row's answers, which on independent flags
usually costs more than the union bound saves, so the rule picks it only where
its expected total is lower.

The pilot's elimination (``elimination.py``) prices with the same rule the
confirmations with and without one model, it at its optimistic rate and the
others at their pessimistic ones (:func:`best_totals_with_and_without`); all
allocations of a kind are priced in one batch.

Everything here looks only at pilot data, which is why the choice of size and
split cannot bias the confirmation bounds (see ``bounds.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from smart_spark.engine.bounds import approx_lower, cp_lower, effective_size, group_lower
from smart_spark.engine.looks import look_inflation
from smart_spark.engine.planner import enumerate_mix_costs
from smart_spark.engine.plan import blend_name

#: Budget shares a model may take in the mix program (fractions of 1 - confidence).
BUDGET_SHARES = (1.0, 0.75, 2 / 3, 0.5, 1 / 3, 0.25)
#: Posterior draws that stand for the uncertainty left after the pilot.
SCENARIOS = 24
_SCENARIO_SEED = 20240320
_GRID_RATIO = 1.15
_MIN_CONFIRMATION = 10
#: Confirmation looks at the planned size times these multipliers, each with its
#: share of a model's budget (alpha spending). Most goes to the planned look; the
#: others let the run stop early when the data are better than the pilot
#: promised, or go on when they are worse, without repeated-looks inflation.
#: The shares sum to 1 (union bound); ``looks.py`` then scales them all by the
#: factor the looks' correlation allows.
LOOK_MULTIPLIERS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
LOOK_WEIGHTS = (0.05, 0.1, 0.15, 0.45, 0.15, 0.1)
PLANNED_LOOK_WEIGHT = LOOK_WEIGHTS[LOOK_MULTIPLIERS.index(1.0)]
#: Relative look sizes of an uncapped schedule, for predicting the correlated looks' inflation (``looks.py``).
_UNCAPPED_SIZES = tuple(int(round(1000 * m)) for m in LOOK_MULTIPLIERS)


@dataclass(frozen=True, kw_only=True)
class RunState:
    """The run a profiling decision is about: prices so far, size, target, budget."""

    unit_costs: dict[str, float]
    reference: str
    n_total: int
    n_profiled: int
    accuracy_target: float
    budget: float


@dataclass(frozen=True, kw_only=True)
class PilotSummary(RunState):
    """What the pilot measured: per candidate (items, agreements)."""

    counts: dict[str, tuple[int, int]]
    max_more: int
    #: Predict each model's bound at the effective size of its routed group (``_plan_cost_per_item``).
    group_aware: bool = True
    #: Models in ``counts`` the rule may not choose (they left the pilot, ``elimination.py``); they
    #: keep their place in the posterior draws, so every other model gets the draws it would have got.
    excluded: tuple[str, ...] = ()


#: Shares of a blend's first member (in name order) the pays-off rule may fix on the pilot.
BLEND_RATIOS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class Confirmation:
    """The decision: confirm on ``size`` fresh items, with these budget shares per model.

    With ``blend`` (member -> share within it) the one model in ``alphas`` is
    the blend (``plan.blend_name``), certified as one at its whole alpha; its
    members are both called on every confirmation item.
    """

    size: int
    alphas: dict[str, float]
    expected_total_cost: float
    blend: dict[str, float] = field(default_factory=dict)


def remaining_target(accuracy_target: float, n_total: int, n_profiled) -> np.ndarray:
    """Agreement the unprofiled items must reach, profiled items being exact."""
    n_profiled = np.asarray(n_profiled, dtype=float)
    remaining = np.maximum(n_total - n_profiled, 1.0)
    return (accuracy_target * n_total - n_profiled) / remaining


def size_grid(max_more: int) -> np.ndarray:
    """0 and a geometric grid of confirmation sizes up to ``max_more``."""
    if max_more < 1:
        return np.array([0])
    sizes = [0]
    size = float(min(_MIN_CONFIRMATION, max_more))
    while size < max_more:
        sizes.append(int(round(size)))
        size *= _GRID_RATIO
    sizes.append(max_more)
    return np.unique(np.array(sizes))


def posterior_scenarios(counts: dict[str, tuple[int, int]], models: list[str]) -> np.ndarray:
    """Agreement rates per (scenario, model) drawn from each model's Jeffreys posterior.

    A Latin hypercube: every model gets the same evenly spaced posterior
    quantiles, shuffled independently per model with a fixed seed (the decision
    is a deterministic function of the counts). Independence matters: a pair of
    models is worth confirming as a hedge precisely in the scenarios where one
    of them turns out worse than the pilot suggested and the other does not.
    """
    n = np.array([counts[m][0] for m in models], dtype=float)
    k = np.array([counts[m][1] for m in models], dtype=float)
    rng = np.random.default_rng(_SCENARIO_SEED)
    levels = (np.arange(SCENARIOS) + 0.5) / SCENARIOS
    q = np.stack([rng.permutation(levels) for _ in models], axis=1)
    return stats.beta.ppf(q, k[None, :] + 0.5, n[None, :] - k[None, :] + 0.5)


def decide_confirmation(pilot: PilotSummary, method: str) -> Confirmation:
    """Pick the confirmation size and budget split with the lowest expected total cost."""
    candidates, rates, sizes, targets, stop_now = _choice_inputs(pilot)
    if not candidates or not len(sizes):
        return stop_now
    if method == "single":
        return _until_satisfied(pilot, candidates, rates, sizes, targets, stop_now)
    if method == "single-early-stop":
        return _best_single(pilot, candidates, rates, sizes, targets, stop_now)
    return _best_mix(pilot, candidates, rates, sizes, targets, stop_now)


def _choice_inputs(pilot: PilotSummary):
    """The models the rule may confirm, their posterior draws, the size grid, targets and "stop now".

    ``pilot.excluded`` models are drawn (so every other model gets the draws it
    would get had they stayed in the pilot), then left out of the choice.
    """
    candidates = [m for m in pilot.counts if m != pilot.reference and pilot.counts[m][0] > 0]
    c_ref = pilot.unit_costs[pilot.reference]
    candidates = [m for m in candidates if pilot.unit_costs[m] < c_ref]
    left = pilot.n_total - pilot.n_profiled
    stop_now = Confirmation(0, {}, left * c_ref)
    if not candidates or left <= 0:
        return [], np.empty((SCENARIOS, 0)), np.array([], dtype=int), np.array([]), stop_now
    sizes = size_grid(min(pilot.max_more, left))
    targets = remaining_target(pilot.accuracy_target, pilot.n_total, pilot.n_profiled + sizes)
    rates = posterior_scenarios(pilot.counts, candidates)
    eligible = [i for i, m in enumerate(candidates) if m not in pilot.excluded]
    return [candidates[i] for i in eligible], rates[:, eligible], sizes, targets, stop_now


def _predicted_bounds(rates: np.ndarray, sizes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Bounds (size, scenario, option) a confirmation of each size would give at its planned look."""
    n = sizes[:, None, None].astype(float)
    return approx_lower(rates[None, :, :] * n, n, planned_level(alpha)[None, None, :])


def planned_level(alpha) -> np.ndarray:
    """The level the planned look of an uncapped schedule spends of each ``alpha`` (prediction only)."""
    alpha = np.asarray(alpha, dtype=float)
    factor = {a: look_inflation(_UNCAPPED_SIZES, LOOK_WEIGHTS, a) for a in np.unique(alpha)}
    return alpha * PLANNED_LOOK_WEIGHT * np.vectorize(factor.get, otypes=[float])(alpha)


def schedule_inflation(looks: list[tuple[int, float]], alphas) -> float:
    """One factor for every model's looks: the least :func:`looks.look_inflation` over their alphas.

    The factor mostly grows with alpha, but its numerical integration is not
    exactly monotone (``look_inflation([500, 1000], [0.5, 0.5], a)`` is 1.167 at
    0.01 and 1.108 at 0.0125), so the least over the alphas in use is taken.
    """
    alphas = {a for a in alphas if a > 0}
    if not alphas:
        return 1.0
    sizes, weights = [size for size, _ in looks], [w for _, w in looks]
    return min(look_inflation(sizes, weights, a) for a in alphas)


def look_schedule(planned: int, max_more: int) -> list[tuple[int, float]]:
    """Confirmation looks ``(cumulative size, share of each model's budget)``.

    Looks that collapse onto the same size (small plans, the ``max_more`` cap)
    pool their shares, so the shares always sum to 1.
    """
    looks: dict[int, float] = {}
    for multiplier, weight in zip(LOOK_MULTIPLIERS, LOOK_WEIGHTS):
        size = int(min(max_more, max(min(_MIN_CONFIRMATION, planned), round(planned * multiplier))))
        looks[size] = looks.get(size, 0.0) + weight
    return sorted(looks.items())


@dataclass(frozen=True, kw_only=True)
class LookState(RunState):
    """Where the confirmation stands at one look, for the go-on-or-stop decision."""

    pilot_counts: dict[str, tuple[int, int]]
    counts: dict[str, tuple[int, int]]
    alphas: dict[str, float]
    weight_now: float
    later_looks: tuple[tuple[int, float], ...]  # (items more than now, budget share)
    #: USD per confirmation item when it is not the reference plus ``alphas``' models (a blend calls its members).
    confirm_cost: float | None = None


def plan_cost_now(state: LookState, method: str) -> float:
    """Cost per remaining item of the plan the current bounds allow."""
    models = list(state.alphas)
    n = np.array([state.counts[m][0] for m in models], dtype=float)
    k = np.array([state.counts[m][1] for m in models], dtype=float)
    alpha = np.array([state.alphas[m] for m in models])
    lower = cp_lower(k, n, alpha * state.weight_now)[None, None, :]
    target = remaining_target(state.accuracy_target, state.n_total, np.array([state.n_profiled]))
    return float(_plan_costs(state, models, lower, alpha, target, method)[0, 0])


def _plan_costs(state, models, lower, alpha, target, method) -> np.ndarray:
    """Plan cost per item for bounds of shape (G, S, models) and targets (G,)."""
    costs = np.array([state.unit_costs[m] for m in models])
    c_ref = state.unit_costs[state.reference]
    g, s, _ = lower.shape
    if method == "mix":
        full = np.concatenate([lower, np.ones((g, s, 1))], axis=2).reshape(g * s, -1)
        cost, _ = enumerate_mix_costs(
            full, np.append(alpha, 0.0), np.append(costs, c_ref), np.arange(len(models) + 1),
            np.repeat(target, s), state.budget,
        )
        return cost.reshape(g, s)
    passing = lower >= np.asarray(target)[:, None, None]
    return np.where(passing, costs[None, None, :], c_ref).min(axis=2)


def continue_pays(state: LookState, method: str) -> bool:
    """Pays-off rule at a look: is some later look expected to save more than it costs?

    Looks beyond the next one count too: a model may need several more looks
    before it can carry the plan, and stopping at the first look that does not
    pay on its own would never get there.
    """
    if not state.later_looks:
        return False
    now = plan_cost_now(state, method)
    if method == "single":
        return now >= state.unit_costs[state.reference]
    models = list(state.alphas)
    combined = {
        m: (state.counts[m][0] + state.pilot_counts[m][0], state.counts[m][1] + state.pilot_counts[m][1])
        for m in models
    }
    rates = posterior_scenarios(combined, models)  # (S, models)
    n_now = np.array([state.counts[m][0] for m in models], dtype=float)
    k_now = np.array([state.counts[m][1] for m in models], dtype=float)
    alpha = np.array([state.alphas[m] for m in models])
    remaining = state.n_total - state.n_profiled
    confirm_cost = state.confirm_cost
    if confirm_cost is None:
        confirm_cost = state.unit_costs[state.reference] + sum(state.unit_costs[m] for m in models)
    for step, weight in state.later_looks:
        lower = approx_lower(k_now[None, :] + rates * step, n_now[None, :] + step, alpha[None, :] * weight)
        target = remaining_target(state.accuracy_target, state.n_total, np.array([state.n_profiled + step]))
        expected = float(_plan_costs(state, models, lower[None, :, :], alpha, target, method).mean())
        if step * confirm_cost + (remaining - step) * expected < remaining * now:
            return True
    return False


def best_possible_saving(
    n_total: int, pilot_size: int, accuracy_target: float, budget: float, model_cost: float, reference_cost: float
) -> float:
    """Most a candidate could save, in USD, even if it always agreed with the reference.

    An upper bound known before any call: the model would still have to be
    confirmed on ``n`` items (each paying its own call on top of the
    reference's) and could then take only the share ``x`` of the other items
    that its bound allows (``x L + (1 - x) >= remaining target``). ``L`` is
    the Clopper-Pearson bound of ``n`` agreements out of ``n`` at the largest
    level the planned look gets (``max(LOOK_WEIGHTS)`` of the whole budget,
    inflated for correlated looks, ``looks.py``), at the
    effective size of a group as large as all remaining items; each of these
    overstates what a real run gets, so the result is an upper bound on what
    the model can save, maximised over the confirmation size.
    """
    if model_cost >= reference_cost:
        return 0.0
    sizes = size_grid(max(n_total - pilot_size - 1, 0))
    sizes = sizes[sizes > 0]
    if not len(sizes):
        return 0.0
    rest = n_total - pilot_size - sizes
    level = budget * min(1.0, max(LOOK_WEIGHTS) * look_inflation(_UNCAPPED_SIZES, LOOK_WEIGHTS, budget))
    lower = group_lower(sizes, sizes, level, rest, rest)
    target = remaining_target(accuracy_target, n_total, pilot_size + sizes)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(lower >= target, 1.0, np.clip((1 - target) / (1 - lower), 0.0, 1.0))
    saving = rest * share * (reference_cost - model_cost) - sizes * model_cost
    return float(max(saving.max(), 0.0))


def _totals(pilot, sizes, plan_cost, confirm_cost) -> np.ndarray:
    remaining = pilot.n_total - pilot.n_profiled - sizes
    return sizes * confirm_cost + remaining * plan_cost


def candidate_allocations(n_models: int) -> list[tuple[tuple[int, float], ...]]:
    """Budget splits worth confirming: one model with all of it, or two sharing it.

    An optimal plan uses at most two options (see ``planner.py``), so
    confirming more than two models would only add profiling cost.
    """
    singles = [((i, 1.0),) for i in range(n_models)]
    splits = sorted({(a, b) for a in BUDGET_SHARES for b in BUDGET_SHARES if abs(a + b - 1.0) < 1e-9})
    pairs = [
        ((i, a), (j, b))
        for i in range(n_models)
        for j in range(i + 1, n_models)
        for a, b in splits
    ]
    return singles + pairs


def _best_mix(pilot, candidates, rates, sizes, targets, stop_now) -> Confirmation:
    """The single or pair (with its budget split) and size of lowest expected total; then blends."""
    allocations = candidate_allocations(len(candidates))
    totals = _mix_totals(pilot, candidates, rates, sizes, targets, allocations)
    best = stop_now
    for allocation, row in zip(allocations, totals):
        g = int(np.argmin(row))
        if row[g] < best.expected_total_cost:
            alphas = {candidates[i]: float(share * pilot.budget) for i, share in allocation}
            best = Confirmation(int(sizes[g]), alphas, float(row[g]))
    return _best_blend(pilot, candidates, rates, sizes, targets, best)


def blend_pairs(candidates: list[str], rates: np.ndarray, costs: np.ndarray) -> list[tuple[int, int]]:
    """Pairs worth blending: both on the pilot's cost/agreement frontier, the dearer one the better.

    A model that another beats on both cost and pilot agreement would only
    make a blend dearer or worse than blending that other one, so it is left
    out (this keeps the search small with many models).
    """
    median = np.median(rates, axis=0)
    frontier = [
        i for i in range(len(candidates))
        if not any((costs[j] <= costs[i]) & (median[j] >= median[i]) & ((costs[j] < costs[i]) | (median[j] > median[i]))
                   for j in range(len(candidates)))
    ]
    return [
        (i, j) for i in frontier for j in frontier
        if i < j and (costs[i] - costs[j]) * (median[i] - median[j]) > 0
    ]


def _best_blend(pilot, candidates, rates, sizes, targets, best: Confirmation) -> Confirmation:
    """Beat ``best`` with a blend: two models certified as one at the whole budget, ratio fixed now.

    The blend's agreement is ``r p_i + (1 - r) p_j`` (each confirmation item is
    scored by the member the split hash picks), so the pilot's posterior
    scenarios predict it directly; the plan is the blend plus the reference.
    """
    costs = np.array([pilot.unit_costs[m] for m in candidates])
    blends = [(i, j, ratio) for i, j in blend_pairs(candidates, rates, costs) for ratio in BLEND_RATIOS]
    totals = _blend_totals(pilot, candidates, rates, sizes, targets, blends)
    for (i, j, ratio), row in zip(blends, totals):
        g = int(np.argmin(row))
        if row[g] < best.expected_total_cost:
            blend = {candidates[i]: ratio, candidates[j]: round(1.0 - ratio, 10)}
            best = Confirmation(int(sizes[g]), {blend_name(blend): pilot.budget}, float(row[g]), blend)
    return best


def best_totals_with_and_without(pilot: PilotSummary, model: str, floor: float,
                                 caps: dict[str, float]) -> tuple[float, float]:
    """Lowest expected totals of a confirmation with ``model`` and of one without it.

    Priced as :func:`decide_confirmation` prices a confirmation (its calls at
    each size, the rows the predicted bounds let the plan route, their
    prices), with ``model``'s posterior draws raised to at least ``floor`` and
    every other model's lowered to at most its ``caps`` entry: ``model`` as good
    and the others as bad as they plausibly are. "With": ``model`` alone, in a
    pair at any budget split, or in a blend with any other model at any ratio
    (a superset of the blends the rule offers); "without": stop now, or any
    single or pair of the others. ``(inf, stop-now total)`` when ``model``
    cannot be confirmed (no pilot rows, not cheaper than the reference, or
    excluded).
    """
    candidates, rates, sizes, targets, stop_now = _choice_inputs(pilot)
    if model not in candidates:
        return float("inf"), stop_now.expected_total_cost
    m = candidates.index(model)
    draws = rates
    rates = np.minimum(draws, np.array([caps.get(c, 1.0) for c in candidates])[None, :])
    rates[:, m] = np.maximum(draws[:, m], floor)
    every = candidate_allocations(len(candidates))
    with_m = [a for a in every if m in {i for i, _ in a}]
    without_m = [a for a in every if m not in {i for i, _ in a}]
    blends = [(min(m, j), max(m, j), ratio) for j in range(len(candidates)) if j != m for ratio in BLEND_RATIOS]
    totals_with = np.concatenate([
        _mix_totals(pilot, candidates, rates, sizes, targets, with_m),
        _blend_totals(pilot, candidates, rates, sizes, targets, blends),
    ])
    totals_without = _mix_totals(pilot, candidates, rates, sizes, targets, without_m)
    best_without = min(stop_now.expected_total_cost, float(totals_without.min()) if totals_without.size else np.inf)
    return (float(totals_with.min()) if totals_with.size else float("inf")), best_without


@dataclass(frozen=True)
class _Batch:
    """Allocations of ``k`` confirmed options each, priced together (one row per allocation)."""

    rates: np.ndarray  # (A, S, k) posterior draws of each option's agreement
    unit_costs: np.ndarray  # (A, k + 1) USD per routed item, the reference last
    alphas: np.ndarray  # (A, k) the budget each option is certified at
    confirm_costs: np.ndarray  # (A,) USD per confirmation item

    def part(self, rows: slice) -> "_Batch":
        return _Batch(self.rates[rows], self.unit_costs[rows], self.alphas[rows], self.confirm_costs[rows])


def _mix_totals(pilot, candidates, rates, sizes, targets, allocations) -> np.ndarray:
    """Expected totals (allocations, sizes) of singles and pairs (in the given order)."""
    c_ref = pilot.unit_costs[pilot.reference]
    costs = np.array([pilot.unit_costs[m] for m in candidates])
    out = np.empty((len(allocations), len(sizes)))
    for arity in (1, 2):
        rows = [r for r, allocation in enumerate(allocations) if len(allocation) == arity]
        if not rows:
            continue
        models = np.array([[i for i, _ in allocations[r]] for r in rows])
        batch = _Batch(
            rates=np.moveaxis(rates[:, models], 0, 1),
            unit_costs=np.concatenate([costs[models], np.full((len(rows), 1), c_ref)], axis=1),
            alphas=np.array([[share * pilot.budget for _, share in allocations[r]] for r in rows]),
            confirm_costs=np.array([c_ref + costs[row].sum() for row in models]),
        )
        out[rows] = _expected_totals(pilot, batch, sizes, targets)
    return out


def _blend_totals(pilot, candidates, rates, sizes, targets, blends) -> np.ndarray:
    """Expected totals (blends, sizes) of blends ``(i, j, share of i)``: one option at the whole budget."""
    if not blends:
        return np.empty((0, len(sizes)))
    c_ref = pilot.unit_costs[pilot.reference]
    costs = np.array([pilot.unit_costs[m] for m in candidates])
    batch = _Batch(
        rates=np.stack([(r * rates[:, i] + (1 - r) * rates[:, j])[:, None] for i, j, r in blends]),
        unit_costs=np.array([[r * costs[i] + (1 - r) * costs[j], c_ref] for i, j, r in blends]),
        alphas=np.full((len(blends), 1), pilot.budget),
        confirm_costs=np.array([c_ref + costs[i] + costs[j] for i, j, _ in blends]),
    )
    return _expected_totals(pilot, batch, sizes, targets)


#: Rows (allocation x size x scenario) priced in one go; bounds the memory of a batch (~100 MB).
_CHUNK_ROWS = 1 << 16


def _expected_totals(pilot, batch: _Batch, sizes, targets) -> np.ndarray:
    """``sizes * confirm cost + remaining * E[plan cost | bounds at size]`` per allocation; size 0 is ``inf``."""
    per_chunk = max(1, _CHUNK_ROWS // (len(sizes) * batch.rates.shape[1]))
    n_alloc = len(batch.confirm_costs)
    plan_cost = np.concatenate([
        _plan_cost_per_item(pilot, batch.part(slice(start, start + per_chunk)), sizes, targets)
        for start in range(0, n_alloc, per_chunk)
    ])
    totals = _totals(pilot, sizes[None, :], plan_cost.mean(axis=2), batch.confirm_costs[:, None])
    totals[:, sizes == 0] = np.inf
    return totals


def _plan_cost_per_item(pilot, batch: _Batch, sizes, targets) -> np.ndarray:
    """Plan cost per remaining item (A, G, S) with each option's bound predicted at its planned look.

    With ``pilot.group_aware`` each bound is taken at the effective size of the
    group the plan routes it (``bounds.group_lower``), so a model given a small
    share gets a much looser bound than its confirmation count alone suggests.
    One fixed-point step: the shares of the first solve give each model's group,
    the bounds are predicted again at those sizes, and the mix is solved again.
    """
    n = sizes[None, :, None, None].astype(float)
    level = planned_level(batch.alphas)[:, None, None, :]
    rates = batch.rates[:, None, :, :]
    bounds = approx_lower(rates * n, n, level)
    if not pilot.group_aware:
        return _batch_mix_costs(bounds, batch.unit_costs, targets, pilot.budget)
    _, share = _batch_mix_costs(bounds, batch.unit_costs, targets, pilot.budget, with_shares=True)
    rest = np.maximum(pilot.n_total - pilot.n_profiled - sizes, 1).astype(float)
    group = np.maximum(share * rest[None, :, None, None], 1.0)
    n_eff = effective_size(n, group)
    corrected = approx_lower(rates * n_eff, n_eff, level)
    corrected = np.where(sizes[None, :, None, None] > 0, np.minimum(corrected, bounds), 0.0)
    return _batch_mix_costs(corrected, batch.unit_costs, targets, pilot.budget)


def _batch_mix_costs(bounds, unit_costs, targets, budget, with_shares: bool = False):
    """Plan cost per item (A, G, S) for bounds (A, G, S, k) plus the reference; optionally each option's share.

    Every allocation fits the budget by construction (its shares sum to at most
    one), so the program's budget constraint never binds here.
    """
    a, g, s, k = bounds.shape
    lower = np.concatenate([bounds, np.ones((a, g, s, 1))], axis=3).reshape(a * g * s, k + 1)
    unit = np.broadcast_to(unit_costs[:, None, None, :], (a, g, s, k + 1)).reshape(a * g * s, k + 1)
    target = np.broadcast_to(np.asarray(targets, dtype=float)[None, :, None], (a, g, s)).reshape(-1)
    cost, pick = enumerate_mix_costs(
        lower, alpha=np.zeros(k + 1), unit_cost=unit, model_id=np.arange(k + 1), target=target, budget=budget,
    )
    if not with_shares:
        return cost.reshape(a, g, s)
    i, j, share_i = pick[:, 0].astype(int), pick[:, 1].astype(int), pick[:, 2]
    share = np.zeros((a * g * s, k + 1))
    rows = np.arange(a * g * s)
    share[rows, i] += share_i
    share[rows, j] += np.where(j != i, 1.0 - share_i, 0.0)
    share[~np.isfinite(cost)] = 0.0
    return cost.reshape(a, g, s), share[:, :k].reshape(a, g, s, k)


def _single_plan_costs(pilot, model_index, candidates, rates, sizes, targets) -> np.ndarray:
    """Expected cost per remaining item when one model must pass alone, else the reference."""
    full = np.array([pilot.budget])
    bounds = _predicted_bounds(rates[:, [model_index]], sizes, full)[:, :, 0]
    passed = bounds >= targets[:, None]
    cost = np.where(passed, pilot.unit_costs[candidates[model_index]], pilot.unit_costs[pilot.reference])
    return cost.mean(axis=1)


def _best_single(pilot, candidates, rates, sizes, targets, stop_now) -> Confirmation:
    best = stop_now
    for index, model in enumerate(candidates):
        plan_cost = _single_plan_costs(pilot, index, candidates, rates, sizes, targets)
        totals = _totals(pilot, sizes, plan_cost, pilot.unit_costs[pilot.reference] + pilot.unit_costs[model])
        totals[sizes == 0] = np.inf
        g = int(np.argmin(totals))
        if totals[g] < best.expected_total_cost:
            best = Confirmation(int(sizes[g]), {model: pilot.budget}, float(totals[g]))
    return best


def _until_satisfied(pilot, candidates, rates, sizes, targets, stop_now) -> Confirmation:
    """The cheapest model whose pilot estimate clears the target, confirmed until it would pass."""
    median = np.median(rates, axis=0)
    for index in np.argsort([pilot.unit_costs[m] for m in candidates]):
        if median[index] <= targets[0]:
            continue
        bounds = _predicted_bounds(median[None, [index]], sizes, np.array([pilot.budget]))[:, 0, 0]
        passing = np.flatnonzero((bounds >= targets) & (sizes > 0))
        size = int(sizes[passing[0]]) if passing.size else int(sizes[-1])
        model = candidates[index]
        return Confirmation(size, {model: pilot.budget}, float("nan"))
    return stop_now
