"""The fit's whole cascade procedure, without Spark: certify one cascade, run the engine with cascade options, plan.

One function that the operator's fit (``spark/fitting.py``) and the guarantee
simulations (``jobs/sim_cascade_fit.py``, ``jobs/sim_chain_guarantee.py``) all
call, so that what the simulations prove is the code the fit runs:

1. the error budget is split in advance (``split_budget``): one share certifies
   one cascade for the cheapest model with log-probabilities on the pool's
   prefixes (``certify_on_pool``);
2. when the certificate shows the plain mix cannot win (``plain_cannot_win``),
   nothing more is profiled and the plain side is the reference plan;
3. otherwise the engine profiles the rest of the pool at the other share, with
   the cascade (and chains of cascades) offered beside the plain models
   (``engine_with_cascade``), or the plain engine when no cascade option is offered;
4. the cheaper of the certified cascade's plan and the engine's plan is kept
   (``plan_with_cascade``), and the cascades the engine's plan uses are described
   for the apply phase (``mix_cascades``).

It lives beside the Spark-free ``cascade_fit`` and ``cascade_mix`` modules it
drives, so the engine package keeps depending on nothing of the operator's.

The answer source pays the calls (the fit's LLM caller, a simulation's replay)
and records each answer in ``answers``, keyed by (model, pool position).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from smart_spark.spark.cascade_fit import (
    CascadeFit,
    certify_on_pool,
    plain_cannot_win,
    plan_with_cascade,
    split_budget,
)
from smart_spark.spark.cascade_mix import engine_with_cascade, mix_cascades
from smart_spark.spark.state import ProfiledAnswer

AnswerSource = Callable[[str, Sequence[int]], Sequence[Any]]


@dataclass(frozen=True)
class CascadeFitOutcome:
    """What the procedure decided and what it paid for."""

    plan: Any  # the plan to apply (the certified cascade's or the engine's)
    profiled: dict[str, ProfiledAnswer]  # routing key -> the reference's answer on every profiled row
    cascade: dict[str, Any] | None  # the cascade(s) the plan uses, as the fitted state stores them
    result: Any  # the engine's SmartResult (its profile: the rows it profiled and what it spent)
    fit: CascadeFit | None  # the certified cascade (None: no model with log-probabilities, or no pool)


def fit_with_cascades(
    answer_source: AnswerSource,
    answers: dict[tuple[str, int], Any],
    *,
    catalogue: Any,
    reference: str,
    candidate: str | None,
    pool: Sequence[Any],
    n_valid: int,
    config: Any,
    prices: Mapping[str, float],
    offer_mix: bool,
    chain_models: Sequence[str] = (),
    solver: str = "cbc",
    row_keys: Callable[[Sequence[int]], list[str]] | None = None,
    progress: Any = None,
    after_profiling: Callable[[], None] | None = None,
) -> CascadeFitOutcome:
    """Run the procedure of the module doc on ``pool`` (objects with ``key``) of ``n_valid`` rows.

    ``candidate``: the model to certify a cascade for (None: the plain engine
    alone, on the whole budget). ``offer_mix``: offer the engine the cascade
    beside the plain models (else the plain engine runs beside the certificate).
    ``row_keys`` / ``progress`` go to the engine; ``after_profiling`` runs once
    every call is paid, before planning (the fit's reference error-rate check).
    """
    from smart_spark.engine import SmartEngine

    plain_config, cascade_budget = split_budget(config, candidate)
    fit, skip_plain = None, False
    if candidate is not None:  # the cascade first: it tells whether the plain mix is worth profiling
        fit = certify_on_pool(
            answer_source, model=candidate, reference=reference, catalogue=catalogue, unit_costs=dict(prices),
            n_valid=n_valid, pool_size=len(pool), accuracy_target=config.accuracy_target,
            error_budget=cascade_budget)
        skip_plain = plain_cannot_win(fit, len(catalogue), n_valid, config.accuracy_target)
    if not pool or skip_plain:  # nothing to sample or learn, or the mix cannot win: the reference plan
        plain_config = dataclasses.replace(plain_config, method="reference")
    mix: dict[str, dict[str, Any]] | None = None
    if offer_mix and candidate is not None and pool and not skip_plain:
        result, mix = engine_with_cascade(
            answer_source, answers, cascade_model=candidate, first_rows=fit.result.sampled.size if fit else 0,
            models=catalogue.names, reference=reference, n_valid=n_valid, pool_size=len(pool),
            config=plain_config, prices=prices, solver=solver, row_keys=row_keys, progress=progress,
            chain_models=chain_models)
    else:
        engine = SmartEngine(plain_config, catalogue.names, reference, solver=solver, prices=prices,
                             row_keys=row_keys)
        result = engine.run(n_valid, len(pool), answer_source, progress=progress)
    if after_profiling is not None:
        after_profiling()
    plan, profiled, cascade = plan_with_cascade(
        fit, answers, pool, result.plan, profiled_answers(result.profile, pool, answers, reference), config)
    if cascade is None and mix:  # the engine's plan with the cascade among its options was chosen
        cascade = mix_cascades(plan, mix, plain_config.error_budget, result.profile)
    return CascadeFitOutcome(plan=plan, profiled=profiled, cascade=cascade, result=result, fit=fit)


def profiled_answers(profile: Any, pool: Sequence[Any], answers: Mapping[tuple[str, int], Any],
                     reference: str) -> dict[str, ProfiledAnswer]:
    """Routing key -> the reference's answer on each row the engine profiled.

    Where the reference failed, the other models' answers on that row are kept
    for the apply phase (it answers the row with one of them rather than paying again).
    """
    profiled: dict[str, ProfiledAnswer] = {}
    for item in profile.items:
        others = {}
        if item.error is not None:
            others = {model: (a.label, a.raw) for (model, position), a in answers.items()
                      if position == item.position and a.error is None and model != reference}
        profiled[pool[item.position].key] = ProfiledAnswer(item.label, item.raw, item.error, others)
    return profiled
