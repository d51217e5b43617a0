"""Profile, then plan: the whole SMART method behind one call, with no Spark in sight."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from smart_spark.engine.bounds import group_lower
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.plan import Plan, blend_name
from smart_spark.engine.planner import MixSolution, Option, solve_mix
from smart_spark.engine.profiler import AnswerSource, Profile, Profiler, ProgressCallback, RowKeys

_MAX_REPLANS = 6


@dataclass(frozen=True)
class SmartResult:
    profile: Profile
    plan: Plan


class SmartEngine:
    """SMART for one dataset: ``run`` profiles on a random pool and returns the plan.

    ``models`` is the whole catalogue (the reference may be among them);
    ``solver`` is the mix program's solver ("cbc" or the exact "enumerate").
    """

    def __init__(
        self,
        config: SmartConfig,
        models: Sequence[str],
        reference: str,
        solver: str = "cbc",
        max_parallel_models: int = 4,
        prices: Mapping[str, float] | None = None,
        row_keys: RowKeys | None = None,
    ):
        """``prices``: optional expected USD per item per model (from the catalogue),
        used before any call to skip profiling that cannot pay for itself.
        ``row_keys(positions) -> keys``: the routing key of each pool position,
        so a blend is scored on profiled rows by the split hash the apply phase
        routes with (``plan.split_unit_hash``)."""
        if reference not in models:
            raise ValueError(f"reference model {reference!r} is not among the models {list(models)}")
        if len(set(models)) != len(models):
            raise ValueError(f"model names must be unique, got {list(models)}")
        self.config = config
        self.models = list(models)
        self.reference = reference
        self.solver = solver
        self.max_parallel_models = max_parallel_models
        self.prices = dict(prices or {})
        self.row_keys = row_keys

    def run(
        self,
        n_total: int,
        pool_size: int,
        answer_source: AnswerSource,
        progress: ProgressCallback | None = None,
    ) -> SmartResult:
        profiler = Profiler(
            self.config,
            [m for m in self.models if m != self.reference],
            self.reference,
            answer_source,
            progress=progress,
            max_parallel_models=self.max_parallel_models,
            prices=self.prices,
            row_keys=self.row_keys,
        )
        profile = profiler.run(n_total, pool_size)
        return SmartResult(profile, plan_from_profile(profile, self.config, self.solver))


def plan_from_profile(profile: Profile, config: SmartConfig, solver: str = "cbc") -> Plan:
    """The plan for the unprofiled items, using each confirmed model at its committed share."""
    remaining = profile.n_remaining
    target = profile.remaining_target
    unit_costs = profile.unit_costs
    confirmed = [
        s for s in profile.stats.values()
        if s.alpha > 0 and s.n > 0 and s.unit_cost < unit_costs.get(profile.reference, np.inf)
    ]
    if target <= 0 and unit_costs:
        # The profiled items alone meet the target: anything goes, so the cheapest model.
        cheapest = min(unit_costs, key=unit_costs.get)
        solution = MixSolution({cheapest: 1.0}, cost_per_item=unit_costs[cheapest])
    elif config.method in ("single", "single-early-stop"):
        solution = _single(profile, confirmed, target)
    elif config.method == "mix" and confirmed:
        solution = _mix(profile, confirmed, target, config.error_budget, solver)
    else:
        solution = MixSolution({profile.reference: 1.0}, bounds={profile.reference: 1.0})
    solution, blend, blend_bound = _expand_blend(solution, profile.blend)
    return Plan(
        fractions=solution.fractions,
        reference=profile.reference,
        accuracy_target=config.accuracy_target,
        confidence=config.confidence,
        remaining_target=target,
        n_total=profile.n_total,
        n_remaining=remaining,
        unit_costs=unit_costs,
        bounds=solution.bounds,
        alphas=solution.alphas,
        method=config.method,
        seed=config.seed,
        reference_failure_rate=profile.reference_failure_rate,
        estimates=_estimates(profile, solution.fractions),
        reason=profile.reason or _plan_reason(solution.fractions, profile.reference, confirmed),
        blend=blend,
        blend_bound=blend_bound,
    )


def _expand_blend(solution: MixSolution, blend: dict[str, float]) -> tuple[MixSolution, dict[str, float], float]:
    """Give the blend's share to its members (at the ratio fixed on the pilot); they share its one bound and alpha."""
    name = blend_name(blend) if blend else None
    if name is None or name not in solution.fractions:
        return solution, {}, 0.0
    share = solution.fractions[name]
    fractions = {m: x for m, x in solution.fractions.items() if m != name}
    fractions.update({m: share * inside for m, inside in blend.items()})
    alphas = {m: a for m, a in solution.alphas.items() if m != name}
    alphas.update({m: solution.alphas[name] for m in blend})
    bounds = {m: b for m, b in solution.bounds.items() if m != name}
    return MixSolution(fractions, alphas, bounds, solution.cost_per_item), dict(blend), solution.bounds[name]


def _estimates(profile: Profile, fractions) -> dict[str, float]:
    """Point estimates of each plan model's agreement (confirmation counts, else pilot)."""
    out = {}
    for model in fractions:
        stats = profile.stats.get(model)
        if model == profile.reference or stats is None:
            out[model] = 1.0
        elif math.isfinite(stats.agreement_rate):
            out[model] = float(stats.agreement_rate)
    return out


def _plan_reason(fractions, reference: str, confirmed) -> str:
    if set(fractions) != {reference}:
        return ""
    if not confirmed:
        return "no candidate was confirmed as cheaper and good enough; the reference answers every row"
    return "no confirmed candidate reaches the remaining target at a lower cost; the reference answers every row"


def _single(profile: Profile, confirmed, target: float) -> MixSolution:
    """Cheapest confirmed model whose bound alone clears the target, else the reference."""
    for s in sorted(confirmed, key=lambda s: s.unit_cost):
        lower = float(group_lower(s.agreements, s.n, s.level, profile.n_remaining, profile.n_remaining))
        if lower >= target:
            return MixSolution({s.model: 1.0}, {s.model: s.alpha}, {s.model: lower}, s.unit_cost)
    return MixSolution({profile.reference: 1.0}, bounds={profile.reference: 1.0})


def _mix(profile: Profile, confirmed, target: float, budget: float, solver: str) -> MixSolution:
    """Solve the mix program, then re-solve with bounds for the routed group sizes.

    A model given share ``x`` answers about ``x R`` rows, and the bound must
    cover that group's own sampling noise (``bounds.group_lower``). Shares and
    bounds depend on each other, so we iterate: solve, recompute each bound at
    its group size, check; if the check fails, solve again with those bounds.
    """
    remaining = profile.n_remaining
    reference_cost = profile.stats[profile.reference].unit_cost
    group = {s.model: float(remaining) for s in confirmed}
    solution = None
    for _ in range(_MAX_REPLANS):
        options = [
            Option(s.model, s.alpha, _lower(s, group[s.model], remaining), s.unit_cost)
            for s in confirmed
        ]
        solution = solve_mix(options, profile.reference, reference_cost, target, budget, solver)
        group = {m: max(solution.fractions.get(m, 0.0) * remaining, 1.0) for m in group}
        if _meets(solution, confirmed, group, remaining, target):
            return _with_group_bounds(solution, confirmed, group, remaining)
    return _shift_to_reference(solution, confirmed, remaining, target, profile.reference, reference_cost)


def _lower(stats, group_size: float, remaining: int) -> float:
    return float(group_lower(stats.agreements, stats.n, stats.level, group_size, remaining))


def _meets(solution: MixSolution, confirmed, group, remaining, target) -> bool:
    by_model = {s.model: s for s in confirmed}
    total = 0.0
    for model, share in solution.fractions.items():
        total += share * (_lower(by_model[model], group[model], remaining) if model in by_model else 1.0)
    return total >= target - 1e-12


def _with_group_bounds(solution: MixSolution, confirmed, group, remaining) -> MixSolution:
    by_model = {s.model: s for s in confirmed}
    bounds = {
        m: (_lower(by_model[m], group[m], remaining) if m in by_model else 1.0)
        for m in solution.fractions
    }
    return MixSolution(solution.fractions, solution.alphas, bounds, solution.cost_per_item)


def _shift_to_reference(solution, confirmed, remaining, target, reference, reference_cost) -> MixSolution:
    """Last resort: scale the cheap shares down until the group-size check passes."""
    by_model = {s.model: s for s in confirmed}
    cheap = {m: x for m, x in solution.fractions.items() if m != reference}
    lo, hi = 0.0, 1.0
    for _ in range(40):
        scale = (lo + hi) / 2
        shares = {m: x * scale for m, x in cheap.items()}
        reached = (1 - sum(shares.values())) + sum(
            x * _lower(by_model[m], max(x * remaining, 1.0), remaining) for m, x in shares.items()
        )
        lo, hi = (scale, hi) if reached >= target else (lo, scale)
    shares = {m: x * lo for m, x in cheap.items() if x * lo > 0}
    fractions = {**shares, reference: 1.0 - sum(shares.values())}
    fractions = {m: x for m, x in fractions.items() if x > 0}
    group = {m: max(x * remaining, 1.0) for m, x in shares.items()}
    cost = sum(x * (by_model[m].unit_cost if m in by_model else reference_cost) for m, x in fractions.items())
    alphas = {m: solution.alphas[m] for m in shares}
    return _with_group_bounds(MixSolution(fractions, alphas, {}, cost), confirmed, group, remaining)
