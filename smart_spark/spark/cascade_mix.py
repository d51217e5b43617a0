"""Fit-time mix of plain models and confidence cascades on one common sample.

When the catalogue has a model with log-probabilities *and* at least one other
cheap model, the plain side of the fit (:mod:`smart_spark.spark.cascade_fit`'s
budget split) is this mix instead of the plain engine: every model answers the
same prefix of the profiling pool (a uniform sample in random order), each model
with log-probabilities is offered as a cascade ``(model, threshold)`` whose
threshold is chosen on the first part of that prefix (the pilot), and every
option's agreement with the reference is counted on the rest (the
confirmation rows), each at an equal, pre-fixed share of the error budget
(``engine.cascade_options.cascade_option_stats``). The engine's planner
(``engine.plan_from_profile``: the cheapest mix meeting the remaining target,
bounds at the routed group sizes) then picks shares of the unprofiled rows.

Why the promise holds: with its threshold fixed on the pilot, whether a
cascade's final answer equals the reference's (kept and agreeing, or escalated
to the reference) is a fixed property of each row, so the cascade is one more
model to the planner, and its bound on the fresh confirmation rows is an
ordinary Clopper-Pearson bound. The sample size and pilot share are fixed from
``N`` and the pool size before any row is seen. The apply phase sends a
cascade's low-confidence (or failed) rows straight to the reference, which is
what its agreement flags counted.

One option per model: a model with log-probabilities is offered as its cascade
only (the pilot may pick the threshold that keeps every answered row, which is
the plain model: then it is offered plain), so the output's model column and
the per-cascade kept share stay unambiguous.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from smart_spark.engine.cascade_options import cascade_option_stats, option_sample_sizes
from smart_spark.engine.profiler import ModelStats, Profile
from smart_spark.llm.labels import agreement_key

logger = logging.getLogger("smart_spark")

AnswerSource = Callable[[str, Sequence[int]], Sequence[Any]]


def offers_cascade_mix(catalogue: Any, reference: str, method: str) -> bool:
    """True when the mix of plain models and cascades replaces the plain engine in the fit."""
    cheap = [s for s in catalogue if s.name != reference]
    return method == "mix" and len(cheap) >= 2 and any(getattr(s, "top_logprobs", 0) for s in cheap)


def cascade_mix_profile(
    answer_source: AnswerSource,
    answers: Mapping[tuple[str, int], Any],
    *,
    catalogue: Any,
    reference: str,
    n_valid: int,
    pool_size: int,
    accuracy_target: float,
    error_budget: float,
    prices: Mapping[str, float],
) -> tuple[Profile, dict[str, dict[str, float]]]:
    """Profile every model on the pool's common prefix; the options' statistics and the cascades' thresholds.

    ``answers``: (model, position) -> answer already paid (the prefix cascade's
    certification rows); those are not asked again. Returns the Profile the
    engine plans on (cascade models' statistics are their cascades') and, for
    the models offered as cascades, model -> {"threshold", "kept_rate"} (the
    share of confirmation rows whose cheap answer stands).
    """
    size, pilot = option_sample_sizes(n_valid, pool_size)
    models = paying_models([s.name for s in catalogue if s.name != reference], prices, reference=reference,
                           n_valid=n_valid, size=size, pilot=pilot, accuracy_target=accuracy_target,
                           error_budget=error_budget)
    if size < 2 or pilot < 1 or not models:
        return _empty_profile(n_valid, reference, accuracy_target, prices), {}
    positions = list(range(size))
    got = {m: _ask(answer_source, answers, m, positions) for m in [reference, *models]}
    ref = got[reference]
    ref_keys = [agreement_key(a.label, a.raw) if a.error is None else None for a in ref]
    ref_ok = np.array([k is not None for k in ref_keys], dtype=bool)
    ok_rows = np.flatnonzero(ref_ok)
    pilot_ok = int(ref_ok[:pilot].sum())
    if pilot_ok < 1 or pilot_ok >= ok_rows.size:
        logger.warning("SMART cascade mix: the reference answered %d of %d sampled rows; too few to plan on",
                       ok_rows.size, size)
        return _empty_profile(n_valid, reference, accuracy_target, prices), {}
    agrees, confidences, unit_costs = {}, {}, {}
    for m in [reference, *models]:
        unit_costs[m] = _unit_cost(got[m], prices.get(m))
    for m in models:
        keys = [agreement_key(a.label, a.raw) if a.error is None else None for a in got[m]]
        agrees[m] = np.array([k is not None and k == r for k, r in zip(keys, ref_keys)], dtype=bool)[ok_rows]
        if getattr(catalogue[m], "top_logprobs", 0):
            confidences[m] = np.array([_confidence(a) for a in got[m]], dtype=float)[ok_rows]
    stats, specs = cascade_option_stats(
        agrees, confidences, unit_costs, reference=reference, accuracy_target=accuracy_target,
        error_budget=error_budget, pilot_size=pilot_ok, offer_plain=False)
    item_costs = np.sum([[float(a.cost or 0.0) for a in got[m]] for m in got], axis=0)
    profile = Profile(
        n_total=n_valid, reference=reference, accuracy_target=accuracy_target,
        stats={reference: ModelStats(reference, 0, 0, 1.0, 1.0, unit_costs[reference], "reference"), **stats},
        positions=np.arange(size, dtype=np.int64), item_costs=item_costs, reference_ok=ref_ok,
        reference_labels=[a.label for a in ref], reference_raws=[a.raw for a in ref],
        reference_errors=[a.error for a in ref], pilot_size=pilot, confirmation_size=size - pilot,
    )
    cascades = {spec.model: {"threshold": spec.threshold,
                             "kept_rate": float(np.mean(confidences[spec.model][pilot_ok:] >= spec.threshold))}
                for spec in specs.values()}
    logger.info("SMART cascade mix: %d sampled rows (pilot %d); cascades %s", size, pilot,
                ", ".join(f"{m} >= {c['threshold']:.4g}" for m, c in sorted(cascades.items())) or "none")
    return profile, cascades


def paying_models(models: Sequence[str], prices: Mapping[str, float], *, reference: str, n_valid: int, size: int,
                  pilot: int, accuracy_target: float, error_budget: float) -> list[str]:
    """The models worth profiling on the common sample, from prices, N and the target alone (before any call).

    A model is kept when, even agreeing with the reference on every sampled
    row (its Clopper-Pearson bound from all of the confirmation rows at the
    whole error budget), the share of the rows left that bound allows would
    save more than its calls on the sample cost. None are kept when their
    calls together cost more than the best of them could save. Decided before
    any row is seen, so the options offered are fixed in advance.
    """
    from smart_spark.engine.bounds import cp_lower

    reference_cost = prices.get(reference)
    rest, confirm = n_valid - size, size - pilot
    if reference_cost is None or not models or rest <= 0 or confirm <= 0:
        return list(models)  # no prices (or nothing left to plan): every model, as the engine does
    bound = float(cp_lower(confirm, confirm, error_budget))
    target = (accuracy_target * n_valid - size) / rest
    share = 1.0 if bound >= target else max(0.0, min(1.0, (1.0 - target) / (1.0 - bound)))
    saving = {m: rest * share * (reference_cost - prices.get(m, reference_cost)) - size * prices.get(m, 0.0)
              for m in models}
    paying = [m for m in models if saving[m] > 0]
    if not paying or size * sum(prices.get(m, 0.0) for m in paying) >= max(saving[m] for m in paying):
        logger.info("SMART cascade mix: profiling %d rows with %s cannot pay on %d rows; the reference plan",
                    size, ", ".join(models), n_valid)
        return []
    return paying


def mix_cascades(plan: Any, profile: Profile, cascades: Mapping[str, Mapping[str, float]],
                 error_budget: float) -> dict | None:
    """What the fitted state keeps (and MLflow logs) for the cascades the plan routes rows to (None: none)."""
    entries = []
    for model, cascade in sorted(cascades.items()):
        share = float(plan.fractions.get(model, 0.0))
        if share <= 0:
            continue
        stats, kept = profile.stats[model], float(cascade["kept_rate"])
        entries.append({
            "model": model, "threshold": float(cascade["threshold"]), "share": share,
            "expected_kept_share": share * kept * plan.n_remaining / max(plan.n_total, 1),
            "profiled_rows": int(stats.n + stats.pilot_n), "error_budget": float(stats.alpha),
            "confirmation_rows": int(stats.n), "confirmation_agreements": int(stats.agreements),
        })
    if not entries:
        return None
    return {"kind": "mix", "error_budget": error_budget, "cascades": entries}


def _ask(answer_source: AnswerSource, answers: Mapping[tuple[str, int], Any], model: str,
         positions: list[int]) -> list[Any]:
    missing = [p for p in positions if (model, p) not in answers]
    fresh = dict(zip(missing, answer_source(model, missing))) if missing else {}
    return [answers[(model, p)] if (model, p) in answers else fresh[p] for p in positions]


def _confidence(answer: Any) -> float:
    value = getattr(answer, "confidence", None)
    if answer.error is not None or value is None or math.isnan(value):
        return -math.inf
    return float(value)


def _unit_cost(answers: Sequence[Any], price: float | None) -> float:
    costs = [float(a.cost or 0.0) for a in answers if a.error is None]
    if costs and sum(costs) > 0:
        return float(np.mean(costs))
    return float(price) if price is not None and math.isfinite(price) else 0.0


def _empty_profile(n_valid: int, reference: str, accuracy_target: float, prices: Mapping[str, float]) -> Profile:
    cost = float(prices.get(reference, 0.0))
    return Profile(n_total=n_valid, reference=reference, accuracy_target=accuracy_target,
                   stats={reference: ModelStats(reference, 0, 0, 1.0, 1.0, cost, "reference")},
                   positions=np.zeros(0, dtype=np.int64), item_costs=np.zeros(0),
                   reference_ok=np.zeros(0, dtype=bool), reason="too few rows to profile the cascade mix")
