"""Confirm a saved plan on new data before applying it (scheduled reuse of a fitted model).

A plan fitted on yesterday's rows promises its accuracy target for *those*
rows only: its bounds say nothing about today's population. Before a saved plan
is applied to new rows, :func:`confirm_plan` asks the reference and the plan's
cheap models on a fresh uniform sample of the new rows and derives new bounds
from that sample alone.

Why the confirmation is a valid bound on its own
------------------------------------------------
Everything adaptive is decided *before* any new row is seen, from the saved
plan and day 1's estimates only (:func:`confirmation_design`): which of the
plan's models to confirm, each one's share ``alpha_i`` of the error budget
``1 - confidence`` (the plan's split, rescaled to the budget), and the sample
size. This is the engine's confirmation stage without its pilot: the saved plan
plays the pilot's part. The one-sided Clopper-Pearson bound of each model on
the new sample (at the routed group's effective size, ``bounds.group_lower``)
then holds with probability ``>= 1 - alpha_i``, and all of them together with
probability ``>= confidence`` (union bound, no independence assumed).

The shares are re-solved on the confirmed bounds for the same models with their
fixed alphas (``engine.plan_from_profile``, exactly as the engine does after
its own confirmation). That is valid because the promise needs only the event
"every bound used holds": on that event *any* share vector with
``sum share_i * L_i >= remaining target`` reaches the target, whichever one the
solver picks after seeing the bounds. What may not be chosen after seeing the
new rows — the models, the alphas, the sample size — is not.

Sampled rows get the reference's answer (exact, never paid again). A failed
call of a candidate counts as a disagreement (so rows whose cheap call fails
and escalate are covered by its bound); a failed reference call leaves the row
unprofiled, as in profiling.

Drift
-----
The confirmation *holds* when no confirmed model is significantly worse than
the saved plan assumed: model ``i`` fails when its one-sided upper bound on
the new sample (at ``(1 - confidence) / models``, so with probability
``>= confidence`` no model is flagged while each is at least as good as its
saved bound) is below the bound the saved plan relied on. Whether it holds or
not, the returned plan is valid; ``holds=False`` tells the caller to refit or
raise :class:`~smart_spark.errors.DriftError`.

Size and looks
--------------
:func:`confirmation_size` minimises the expected total cost on the new rows:
``n * (c_ref + sum of confirmed models' costs) + (N - n) * E[plan cost per item
| bounds at n]``, the expectation taken over day 1's estimates (a Jeffreys
posterior per model when counts are given) and over the new sample's own
binomial noise. When no size beats running the reference on every row, the size
is 0 and the reference runs alone. The design also picks, by the same
expectation, one look at full alpha or two fixed looks (:data:`LOOKS`: half the
size, then all of it) with each model's alpha spent across them (alpha
spending, as in ``payoff.py``, each share scaled by the factor the two nested
looks' correlation allows, ``looks.py``), so the bound at whichever look the
run stops holds at the model's alpha however the stop was chosen. With two looks the run
stops at the first when the plan it allows already costs no more than the rest
of the sample is expected to buy, or when drift is flagged.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from smart_spark.engine.bounds import approx_lower, cp_lower, cp_upper, effective_size
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.engine import plan_from_profile
from smart_spark.engine.payoff import remaining_target, schedule_inflation, size_grid
from smart_spark.engine.plan import Plan
from smart_spark.engine.planner import enumerate_mix_costs
from smart_spark.engine.profiler import (
    AnswerSource,
    ModelStats,
    Profile,
    ProgressCallback,
    _as_arrays,
)

#: Largest number of plan models considered for confirmation subsets (plans use at most 2).
_MAX_SUBSET_MODELS = 4
#: Confirmation schedules: (fraction of the planned size, share of each model's alpha).
#: The design takes whichever is cheaper in expectation (``jobs/bench_reuse.py
#: --looks all`` measures both against the design's choice).
LOOKS = ((0.5, 0.5), (1.0, 0.5))
SINGLE_LOOK = ((1.0, 1.0),)
_MIN_LOOK = 20
#: Scenarios of what the new sample may show, for the expected cost of a size.
_SCENARIOS = 96
_SCENARIO_SEED = 20240321


@dataclass(frozen=True)
class PlanEstimates:
    """Day 1's agreement estimates per model: ``(items, agreements)`` with the reference.

    What the Spark model saves next to the Plan JSON so a later run can size
    its confirmation. Pilot and confirmation counts are pooled: they only size
    the sample, they never enter a bound.
    """

    counts: dict[str, tuple[int, int]]

    @classmethod
    def from_profile(cls, profile: Profile) -> "PlanEstimates":
        counts = {}
        for name, s in profile.stats.items():
            n, k = s.n + s.pilot_n, s.agreements + s.pilot_agreements
            if name != profile.reference and n > 0:
                counts[name] = (int(n), int(k))
        return cls(counts)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": {m: [n, k] for m, (n, k) in sorted(self.counts.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PlanEstimates":
        try:
            counts = {str(m): (int(v[0]), int(v[1])) for m, v in data["counts"].items()}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"plan estimates must look like {{'counts': {{model: [n, k]}}}}, got {data!r}") from exc
        for m, (n, k) in counts.items():
            if not 0 <= k <= n:
                raise ValueError(f"plan estimates for {m!r}: need 0 <= agreements <= items, got ({n}, {k})")
        return cls(counts)


#: Estimates as accepted by the public functions: PlanEstimates, ``{model: (n, k)}``
#: or ``{model: rate}``; ``None`` falls back to the plan's point estimates, else its bounds.
Estimates = PlanEstimates | Mapping[str, Any] | None


@dataclass(frozen=True)
class ConfirmationDesign:
    """Everything fixed before a new row is seen: models, their alphas, the size."""

    models: tuple[str, ...]
    alphas: dict[str, float]
    size: int
    expected_total_cost: float
    reference_cost: float
    #: ``(cumulative rows, share of each model's alpha)`` per look; the shares sum to 1.
    looks: tuple[tuple[int, float], ...] = ()
    #: Expected plan cost per remaining row after the last look (the early-stop yardstick).
    final_cost_per_item: float = 0.0


@dataclass(frozen=True)
class ConfirmationResult:
    """Outcome of :func:`confirm_plan` (see the module doc)."""

    holds: bool
    plan: Plan
    profile: Profile
    failing_models: list[str] = field(default_factory=list)
    spent: float = 0.0
    #: "confirmed", "drift", or "reference-only" (the plan or the new data leave nothing to confirm).
    decision: str = "confirmed"

    @property
    def agreement_bound(self) -> float:
        """The promised agreement over all new rows (sampled rows exact, the rest at the bounds)."""
        return self.plan.agreement_bound


# --- design (no new data) ---------------------------------------------------------------
def confirmation_models(plan: Plan) -> list[str]:
    """The plan's models worth confirming: positive share and cheaper than the reference."""
    c_ref = plan.unit_costs.get(plan.reference, np.inf)
    return sorted(
        m for m, share in plan.fractions.items()
        if m != plan.reference and share > 0 and plan.unit_costs.get(m, np.inf) < c_ref
    )


def _subset_alphas(plan: Plan, subset: Sequence[str], budget: float) -> dict[str, float]:
    """The plan's split restricted to ``subset`` and rescaled to the whole budget.

    Models the plan gave no alpha (a plan whose profiled rows alone met the
    target) share what is left evenly. Rescaling is decided without new data,
    so the union bound still holds.
    """
    given = {m: plan.alphas.get(m, 0.0) for m in subset}
    missing = [m for m in subset if given[m] <= 0]
    if missing:
        rest = max(budget - sum(given.values()), budget / 2)
        for m in missing:
            given[m] = rest / len(missing)
    total = sum(given.values())
    return {m: budget * a / total for m, a in given.items()}


def _scenarios(plan: Plan, models: Sequence[str], estimates: Estimates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the new sample may show, per (scenario, model): a true rate and two sampling quantiles.

    The true rate comes from day 1's Jeffreys posterior (a point when only a
    rate is known); the ``z`` quantile stands for the new sample's own binomial
    noise, which matters here because day 1's estimates are already tight: a
    sample that is unluckily low shifts rows to the reference, and the expected
    cost must price that in. The second quantile is the noise of the rows a
    second look adds to the first. Latin hypercube with a fixed seed, independent
    across models, so the design is a deterministic function of its inputs.
    """
    counts = estimates.counts if isinstance(estimates, PlanEstimates) else dict(estimates or {})
    rng = np.random.default_rng(_SCENARIO_SEED)
    levels = (np.arange(_SCENARIOS) + 0.5) / _SCENARIOS
    rates, quantiles, later = [], [], []
    for m in models:
        value = counts.get(m)
        if isinstance(value, (tuple, list)) and value[0] > 0:
            n, k = float(value[0]), float(value[1])
            rates.append(stats.beta.ppf(rng.permutation(levels), k + 0.5, n - k + 0.5))
        else:
            point = float(value) if isinstance(value, (int, float)) else plan.estimates.get(m, plan.bounds.get(m, 0.0))
            rates.append(np.full(_SCENARIOS, point))
        quantiles.append(stats.norm.ppf(rng.permutation(levels)))
        later.append(stats.norm.ppf(rng.permutation(levels)))
    return np.stack(rates, axis=1), np.stack(quantiles, axis=1), np.stack(later, axis=1)


def _plan_costs(plan, config, models, alphas, scenarios, sizes, weights, n_total) -> np.ndarray:
    """Plan cost per remaining item, shape (sizes, scenarios), with bounds at ``alpha * weight`` per size.

    ``scenarios``: ``(rates, z)``, the sampling quantile ``z`` per (scenario, model) or per (size, scenario, model).
    """
    rates, z = scenarios
    z = z if z.ndim == 3 else z[None]
    costs = np.array([plan.unit_costs[m] for m in models])
    c_ref = plan.unit_costs[plan.reference]
    alpha = np.array([alphas[m] for m in models])
    remaining = np.maximum(n_total - sizes, 1).astype(float)
    targets = remaining_target(config.accuracy_target, n_total, sizes)
    n = np.maximum(sizes, 1).astype(float)[:, None, None]
    observed = np.clip(rates[None] + z * np.sqrt(rates * (1 - rates))[None] / np.sqrt(n), 0.0, 1.0)
    # Routed group of each model: its saved share of the remaining rows.
    share = np.array([max(plan.fractions.get(m, 0.0), 1e-3) for m in models])
    n_eff = effective_size(n, share[None, None, :] * remaining[:, None, None])
    level = alpha[None, None, :] * np.asarray(weights, dtype=float)[:, None, None]
    lower = approx_lower(observed * n_eff, n_eff, level)
    lower = np.where(sizes[:, None, None] > 0, lower, 0.0)
    g, s, k = lower.shape
    if config.method == "mix":
        full = np.concatenate([lower, np.ones((g, s, 1))], axis=2).reshape(g * s, k + 1)
        cost, _ = enumerate_mix_costs(
            full, np.append(alpha, 0.0), np.append(costs, c_ref), np.arange(k + 1),
            np.repeat(targets, s), config.error_budget + 1e-12,
        )
        cost = cost.reshape(g, s)
    else:
        passing = lower >= targets[:, None, None]
        cost = np.where(passing, costs[None, None, :], c_ref).min(axis=2)
    return np.where(targets[:, None] <= 0, min(costs.min(), c_ref), cost)


def look_schedule(size: int, looks: Sequence[tuple[float, float]]) -> tuple[tuple[int, float], ...]:
    """Cumulative look sizes and alpha shares; looks that collapse onto one size pool their shares."""
    pooled: dict[int, float] = {}
    for fraction, weight in looks:
        at = size if fraction >= 1.0 else max(min(_MIN_LOOK, size), int(round(size * fraction)))
        pooled[at] = pooled.get(at, 0.0) + weight
    total = sum(pooled.values())
    return tuple((at, w / total) for at, w in sorted(pooled.items()))


def correlated_schedule(schedule: tuple[tuple[int, float], ...], alphas: Mapping[str, float],
                        budget: float) -> tuple[tuple[int, float], ...]:
    """The looks' shares scaled by the factor their correlation allows (``looks.look_inflation``).

    The two looks are nested samples of the same rows, so their bounds fail
    together far more often than the union bound assumes. The factor depends on
    the look sizes and the alphas spent on them (each model's, and the drift
    test's ``budget / models``): ``payoff.schedule_inflation`` takes the least
    over them, as the fit's confirmation does. All are fixed before a new row is
    seen. One look: unchanged.
    """
    if len(schedule) < 2 or not alphas:
        return schedule
    factor = schedule_inflation(list(schedule), [*alphas.values(), budget / len(alphas)])
    return tuple((size, w * factor) for size, w in schedule)


def _expected_totals(plan, config, subset, alphas, scenarios, sizes, looks, n_total):
    """Expected total cost per final size under a schedule of one or two looks, and the final plan cost.

    With two looks, each scenario stops at the first one when the plan there is
    no dearer than going on is expected to be (the rule :func:`confirm_plan`
    applies); the last look's noise shares the first look's rows.
    """
    schedules = [correlated_schedule(look_schedule(int(n), looks), alphas, config.error_budget) for n in sizes]
    if any(len(sched) > 2 for sched in schedules):
        raise ValueError(f"confirmation schedules have at most two looks, got {looks}")
    confirm_cost = plan.unit_costs[plan.reference] + sum(plan.unit_costs[m] for m in subset)
    rates, z_first, z_later = scenarios
    first = np.array([sched[0][0] for sched in schedules])
    # The last look's noise: the first look's rows plus independent later rows.
    share_first = np.sqrt(first / np.maximum(sizes, 1))[:, None, None]
    z_final = share_first * z_first[None] + np.sqrt(1 - share_first**2) * z_later[None]
    final_weight = np.array([sched[-1][1] for sched in schedules])
    final = _plan_costs(plan, config, subset, alphas, (rates, z_final), sizes, final_weight, n_total)
    final_mean = final.mean(axis=1)
    totals = sizes * confirm_cost + (n_total - sizes) * final_mean
    if np.any(first < sizes):
        first_weight = np.array([sched[0][1] if len(sched) > 1 else 1.0 for sched in schedules])
        early = _plan_costs(plan, config, subset, alphas, (rates, z_first), first, first_weight, n_total)
        go_on = (sizes - first) * confirm_cost + (n_total - sizes) * final_mean
        stop = ((n_total - first)[:, None] * early <= go_on[:, None]) & (first < sizes)[:, None]
        per_scenario = np.where(stop, first[:, None] * confirm_cost + (n_total - first)[:, None] * early,
                                sizes[:, None] * confirm_cost + (n_total - sizes)[:, None] * final)
        totals = per_scenario.mean(axis=1)
    return totals, final_mean


def confirmation_design(plan: Plan, n_total: int, config: SmartConfig, rates: Estimates = None,
                        looks: Sequence[tuple[float, float]] | None = None) -> ConfirmationDesign:
    """Models, alphas, size and looks with the lowest expected total cost on ``n_total`` new rows.

    A function of the saved plan, day 1's estimates and the new row count only,
    so :func:`confirmation_size` and :func:`confirm_plan` agree and the choice
    cannot bias the bounds. ``looks``: one schedule to use; ``None`` picks the
    cheaper in expectation of :data:`SINGLE_LOOK` and :data:`LOOKS`.
    """
    c_ref = plan.unit_costs.get(plan.reference, 0.0)
    reference_only = ConfirmationDesign((), {}, 0, n_total * c_ref, n_total * c_ref)
    models = confirmation_models(plan)[:_MAX_SUBSET_MODELS]
    cap = min(config.max_profile or n_total, n_total)
    if not models or cap < 1 or config.method == "reference":
        return reference_only
    sizes = size_grid(cap)
    best = reference_only
    for schedule in ([looks] if looks is not None else [SINGLE_LOOK, LOOKS]):
        for k in range(1, len(models) + 1):
            for subset in itertools.combinations(models, k):
                alphas = _subset_alphas(plan, subset, config.error_budget)
                scenarios = _scenarios(plan, subset, rates)
                totals, final = _expected_totals(plan, config, list(subset), alphas, scenarios, sizes, schedule, n_total)
                totals[sizes == 0] = np.inf
                g = int(np.argmin(totals))
                if totals[g] < best.expected_total_cost:
                    size = int(sizes[g])
                    looks_now = correlated_schedule(look_schedule(size, schedule), alphas, config.error_budget)
                    best = ConfirmationDesign(subset, alphas, size, float(totals[g]), n_total * c_ref,
                                              looks_now, float(final[g]))
    return best


def confirmation_size(plan: Plan, n_total: int, config: SmartConfig, rates: Estimates = None) -> int:
    """Rows of a fresh uniform sample needed to confirm ``plan`` on ``n_total`` new rows.

    0 when the plan is reference-only, or when no confirmation is expected to
    cost less than running the reference on every row. ``rates``: day 1's
    estimates (:class:`PlanEstimates`, ``{model: (n, k)}`` or ``{model: rate}``);
    without them the plan's point estimates stand in (no posterior spread).
    """
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, got {n_total}")
    return confirmation_design(plan, n_total, config, rates).size


# --- confirmation (new data) ------------------------------------------------------------
def confirm_plan(
    plan: Plan,
    n_total: int,
    pool_size: int,
    answer_source: AnswerSource,
    config: SmartConfig,
    progress: ProgressCallback | None = None,
    rates: Estimates = None,
    solver: str = "cbc",
    design: ConfirmationDesign | None = None,
) -> ConfirmationResult:
    """Confirm ``plan`` on the first rows of a uniformly shuffled pool of the new rows.

    ``answer_source(model, positions) -> answers`` as for the profiler; positions
    index the pool. ``pool_size`` caps the sample (the caller drew the pool,
    sized by :func:`confirmation_size`). ``design``: a precomputed
    :func:`confirmation_design` for these inputs (simulations reuse it across
    runs). See the module doc for validity and drift.
    """
    if n_total < 0 or pool_size < 0:
        raise ValueError("n_total and pool_size must be >= 0")
    design = design or confirmation_design(plan, n_total, config, rates)
    cap = min(design.size, pool_size, n_total)
    if cap == 0:
        why = ("the saved plan is reference-only" if not confirmation_models(plan) else
               f"confirming the plan is not expected to cost less than the reference on {n_total} new rows")
        return _reference_only(plan, n_total, config, why)
    sample = _Sample(plan.reference, list(design.models), answer_source, config.batch_size)
    for index, (look_size, weight) in enumerate(design.looks):
        sample.ask_until(min(look_size, cap))
        profile = _confirmation_profile(plan, n_total, config, design, sample, weight)
        new_plan = plan_from_profile(profile, config, solver)
        failing = _failing(plan, design, profile)
        if progress is not None:
            progress({"phase": "confirmation", "items_done": sample.size, "spent": profile.spent,
                      "bounds": {m: (profile.stats[m].lower, profile.stats[m].upper) for m in design.models}})
        last = index == len(design.looks) - 1 or sample.size >= cap
        if last or failing or _stop_early(design, new_plan, profile, n_total, sample):
            break
    holds = not failing
    return ConfirmationResult(holds, new_plan, profile, failing, profile.spent, "confirmed" if holds else "drift")


def _failing(plan: Plan, design: ConfirmationDesign, profile: Profile) -> list[str]:
    """Models significantly worse on the new sample than the saved plan relied on.

    A blend's members have no bound of their own: they fail together when the
    blend's share-weighted upper bounds fall below the blend's saved bound
    (each upper holds at its drift alpha, so the union covers the blend too).
    """
    failing = [m for m in design.models if profile.stats[m].upper < plan.bounds.get(m, 0.0)]
    if plan.blend and set(plan.blend) <= set(design.models):
        upper = sum(share * profile.stats[m].upper for m, share in plan.blend.items())
        if upper < plan.blend_bound:
            failing += [m for m in sorted(plan.blend) if m not in failing]
    return failing


def _stop_early(design: ConfirmationDesign, plan: Plan, profile: Profile, n_total: int, sample: "_Sample") -> bool:
    """Stop at this look when the plan it allows is as cheap as the rest of the sample is expected to buy."""
    final = min(design.size, n_total)
    per_row = float(np.sum(profile.item_costs)) / max(sample.size, 1)
    go_on = (final - sample.size) * per_row + (n_total - final) * design.final_cost_per_item
    return profile.n_remaining * plan.expected_cost_per_item <= go_on


class _Sample:
    """The confirmation rows asked so far: the reference's answers, agreements, money."""

    def __init__(self, reference: str, models: list[str], answer_source: AnswerSource, batch_size: int):
        self.reference, self.models, self.source, self.batch_size = reference, models, answer_source, batch_size
        self.size = 0
        self.ref_ok: list[bool] = []
        self.labels: list[str | None] = []
        self.raws: list[str | None] = []
        self.errors: list[str | None] = []
        self.item_costs: list[float] = []
        self.agree = {m: 0 for m in models}
        self.paid = {m: 0.0 for m in [reference, *models]}

    def ask_until(self, size: int) -> None:
        for start in range(self.size, size, self.batch_size):
            self._ask(list(range(start, min(start + self.batch_size, size))))
        self.size = max(self.size, size)

    def _ask(self, chunk: list[int]) -> None:
        answers = {m: _as_arrays(self.source(m, chunk), len(chunk), m) for m in [self.reference, *self.models]}
        ref = answers[self.reference]
        self.ref_ok.extend(ref.ok.tolist())
        self.labels.extend(ref.labels if ref.labels is not None else [None] * len(chunk))
        self.raws.extend(ref.raws if ref.raws is not None else [None] * len(chunk))
        self.errors.extend(ref.errors if ref.errors is not None else [None] * len(chunk))
        self.item_costs.extend(np.sum([a.costs for a in answers.values()], axis=0).tolist())
        for m, got in answers.items():
            self.paid[m] += float(got.costs.sum())
        for m in self.models:
            got = answers[m]
            # A failed candidate call is a disagreement: rows it cannot answer stay covered.
            self.agree[m] += int((got.ok & ref.ok & (got.keys == ref.keys)).sum())


def _confirmation_profile(plan: Plan, n_total: int, config: SmartConfig, design: ConfirmationDesign,
                          sample: _Sample, weight: float) -> Profile:
    """The confirmation so far as a Profile: sampled rows exact, per-model counts and bounds.

    ``level`` (what ``plan_from_profile`` bounds with) is the model's alpha times
    this look's share; the drift test spends ``(1 - confidence) / models`` the same way.
    """
    ref_ok = np.asarray(sample.ref_ok, dtype=bool)
    n_ok = int(ref_ok.sum())
    drift_alpha = config.error_budget / len(design.models) * weight
    costs = {**plan.unit_costs, **{m: paid / sample.size for m, paid in sample.paid.items()}}
    stats = {plan.reference: ModelStats(plan.reference, 0, 0, 1.0, 1.0, costs[plan.reference], "reference")}
    for m in design.models:
        alpha, k = design.alphas[m], sample.agree[m]
        lower = float(cp_lower(k, n_ok, alpha * weight))
        upper = float(cp_upper(k, n_ok, drift_alpha))
        status = "drifted" if upper < plan.bounds.get(m, 0.0) else "satisfied"
        stats[m] = ModelStats(m, n_ok, k, lower, upper, costs[m], status, alpha, alpha * weight)
    return Profile(
        n_total=n_total, reference=plan.reference, accuracy_target=config.accuracy_target, stats=stats,
        positions=np.arange(sample.size, dtype=np.int64), item_costs=np.asarray(sample.item_costs, dtype=float),
        reference_ok=ref_ok, reference_labels=list(sample.labels), reference_raws=list(sample.raws),
        reference_errors=list(sample.errors), pilot_size=0, confirmation_size=sample.size,
    )


def _reference_only(plan: Plan, n_total: int, config: SmartConfig, reason: str) -> ConfirmationResult:
    """Nothing to confirm: the reference answers every new row (the promise holds trivially)."""
    reference = plan.reference
    cost = plan.unit_costs.get(reference, 0.0)
    profile = Profile(
        n_total=n_total, reference=reference, accuracy_target=config.accuracy_target,
        stats={reference: ModelStats(reference, 0, 0, 1.0, 1.0, cost, "reference")},
        positions=np.zeros(0, dtype=np.int64), item_costs=np.zeros(0), reference_ok=np.zeros(0, dtype=bool),
    )
    new_plan = replace(
        plan, fractions={reference: 1.0}, bounds={reference: 1.0}, alphas={}, n_total=n_total, n_remaining=n_total,
        remaining_target=config.accuracy_target, accuracy_target=config.accuracy_target, confidence=config.confidence,
        estimates={reference: 1.0}, reason=reason,
    )
    return ConfirmationResult(True, new_plan, profile, [], 0.0, "reference-only")
