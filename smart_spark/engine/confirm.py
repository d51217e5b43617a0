"""Confirm a saved plan on new data before applying it (scheduled reuse of a fitted model).

A plan fitted on yesterday's rows promises its accuracy target only for those
rows. On new rows, :func:`confirm_plan` asks the reference and every model the
plan uses on a fresh uniform sample of the new rows and checks, with one exact
Clopper-Pearson lower bound per model, that the plan's *fixed* shares still
reach the target, at up to three looks (a third, two thirds and all of the
planned sample; the error budget is spent 0.2 / 0.3 / 0.5 over the looks, so
stopping at the first look that holds keeps the stated confidence):

    sum over plan models of share * lower bound  >=  remaining target

where the sampled rows are exact (they have the reference's answer) and the
bounds are taken at the routed group's effective size (:func:`group_lower`),
with the error budget ``1 - confidence`` split evenly over the plan's
non-reference models (Bonferroni). The shares were fixed before the sample was
seen, so the check is a single test at the stated confidence: when it holds,
the confirmed plan keeps the promise on the new data; when it fails, the caller
refits (or stops). A failed call of a model counts as a disagreement, so rows
that escalate are covered too.

The sample is sized by :func:`confirmation_size` from the agreement the model
showed when it was fitted: the smallest size at which that agreement, less
1.28 standard errors, would confirm the plan -- so an unchanged agreement
confirms with about 90 % probability (capped by ``max_profile`` and half the new rows). It asks
only the plan's models, never the whole catalogue, so it costs far less than a
fresh profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from smart_spark.engine.bounds import cp_upper, group_lower
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.payoff import remaining_target
from smart_spark.engine.plan import Plan
from smart_spark.engine.profiler import ModelStats, Profile

_MIN_SIZE = 40
#: One-sided 90 % normal quantile: the sample is sized so an unchanged agreement confirms with ~90 % probability.
POWER_Z = 1.2816
_GROWTH = 1.25


@dataclass(frozen=True)
class ConfirmationResult:
    holds: bool
    plan: Plan
    profile: Profile
    failing_models: list[str] = field(default_factory=list)
    spent: float = 0.0

    @property
    def agreement_bound(self) -> float:
        return self.plan.agreement_bound


def _checked_models(plan: Plan) -> list[str]:
    return sorted(m for m, share in plan.fractions.items() if share > 0 and m != plan.reference)


def _bound_sum(plan: Plan, models: Sequence[str], agreements: Mapping[str, float], n: int, n_total: int,
               alpha: float) -> tuple[float, dict[str, float], float]:
    """(sum of share * bound, bounds, remaining target) with ``n`` exact sampled rows."""
    n_remaining = max(n_total - n, 1)
    bounds = {}
    for m in models:
        group = plan.fractions[m] * n_remaining
        bounds[m] = float(group_lower(agreements[m], n, alpha, group, n_remaining))
    total = plan.fractions.get(plan.reference, 0.0) + sum(plan.fractions[m] * bounds[m] for m in models)
    return total, bounds, float(remaining_target(plan.accuracy_target, n_total, n))


def confirmation_size(plan: Plan, n_total: int, config: SmartConfig, rates: Mapping[str, float] | None = None) -> int:
    """Rows of a fresh sample needed to confirm ``plan`` on ``n_total`` new rows (0: reference only).

    ``rates``: each model's agreement when the plan was fitted (default: the plan's bounds,
    which makes the sample larger than needed).
    """
    models = _checked_models(plan)
    if not models or n_total <= 0:
        return 0
    alpha = (1.0 - config.confidence) / len(models)
    rates = {m: (rates or {}).get(m, plan.bounds.get(m, 0.0)) for m in models}
    cap = max(1, min(config.max_profile or n_total, n_total // 2))
    size = min(_MIN_SIZE, cap)
    while True:
        # pessimistic agreements (the rate minus POWER_Z standard errors): the confirmation then
        # passes with probability about 90 % when the agreement has not changed
        expected = {m: max(0.0, rates[m] - POWER_Z * math.sqrt(rates[m] * (1 - rates[m]) / size)) * size
                    for m in models}
        total, _, target = _bound_sum(plan, models, expected, size, n_total, alpha)
        if total >= target or size >= cap:
            return size
        size = min(cap, max(size + 1, int(math.ceil(size * _GROWTH))))


#: Shares of the error budget spent at the looks (sizes 1/3, 2/3 and all of the planned sample).
LOOK_WEIGHTS = (0.2, 0.3, 0.5)


def _looks(size: int) -> list[tuple[int, float]]:
    """(sample size, share of alpha) per look; one look for small samples."""
    if size < 3 * _MIN_SIZE:
        return [(size, 1.0)]
    sizes = [int(math.ceil(size * k / 3)) for k in (1, 2, 3)]
    return list(zip(sizes, LOOK_WEIGHTS))


def confirm_plan(plan: Plan, n_total: int, pool_size: int, answer_source: Callable[[str, Sequence[int]], Any],
                 config: SmartConfig, progress=None, rates: Mapping[str, float] | None = None) -> ConfirmationResult:
    """Ask the reference and the plan's models on the first rows of the pool; see the module docstring.

    ``answer_source(model, positions)`` returns one answer per position with
    ``label``, ``raw``, ``cost`` and ``error`` (as for the profiler).
    """
    from smart_spark.llm.labels import agreement_key

    models = _checked_models(plan)
    size = min(confirmation_size(plan, n_total, config, rates), pool_size)
    asked = [plan.reference, *models] if size else []
    answers: dict[str, list[Any]] = {m: [] for m in asked}
    alpha_total = (1.0 - config.confidence) / max(1, len(models))
    holds, n_ok = not models, 0
    ref_ok = np.zeros(0, dtype=bool)
    agreements: dict[str, int] = {m: 0 for m in models}
    bounds: dict[str, float] = {}
    target = float(remaining_target(plan.accuracy_target, n_total, 0))
    alpha = alpha_total
    for look_size, weight in (_looks(size) if asked else []):
        done = len(answers[plan.reference])
        new = list(range(done, look_size))
        for m in asked:
            answers[m].extend(answer_source(m, new))
        ref_keys = [agreement_key(a.label, a.raw) if a.error is None else None for a in answers[plan.reference]]
        ref_ok = np.array([k is not None for k in ref_keys], dtype=bool)
        n_ok = int(ref_ok.sum())
        agreements = {m: sum(bool(ok and a.error is None and agreement_key(a.label, a.raw) == rk)
                             for ok, rk, a in zip(ref_ok, ref_keys, answers[m])) for m in models}
        # alpha spending over the looks: each look uses its own share, so stopping at the first
        # look that holds keeps the overall error at alpha_total (Bonferroni over looks)
        alpha = alpha_total * weight
        total, bounds, target = _bound_sum(plan, models, agreements, n_ok, n_total, alpha)
        holds = bool(total >= target)
        if holds:
            break
    size = len(answers[plan.reference]) if asked else 0
    positions = list(range(size))
    costs = np.zeros(size)
    for m in asked:
        costs += np.array([float(a.cost or 0.0) for a in answers[m]])
    failing = [m for m in models if bounds.get(m, 0.0) < plan.bounds.get(m, 0.0)] if not holds else []
    unit_costs = dict(plan.unit_costs)
    for m in asked:
        unit_costs[m] = float(np.mean([float(a.cost or 0.0) for a in answers[m]])) if size else unit_costs.get(m, 0.0)
    new_plan = Plan(
        fractions=dict(plan.fractions), reference=plan.reference, accuracy_target=plan.accuracy_target,
        confidence=plan.confidence, remaining_target=target, n_total=n_total, n_remaining=n_total - n_ok,
        unit_costs=unit_costs, bounds=bounds, alphas={m: alpha_total for m in models}, method=plan.method, seed=plan.seed,
    )
    stats = {plan.reference: ModelStats(plan.reference, n_ok, n_ok, 1.0, 1.0, unit_costs[plan.reference], "reference")}
    for m in models:
        upper = float(cp_upper(agreements[m], n_ok, alpha)) if n_ok else 1.0
        stats[m] = ModelStats(m, n_ok, agreements[m], bounds[m], upper, unit_costs[m],
                              "satisfied" if bounds[m] >= plan.bounds.get(m, 0.0) else "invalid", alpha_total, alpha)
    ref = answers.get(plan.reference, [])
    profile = Profile(
        n_total=n_total, reference=plan.reference, accuracy_target=plan.accuracy_target, stats=stats,
        positions=np.array(positions, dtype=int), item_costs=costs, reference_ok=ref_ok,
        reference_labels=[a.label for a in ref], reference_raws=[a.raw for a in ref],
        reference_errors=[a.error for a in ref], pilot_size=0, confirmation_size=size,
    )
    if progress is not None:
        progress({"phase": "confirmation", "items_done": size, "spent": float(costs.sum()),
                  "bounds": {m: (bounds[m], stats[m].upper) for m in models}})
    return ConfirmationResult(holds, new_plan, profile, failing, float(costs.sum()))
