"""The cheapest guaranteed mix of models, as one mixed-integer program.

Each candidate model can be used with one of several *options*: a share of the
error budget ``alpha`` and the agreement lower bound that share buys. The
program picks at most one option per model (binary variables), keeps the sum
of the chosen shares within the budget ``1 - confidence`` (union bound), and
splits the remaining items between the chosen models and the reference so that
the bound-weighted agreement reaches the remaining target at minimum cost::

    min   sum_o c_o x_o + c_ref x_ref
    s.t.  sum_o x_o + x_ref = 1
          sum_o L_o x_o + x_ref >= target
          x_o <= y_o,  sum_{o of model i} y_o <= 1,  sum_o alpha_o y_o <= budget

It is solved with pulp + CBC (``solver="cbc"``, the default). For a fixed
choice of options the continuous part has two constraints, so an optimal basic
solution uses at most two options; ``solver="enumerate"`` exploits this to
solve the same program exactly by enumerating singles and pairs, vectorised.
The simulation uses it inside its cost look-ahead, and the tests check both
solvers agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pulp

_TOL = 1e-9


class PlanningError(ValueError):
    """The mix program has no solution (e.g. no model, or an impossible target)."""


@dataclass(frozen=True)
class Option:
    """One way to use a model: the budget share it consumes and the bound it gets."""

    model: str
    alpha: float
    lower: float
    unit_cost: float


@dataclass(frozen=True)
class MixSolution:
    """Shares of the remaining items per model, with the option each one uses."""

    fractions: dict[str, float]
    alphas: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, float] = field(default_factory=dict)
    cost_per_item: float = 0.0


def solve_mix(
    options: list[Option],
    reference: str,
    reference_cost: float,
    target: float,
    budget: float,
    solver: str = "cbc",
) -> MixSolution:
    """Cheapest mix of ``options`` plus the reference meeting ``target`` (see module doc)."""
    if solver not in ("cbc", "enumerate"):
        raise ValueError(f"solver must be 'cbc' or 'enumerate', got {solver!r}")
    if target > 1.0 + _TOL:
        raise PlanningError(f"remaining target {target:.4f} exceeds 1: no mix can reach it")
    options = [o for o in options if o.model != reference and o.alpha <= budget + _TOL]
    if solver == "enumerate":
        return _solve_enumerate(options, reference, reference_cost, target, budget)
    return _solve_cbc(options, reference, reference_cost, target, budget)


def _solve_cbc(options, reference, reference_cost, target, budget) -> MixSolution:
    problem = pulp.LpProblem("smart_mix", pulp.LpMinimize)
    x_ref = pulp.LpVariable("x_reference", lowBound=0, upBound=1)
    xs = [pulp.LpVariable(f"x_{k}", lowBound=0, upBound=1) for k in range(len(options))]
    ys = [pulp.LpVariable(f"y_{k}", cat=pulp.LpBinary) for k in range(len(options))]
    problem += reference_cost * x_ref + pulp.lpSum(o.unit_cost * x for o, x in zip(options, xs))
    problem += x_ref + pulp.lpSum(xs) == 1, "shares_sum_to_one"
    problem += x_ref + pulp.lpSum(o.lower * x for o, x in zip(options, xs)) >= target, "agreement"
    problem += pulp.lpSum(o.alpha * y for o, y in zip(options, ys)) <= budget, "error_budget"
    for x, y in zip(xs, ys):
        problem += x <= y
    for model in {o.model for o in options}:
        problem += pulp.lpSum(y for o, y in zip(options, ys) if o.model == model) <= 1
    status = problem.solve(pulp.PULP_CBC_CMD(msg=False))
    if pulp.LpStatus[status] != "Optimal":
        raise PlanningError(f"mix program not solved: {pulp.LpStatus[status]}")
    # CBC reports shares to ~8 digits; take its choice of options and compute the
    # shares exactly for that choice, so the plan meets the target to the last bit.
    chosen = [o for o, y, x in zip(options, ys, xs) if (y.value() or 0) > 0.5 and (x.value() or 0) > _TOL]
    return _solve_enumerate(chosen, reference, reference_cost, target, budget)


def _solve_enumerate(options, reference, reference_cost, target, budget) -> MixSolution:
    every = options + [Option(reference, 0.0, 1.0, reference_cost)]
    best_cost, pick = enumerate_mix_costs(
        lower=np.array([[o.lower for o in every]]),
        alpha=np.array([o.alpha for o in every]),
        unit_cost=np.array([o.unit_cost for o in every]),
        model_id=np.array(_model_ids(every)),
        target=np.array([target]),
        budget=budget,
    )
    if not np.isfinite(best_cost[0]):
        raise PlanningError("mix program infeasible")
    i, j, share_i = int(pick[0, 0]), int(pick[0, 1]), float(pick[0, 2])
    fractions = {every[i].model: share_i}
    if j != i and share_i < 1.0 - _TOL:
        fractions[every[j].model] = 1.0 - share_i
    alphas = {every[k].model: every[k].alpha for k in {i, j} if every[k].model != reference}
    bounds = {every[k].model: every[k].lower for k in {i, j}}
    return _normalised(fractions, alphas, bounds, options, reference, reference_cost)


def _model_ids(options: list[Option]) -> list[int]:
    index: dict[str, int] = {}
    return [index.setdefault(o.model, len(index)) for o in options]


def _normalised(fractions, alphas, bounds, options, reference, reference_cost) -> MixSolution:
    """Clean solver round-off: drop dust shares, renormalise, recompute the cost."""
    fractions = {m: s for m, s in fractions.items() if s > 1e-7}
    total = sum(fractions.values())
    fractions = {m: s / total for m, s in fractions.items()}
    cost_of = {o.model: o.unit_cost for o in options}
    cost_of[reference] = reference_cost
    return MixSolution(
        fractions=fractions,
        alphas={m: a for m, a in alphas.items() if m in fractions},
        bounds={m: b for m, b in bounds.items() if m in fractions},
        cost_per_item=float(sum(s * cost_of[m] for m, s in fractions.items())),
    )


def enumerate_mix_costs(lower, alpha, unit_cost, model_id, target, budget):
    """Exact optimum of the mix program for a batch of bound vectors.

    ``lower`` has shape (B, P): P options (the reference among them, with
    alpha 0 and lower 1), B independent problems that differ in their bounds and
    ``target`` (shape (B,)). Returns the minimum cost per item (B,) (``inf``
    where infeasible) and, per problem, ``(i, j, share_i)``: the share of option
    ``i``, the rest going to option ``j`` (``i == j`` for a single option).
    """
    lower = np.asarray(lower, dtype=float)
    target = np.asarray(target, dtype=float)[:, None]
    cost = np.broadcast_to(np.asarray(unit_cost, dtype=float), lower.shape)
    alpha = np.asarray(alpha, dtype=float)
    n_batch, n_opt = lower.shape

    single_ok = (lower >= target - _TOL) & (alpha <= budget + _TOL)[None, :]
    single_cost = np.where(single_ok, cost, np.inf)

    # Pair (i below target, j at or above): share of i = (L_j - t) / (L_j - L_i). Only the pairs the
    # budget and model ids allow are formed, in row-major (i, j) order, so the argmin breaks ties as
    # one over the whole pair matrix would (the others are never feasible).
    model_id = np.asarray(model_id)
    allowed = (model_id[:, None] != model_id[None, :]) & (alpha[:, None] + alpha[None, :] <= budget + _TOL)
    pi, pj = np.nonzero(allowed)
    li, lj, ci, cj = lower[:, pi], lower[:, pj], cost[:, pi], cost[:, pj]
    pair_ok = (li < target) & (lj >= target - _TOL) & (ci < cj)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_i = np.clip((lj - target) / (lj - li), 0.0, 1.0)
    pair_cost = np.where(pair_ok, cj - share_i * (cj - ci), np.inf)
    rows = np.arange(n_batch)
    if len(pi):
        best_pair = pair_cost.argmin(axis=1)
        pair_value = pair_cost[rows, best_pair]
        best_i, best_j, best_share = pi[best_pair], pj[best_pair], share_i[rows, best_pair]
    else:
        pair_value = np.full(n_batch, np.inf)
        best_i = best_j = np.zeros(n_batch, dtype=int)
        best_share = np.ones(n_batch)

    best_single = single_cost.argmin(axis=1)
    single_value = single_cost[rows, best_single]
    use_pair = pair_value < single_value
    pick = np.empty((n_batch, 3))
    pick[:, 0] = np.where(use_pair, best_i, best_single)
    pick[:, 1] = np.where(use_pair, best_j, best_single)
    pick[:, 2] = np.where(use_pair, best_share, 1.0)
    return np.minimum(pair_value, single_value), pick
