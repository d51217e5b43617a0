"""Scheduled reuse: a fitted model applied to new data confirms its plan first.

Same data (the DataFrame it was fitted on, or rows with the same fingerprint):
the plan applies as fitted. New data: a fresh uniform sample of the new rows,
sized by :func:`smart_spark.engine.confirm.confirmation_size`, is answered by
the reference and the plan's models (through the answer store: a rerun pays
nothing again) and :func:`smart_spark.engine.confirm.confirm_plan` checks the
plan still reaches the target at the stated confidence. Then

- confirmed: the plan is applied with the confirmation's numbers (its sampled
  rows keep the reference's answer);
- not confirmed, ``onDrift="refit"`` (default): the new data is profiled and
  planned from scratch (a new fit with the same params);
- not confirmed, ``onDrift="fail"``: :class:`~smart_spark.errors.DriftError`
  naming the models whose agreement dropped.

The decision and the confirmation's statistics go to MLflow when logging is on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from smart_spark.errors import DriftError
from smart_spark.spark import sampling
from smart_spark.spark.fitting import ProfilingCalls, preflight
from smart_spark.spark.run import SmartRun
from smart_spark.spark.session import job_description
from smart_spark.spark.state import DataFingerprint, FittedState, ProfiledAnswer, profile_to_dict

logger = logging.getLogger("smart_spark")


@dataclass
class Reuse:
    """What applying a fitted model to new data decided."""

    decision: str  # "confirmed", "refit"
    state: FittedState
    run: SmartRun
    confirmation: dict[str, Any]


def reuse_on_new_data(model: Any, dataset: DataFrame, keyed: DataFrame, data: DataFingerprint, store: Any) -> Reuse:
    from smart_spark.engine.confirm import PlanEstimates, confirm_plan, confirmation_size

    from smart_spark.spark.cascade_confirm import CascadeAnswers, cascade_rates, confirmed_cascades

    catalogue = model.validate()
    config = model.engineConfig()
    plan = model.state.plan()
    rates = PlanEstimates.from_profile(model.profile)
    if model.state.cascade:  # cascades with their saved thresholds are confirmed like plain models
        rates = PlanEstimates(cascade_rates(model.state, rates.counts))
    wanted = min(confirmation_size(plan, data.n_valid, config, rates), data.n_valid)
    started = time.monotonic()
    spark = dataset.sparkSession
    with job_description(spark, "SMART confirmation: sample"):
        pool = sampling.draw_pool(keyed, model.getTextCol(), data.n_valid, wanted, config.seed)
    preflight(catalogue)
    spec = model.applySpec(catalogue, plan_json="{}")
    with ProfilingCalls(model, catalogue, store) as factory:
        caller = factory(spec)

        def paid_answers(name: str, positions):
            return caller.ask({name: [spec.prompt(pool[p].text) for p in positions]})[name]

        answer_source = CascadeAnswers(paid_answers, plan.reference, model.state.cascades, model.state.chains)
        result = confirm_plan(plan, data.n_valid, len(pool), answer_source, config, rates=rates)
        result = answer_source.paid_result(result)
    stats = _confirmation_stats(result, result.profile.confirmation_size, caller, plan)
    for name, steps in answer_source.routes.items():  # a chain's first threshold stands for it
        stats[f"cascade.threshold.{name}"] = steps[0][1]
        stats[f"cascade.kept_rate.{name}"] = answer_source.kept_rate(name)
    logger.info("SMART confirmation on new data (%d rows): %s", data.n_valid, stats)
    if not result.holds:
        failing = ", ".join(result.failing_models) or ", ".join(sorted(plan.fractions))
        message = (f"the fitted plan does not hold on the new data: agreement of {failing} dropped below what the "
                   f"plan needs (bound {result.agreement_bound:.4f} < target {plan.accuracy_target:g} at confidence "
                   f"{plan.confidence:g}, {len(pool)} rows sampled)")
        if model.getOnDrift() == "fail":
            _log(model, stats | {"decision": "fail"})
            raise DriftError(message + "; onDrift='fail'")
        logger.warning("SMART: %s; refitting on the new data (onDrift='refit')", message)
        _log(model, stats | {"decision": "refit"})
        refit = _refit(model, dataset)
        refit.run.fit_paid += caller.spent
        return Reuse("refit", refit.state, refit.run, stats | {"decision": "refit"})
    _log(model, stats | {"decision": "confirmed"})
    profiled = {pool[item.position].key: ProfiledAnswer(item.label, item.raw, item.error)
                for item in result.profile.items}
    state = FittedState(
        plan_json=result.plan.to_json(), profile=profile_to_dict(result.profile), profiled=profiled,
        fitted_with=model.state.fitted_with, data=data, pool_size=len(pool), n_rows=data.n_rows,
        n_valid=data.n_valid, profiling_seconds=time.monotonic() - started,
        cascade=confirmed_cascades(model.state, result.plan, answer_source, len(profiled),
                                   {m: s.alpha for m, s in result.profile.stats.items()}),
    )
    run = SmartRun(
        plan=result.plan, profile=result.profile, n_rows=data.n_rows, n_valid=data.n_valid, pool_size=len(pool),
        profiling_seconds=state.profiling_seconds, output_col=model.getOutputCol(), reference=plan.reference,
        fit_paid=caller.spent, fit_reused=caller.reused,
        profiled_keys=frozenset(k for k, a in profiled.items() if a.error is None), consumed_keys=frozenset(profiled),
        cascade=state.cascade,
    )
    return Reuse("confirmed", state, run, stats | {"decision": "confirmed"})


def _confirmation_stats(result, size: int, caller, plan) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "holds": result.holds,
        "engine_decision": result.decision,
        "sample_size": size,
        "agreement_bound": result.agreement_bound,
        "remaining_target": result.plan.remaining_target,
        "paid_usd": caller.spent,
        "reused_answers": caller.reused,
        "failing_models": list(result.failing_models),
    }
    for name, s in result.profile.stats.items():
        if name != plan.reference:
            stats[f"agreement.{name}"] = s.agreement_rate
            stats[f"lower_bound.{name}"] = s.lower
            stats[f"fitted_bound.{name}"] = plan.bounds.get(name, float("nan"))
    return stats


def _refit(model: Any, dataset: DataFrame):
    from smart_spark.spark.classifier import SmartLLMClassifier

    estimator = SmartLLMClassifier()
    model._copyValues(estimator)
    refitted = estimator.fit(dataset)
    return refitted  # has .state and .run


def _log(model: Any, stats: dict[str, Any]) -> None:
    from smart_spark.spark.classifier import SmartLLMClassifier

    probe = SmartLLMClassifier()
    model._copyValues(probe)
    if not probe._mlflow_enabled():
        return
    from smart_spark.tracking import log_confirmation

    log_confirmation(stats, experiment=model.getMlflowExperiment(), tracking_uri=probe._checked_tracking_uri(),
                     run_name=model.getMlflowRunName(), fitted_run_id=model.run.mlflow_run_id)
