"""Fit-time choice between the plain plan and a certified confidence cascade.

When the catalogue has a model (other than the reference) that gives
log-probabilities (``top_logprobs`` > 0), the fit certifies a cascade for the
cheapest such model on the profiled pool (``smart_spark.engine.cascade``) beside
the plain mix, and keeps whichever plan is expected to cost less on the rows
still to answer. The cascade plan: every unprofiled row asks the cheap model;
its answer stands when its confidence is at or above the certified threshold,
otherwise the row is escalated to the reference (the cheap call is paid either
way and counted in the expected cost).

Why the promise still holds at the stated confidence: both plans are certified
on the same pool before one is chosen, and the choice looks at the data, so the
error budget ``1 - confidence`` is split between them in advance (half each,
:func:`split_budget`); whichever is chosen fails with probability at most the
sum of the two halves (union bound). Each certificate is the one its own module
proves (the plain mix: ``engine/planner.py``; the cascade: ``engine/cascade.GUARANTEE``,
whose looks here are cut at the pool's end, :func:`~smart_spark.engine.cascade.pool_looks`).
Rows the reference answered while profiling either plan keep the reference's
answer, which can only add agreement.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from smart_spark.engine.cascade import CascadeResult, certify_cascade, disagreement_budget, pool_looks
from smart_spark.engine.cascade_source import cascade_profile
from smart_spark.spark.state import ProfiledAnswer

logger = logging.getLogger("smart_spark")

#: Share of the error budget given to the cascade when it is certified beside the plain mix.
CASCADE_BUDGET_SHARE = 0.5
#: Tokens used to rank models by catalogue price before anything is measured.
_PRICE_PROMPT_TOKENS, _PRICE_COMPLETION_TOKENS = 200, 2


def cascade_candidate(catalogue: Any, reference: str, method: str) -> str | None:
    """The cheapest model with log-probabilities other than the reference (None: no cascade)."""
    if method != "mix":
        return None
    offered = [s for s in catalogue if s.name != reference and getattr(s, "top_logprobs", 0)]
    if not offered:
        return None
    return min(offered, key=lambda s: (_price(s), s.name)).name


def split_budget(config: Any, candidate: str | None) -> tuple[Any, float]:
    """The plain engine's config (at its share of the budget) and the cascade's error budget."""
    if candidate is None:
        return config, 0.0
    cascade_budget = config.error_budget * CASCADE_BUDGET_SHARE
    plain = dataclasses.replace(config, confidence=1.0 - (config.error_budget - cascade_budget))
    return plain, cascade_budget


@dataclass(frozen=True)
class CascadeFit:
    """A certified cascade and what choosing it would cost."""

    model: str
    result: CascadeResult
    cheap_unit_cost: float
    reference_unit_cost: float
    kept_rate: float  # estimated share of the unprofiled rows whose cheap answer stands
    agreement_estimate: float  # estimated agreement of the cascade's answers on unprofiled rows
    error_budget: float
    sample_agreements: int = 0  # profiled rows where the cheap answer equals the reference's

    @property
    def unit_cost(self) -> float:
        """Expected USD per unprofiled row: the cheap call always, the reference on escalated rows."""
        return self.cheap_unit_cost + (1.0 - self.kept_rate) * self.reference_unit_cost

    def to_dict(self) -> dict[str, Any]:
        """What the fitted state keeps (and MLflow logs)."""
        r = self.result
        return {
            "model": self.model,
            "threshold": r.threshold,
            "expected_kept_share": self.kept_rate,
            "error_budget": self.error_budget,
            "look_alpha": r.alpha,
            "cutoff": r.cutoff,
            "looks_used": r.looks_used,
            "profiled_rows": int(r.sampled.size),
            "disagreement_budget": r.budget,
            "cheap_unit_cost": self.cheap_unit_cost,
            "reference_unit_cost": self.reference_unit_cost,
        }


def certify_on_pool(
    answer_source: Callable[[str, Sequence[int]], Sequence[Any]],
    *,
    model: str,
    reference: str,
    catalogue: Any,
    unit_costs: dict[str, float],
    n_valid: int,
    pool_size: int,
    accuracy_target: float,
    error_budget: float,
) -> CascadeFit | None:
    """Certify ``model``'s threshold on the pool's prefixes (answers paid through ``answer_source``).

    The pool is a uniform sample in random order, so its prefixes are the looks'
    uniform samples. ``unit_costs``: USD per row already measured, if any (the
    catalogue's prices stand in for the cost ratio that decides when to stop
    profiling). None when the pool is empty.
    """
    if pool_size < 1 or n_valid < 1:
        return None
    costs: dict[str, list[float]] = {model: [], reference: []}

    def paying(name: str, positions: Sequence[int]) -> Sequence[Any]:
        answers = answer_source(name, positions)
        costs[name].extend(float(getattr(a, "cost", 0.0) or 0.0) for a in answers)
        return answers

    profile = cascade_profile(paying, model, reference)
    seen_confidence: list[np.ndarray] = []
    seen_agrees: list[np.ndarray] = []

    def recording(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        confidence, agrees = profile(positions)
        seen_confidence.append(confidence)
        seen_agrees.append(agrees)
        return confidence, agrees

    ratio = _cost_ratio(unit_costs, catalogue, model, reference)
    result = certify_cascade(
        n_valid, recording, accuracy_target=accuracy_target,
        error_budget=error_budget, rng=np.random.default_rng(0), cheap_cost_ratio=ratio,
        schedule=pool_looks(n_valid, pool_size, error_budget, accuracy_target), order=np.arange(pool_size),
    )
    seen = result.sampled.size
    kept_rate = result.estimated_kept_share / (1.0 - seen / n_valid) if seen < n_valid else 0.0
    cheap_cost = _mean(costs[model], unit_costs.get(model))
    reference_cost = _mean(costs[reference], unit_costs.get(reference))
    return CascadeFit(
        model=model, result=result, cheap_unit_cost=cheap_cost, reference_unit_cost=reference_cost,
        kept_rate=kept_rate if result.uses_cheap_model else 0.0,
        agreement_estimate=_agreement_estimate(np.concatenate(seen_confidence), np.concatenate(seen_agrees),
                                               result.threshold),
        error_budget=error_budget,
        sample_agreements=int(np.concatenate(seen_agrees).sum()),
    )


def choose(plain_plan: Any, fit: CascadeFit | None, n_reference_answered: int) -> bool:
    """True when the cascade is certified to keep something and is expected to cost less than the plain plan.

    Both are compared on the rows the reference did not answer while profiling.
    """
    if fit is None or not fit.result.uses_cheap_model:
        return False
    remaining = max(plain_plan.n_total - n_reference_answered, 0)
    reference_only = set(plain_plan.fractions) == {plain_plan.reference}
    plain = (fit.reference_unit_cost if reference_only else plain_plan.expected_cost_per_item) * remaining
    cascade = fit.unit_cost * remaining
    logger.info("SMART cascade: %s at threshold %.6g keeps about %.1f%% of the rows left; expected $%.4f "
                "against $%.4f for the plain plan -> %s", fit.model, fit.result.threshold, 100 * fit.kept_rate,
                cascade, plain, "cascade" if cascade < plain else "plain plan")
    return cascade < plain


def cascade_plan(plain_plan: Any, fit: CascadeFit, n_reference_answered: int, accuracy_target: float,
                 confidence: float):
    """The plan the apply phase routes by: every unprofiled row to the cascade model, escalation to the reference.

    ``bounds``: the certificate promises at most ``B = floor((1 - target) N)``
    disagreements on the rows left, so their agreement is at least ``(R - B) / R``.
    """
    from smart_spark.engine.plan import Plan

    n_total = plain_plan.n_total
    remaining = max(n_total - n_reference_answered, 0)
    allowed = disagreement_budget(n_total, accuracy_target)
    bound = max(0.0, (remaining - allowed) / remaining) if remaining else 1.0
    reference = plain_plan.reference
    return Plan(
        fractions={fit.model: 1.0},
        reference=reference,
        accuracy_target=accuracy_target,
        confidence=confidence,
        remaining_target=(accuracy_target * n_total - (n_total - remaining)) / remaining if remaining else 0.0,
        n_total=n_total,
        n_remaining=remaining,
        unit_costs={fit.model: fit.unit_cost, reference: fit.reference_unit_cost},
        bounds={fit.model: bound},
        alphas={fit.model: fit.error_budget},
        method="cascade",
        seed=plain_plan.seed,
        reference_failure_rate=plain_plan.reference_failure_rate,
        estimates={fit.model: fit.agreement_estimate},
    )


def reference_answers(answers: dict[tuple[str, int], Any], pool: Sequence[Any], positions: np.ndarray,
                      reference: str) -> dict[str, ProfiledAnswer]:
    """The reference's answers to the cascade's profiled rows, by row key (failed calls keep their error)."""
    out: dict[str, ProfiledAnswer] = {}
    for position in positions:
        answer = answers.get((reference, int(position)))
        if answer is not None:
            out[pool[int(position)].key] = ProfiledAnswer(answer.label, answer.raw, answer.error)
    return out


def _agreement_estimate(confidence: np.ndarray, agrees: np.ndarray, threshold: float) -> float:
    """Share of sampled rows that would agree under the cascade (kept and agreeing, or escalated)."""
    if not confidence.size:
        return float("nan")
    return float(np.mean((confidence < threshold) | agrees))


def _cost_ratio(unit_costs: dict[str, float], catalogue: Any, model: str, reference: str) -> float:
    cheap, ref = unit_costs.get(model), unit_costs.get(reference)
    if cheap is not None and ref and math.isfinite(cheap) and math.isfinite(ref) and ref > 0:
        return cheap / ref
    ref_price = _price(catalogue[reference])
    return _price(catalogue[model]) / ref_price if ref_price > 0 else 0.0


def _price(spec: Any) -> float:
    return float(spec.cost(_PRICE_PROMPT_TOKENS, _PRICE_COMPLETION_TOKENS))


def _mean(values: list[float], fallback: float | None) -> float:
    if values:
        return float(np.mean(values))
    return float(fallback) if fallback is not None and math.isfinite(fallback) else 0.0



def plain_cannot_win(fit: CascadeFit | None, n_models: int, n_total: int, accuracy_target: float) -> bool:
    """True when the plain mix need not be profiled: one cheap model, and even optimistic it costs more.

    Only for a catalogue of the cascade model and the reference: the plain mix
    then routes a share ``x`` of the rows left to the cheap model, at best
    ``x = (1 - t) / (1 - a)`` for the remaining target ``t`` and the agreement
    bound ``a`` it could certify on a sample like the cascade's own (the
    Clopper-Pearson lower bound at the cascade's error share), before paying
    for profiling of its own. If the cascade is expected to cost less than that,
    profiling the mix is not worth it. A decision from the data, covered
    like the final choice by the budget split (the plain plan is simply not chosen).
    """
    if fit is None or n_models != 2 or not fit.result.uses_cheap_model:
        return False
    sampled = int(fit.result.sampled.size)
    remaining = n_total - sampled
    if remaining <= 0:
        return False
    target = (accuracy_target * n_total - sampled) / remaining
    from smart_spark.engine.bounds import cp_lower

    bound = float(cp_lower(fit.sample_agreements, sampled, fit.error_budget))
    share = 1.0 if bound >= 1.0 else min(1.0, max(0.0, (1.0 - target) / (1.0 - bound)))
    plain = share * fit.cheap_unit_cost + (1.0 - share) * fit.reference_unit_cost
    return fit.unit_cost < plain


def plan_with_cascade(
    fit: CascadeFit | None,
    answers: dict[tuple[str, int], Any],
    pool: Sequence[Any],
    plain_plan: Any,
    profiled: dict[str, ProfiledAnswer],
    config: Any,
) -> tuple[Any, dict[str, ProfiledAnswer], dict[str, Any] | None]:
    """The plan to apply, the reference's profiled answers and the cascade (None: the plain plan).

    ``config``: the user's (full-budget) engine config; the plain plan was made at
    the rest of the budget (:func:`split_budget`) and is reported at the user's
    confidence, which the union bound over both certificates keeps.
    """
    if fit is None:
        return plain_plan, profiled, None
    merged = dict(profiled)
    for key, answer in reference_answers(answers, pool, fit.result.sampled, plain_plan.reference).items():
        if key not in merged or merged[key].error is not None:
            merged[key] = answer
    answered = sum(1 for a in merged.values() if a.error is None)
    if choose(plain_plan, fit, answered):
        plan = cascade_plan(plain_plan, fit, answered, config.accuracy_target, config.confidence)
        return plan, merged, fit.to_dict()
    return dataclasses.replace(plain_plan, confidence=config.confidence), merged, None
