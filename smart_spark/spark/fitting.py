"""Driver side of ``fit``: count, sample, profile, plan -> a :class:`FittedState`.

Spark jobs are labelled "SMART profiling: ..." in the UI; progress lines go to
logger ``smart_spark``. Every profiling answer goes through the same
:class:`~smart_spark.spark.calls.PayingCaller` as the apply phase, so it is
read from the answer store when an earlier run paid for it and recorded there
as soon as it is paid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from smart_spark.spark import sampling
from smart_spark.spark.apply import ApplySpec, render_prompt
from smart_spark.spark.run import SmartRun
from smart_spark.spark.session import job_description
from smart_spark.spark.state import DataFingerprint, FittedState, ProfiledAnswer, profile_to_dict

logger = logging.getLogger("smart_spark")


@dataclass
class Fit:
    state: FittedState
    run: SmartRun


def data_fingerprint(keyed: DataFrame) -> DataFingerprint:
    row = keyed.agg(*sampling.fingerprint_columns()).first()
    return DataFingerprint(int(row["n"]), int(row["valid"]), int(row["hash"]))


def fit_state(params: Any, dataset: DataFrame, *, caller_factory, catalogue) -> Fit:
    """Profile ``dataset`` and plan; ``caller_factory(spec)`` returns the PayingCaller to use."""
    config = params.engineConfig()
    labels = list(params.getLabels())
    reference = params.getReferenceModel()
    text_col, id_col = params.getTextCol(), params.getIdCol()
    spark = dataset.sparkSession
    started = time.monotonic()

    keyed = sampling.with_keys(dataset, text_col, id_col)
    with job_description(spark, "SMART profiling: count rows"):
        data = data_fingerprint(keyed)
    wanted = min(data.n_valid, params.getMaxProfile())
    if config.method == "reference" or len(catalogue) == 1:
        wanted = 0  # nothing to learn: the reference answers every row in the apply phase
    with job_description(spark, "SMART profiling: sample"):
        pool = sampling.draw_pool(keyed, text_col, data.n_valid, wanted, config.seed)
    logger.info("SMART profiling: %d rows (%d with text), random sample of %d drawn",
                data.n_rows, data.n_valid, len(pool))

    caller = caller_factory(params.applySpec(catalogue, plan_json="{}"))
    result, history, answers = _profile_and_plan(caller, config, catalogue.names, labels, reference,
                                                 params.getPromptTemplate(), data.n_valid, pool)
    plan, profile = result.plan, result.profile
    profiled = _profiled_answers(profile, pool, answers, reference)
    state = FittedState(
        plan_json=plan.to_json(),
        profile=profile_to_dict(profile),
        profiled=profiled,
        fitted_with=params.fittedWith(),
        data=data,
        pool_size=len(pool),
        n_rows=data.n_rows,
        n_valid=data.n_valid,
        profiling_seconds=time.monotonic() - started,
    )
    run = SmartRun(
        plan=plan, profile=profile, n_rows=data.n_rows, n_valid=data.n_valid, pool_size=len(pool),
        profiling_seconds=state.profiling_seconds, progress=history, output_col=params.getOutputCol(),
        reference=reference, fit_paid=caller.spent, fit_reused=caller.reused,
        profiled_keys=frozenset(k for k, a in profiled.items() if a.error is None),
        consumed_keys=frozenset(profiled),
    )
    return Fit(state, run)


def _profiled_answers(profile, pool, answers, reference) -> dict[str, ProfiledAnswer]:
    profiled: dict[str, ProfiledAnswer] = {}
    for item in profile.items:
        others = {}
        if item.error is not None:  # the reference failed: keep the other models' answers for the apply phase
            others = {model: (a.label, a.raw) for (model, position), a in answers.items()
                      if position == item.position and a.error is None and model != reference}
        profiled[pool[item.position].key] = ProfiledAnswer(item.label, item.raw, item.error, others)
    return profiled


def _profile_and_plan(caller, config, models, labels, reference, template, n_valid, pool):
    from smart_spark.engine import SmartEngine

    history: list[dict] = []
    answers: dict[tuple[str, int], Any] = {}

    def progress(event: dict) -> None:
        history.append({
            "phase": event.get("phase"),
            "items_done": int(event.get("items_done", 0)),
            "spent": float(event["spent"]),
            "bounds": {m: tuple(map(float, b)) for m, b in (event.get("bounds") or {}).items()},
        })
        last = history[-1]
        logger.info(
            "SMART profiling progress: %s, %d/%d sampled items done, spent $%.4f; bounds %s",
            last["phase"], last["items_done"], len(pool), last["spent"],
            ", ".join(f"{m} [{lo:.3f}, {hi:.3f}]" for m, (lo, hi) in sorted(last["bounds"].items())),
        )

    def answer_source(model: str, positions):
        prompts = [render_prompt(template, pool[p].text, labels) for p in positions]
        results = caller.ask({model: prompts})[model]
        for position, r in zip(positions, results):
            answers[(model, position)] = r
        return results

    engine = SmartEngine(config, models, reference)
    result = engine.run(n_valid, len(pool), answer_source, progress=progress)
    return result, history, answers


__all__ = ["ApplySpec", "Fit", "data_fingerprint", "fit_state"]
