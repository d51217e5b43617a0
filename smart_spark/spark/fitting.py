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

from smart_spark.catalogue import ModelCatalogue
from smart_spark.errors import ConfigurationError, ProfilingError
from smart_spark.spark import sampling
from smart_spark.spark.apply import SPEND_CAP, ApplySpec
from smart_spark.spark.cascade_fit import cascade_candidate
from smart_spark.spark.cascade_fit_procedure import fit_with_cascades
from smart_spark.spark.cascade_mix import chain_candidates, offers_cascade_mix
from smart_spark.spark.run import SmartRun
from smart_spark.spark.session import job_description
from smart_spark.spark.state import DataFingerprint, FittedState, profile_to_dict
from smart_spark.spark.warmup import start_warmup

logger = logging.getLogger("smart_spark")


@dataclass
class Fit:
    state: FittedState
    run: SmartRun


def data_fingerprint(keyed: DataFrame, oversize) -> tuple[DataFingerprint, int]:
    """The rows' fingerprint and how many rows have an oversized prompt (one Spark job)."""
    row = keyed.agg(*sampling.fingerprint_columns(oversize)).first()
    return DataFingerprint(int(row["n"]), int(row["valid"]), int(row["hash"])), int(row["oversize"] or 0)


def check_oversize(params: Any, oversize: int, n_rows: int) -> None:
    """Warn with counts; with ``oversizePolicy="fail"`` raise before anything is paid."""
    if not oversize:
        return
    policy, limit = params.getOversizePolicy(), params.getMaxPromptChars()
    if policy == "fail":
        raise ConfigurationError(
            f"{oversize} of {n_rows} rows have a prompt longer than maxPromptChars={limit} "
            f"(oversizePolicy='fail'); nothing was paid")
    action = "their text is truncated to fit" if policy == "truncate" else "they get an error and no call"
    logger.warning("SMART: %d of %d rows have a prompt longer than maxPromptChars=%d; %s (oversizePolicy=%r)",
                   oversize, n_rows, limit, action, policy)


class ReferenceWatch:
    """Raises ProfilingError as soon as profiling shows the reference cannot answer.

    Fails fast when the reference's first 10 calls all failed, and after
    profiling when its failure share exceeds ``maxErrorRate`` (the apply phase
    would exceed it too). Answers paid so far stay in the answer store.
    """

    EARLY = 10

    def __init__(self, reference: str, max_error_rate: float) -> None:
        self.reference, self.max_error_rate = reference, max_error_rate
        self.ok = self.failed = 0
        self.first: str | None = None

    def add(self, results) -> None:
        for r in results:
            if r.error is None:
                self.ok += 1
            elif SPEND_CAP in r.error:  # the user's cap, not the reference's failure
                continue
            else:
                self.failed += 1
                self.first = self.first or r.error
        if self.ok == 0 and self.failed >= self.EARLY:
            self.fail()

    def check(self) -> None:
        asked = self.ok + self.failed
        if asked and (self.ok == 0 or self.failed > self.max_error_rate * asked):
            self.fail()

    def fail(self) -> None:
        raise ProfilingError(
            f"reference model {self.reference}: {self.failed} of {self.ok + self.failed} profiling calls failed "
            f"(maxErrorRate {self.max_error_rate:g}); first error: {self.first}; nothing was applied")


def fit_state(params: Any, dataset: DataFrame, *, caller_factory, catalogue) -> Fit:
    """Profile ``dataset`` and plan; ``caller_factory(spec)`` returns the PayingCaller to use."""
    config = params.engineConfig()
    reference = params.getReferenceModel()
    text_col = params.getTextCol()
    spark = dataset.sparkSession
    started = time.monotonic()

    keyed = params.keyed(dataset)
    with job_description(spark, "SMART profiling: count rows"):
        data, oversize = data_fingerprint(keyed, params.oversizeColumn())
    check_oversize(params, oversize, data.n_rows)
    wanted = min(data.n_valid, params.getMaxProfile())
    if config.method == "reference" or len(catalogue) == 1:
        wanted = 0  # nothing to learn: the reference answers every row in the apply phase
    with job_description(spark, "SMART profiling: sample"):
        pool = sampling.draw_pool(keyed, text_col, data.n_valid, wanted, config.seed)
    start_warmup(spark, data.n_valid)  # the executors idle while the driver profiles
    logger.info("SMART profiling: %d rows (%d with text), random sample of %d drawn",
                data.n_rows, data.n_valid, len(pool))

    spec = params.applySpec(catalogue, plan_json="{}")
    caller = caller_factory(spec)
    watch = ReferenceWatch(reference, params.getMaxErrorRate())
    candidate = cascade_candidate(catalogue, reference, config.method) if pool else None
    prices = row_prices(catalogue, [spec.prompt(row.text) for row in pool], spec.labels, spec.system_prompt)
    history, answers, answer_source, progress = _profiling_source(caller, spec, watch, pool)
    outcome = fit_with_cascades(
        answer_source, answers, catalogue=catalogue, reference=reference, candidate=candidate, pool=pool,
        n_valid=data.n_valid, config=config, prices=prices,
        offer_mix=candidate is not None and offers_cascade_mix(catalogue, reference, config.method),
        chain_models=chain_candidates(catalogue, reference, candidate), row_keys=_pool_keys(pool),
        progress=progress, after_profiling=watch.check)
    profile, plan, profiled, cascade = outcome.result.profile, outcome.plan, outcome.profiled, outcome.cascade
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
        cascade=cascade,
    )
    run = SmartRun(
        plan=plan, profile=profile, n_rows=data.n_rows, n_valid=data.n_valid, pool_size=len(pool),
        profiling_seconds=state.profiling_seconds, progress=history, output_col=params.getOutputCol(),
        reference=reference, fit_paid=caller.spent, fit_reused=caller.reused,
        profiled_keys=frozenset(k for k, a in profiled.items() if a.error is None),
        consumed_keys=frozenset(profiled), oversize_rows=oversize, cascade=cascade,
        cascade_profiling_spend=max(0.0, sum(float(a.cost or 0.0) for a in answers.values()) - profile.spent)
        if candidate is not None else 0.0,
    )
    return Fit(state, run)


def row_prices(catalogue: ModelCatalogue, prompts, labels, system_prompt: str | None = None) -> dict[str, float]:
    """Expected USD per row per model, known before any call: the engine's ``prices=``.

    Lets the engine decide before profiling whether profiling can pay at all
    (and which models are worth piloting) from N, the target and the prices.
    Prompt tokens are the spend cap's estimate (``llm.spend.estimated_prompt_tokens``,
    the same rule for every model) averaged over the sampled rows' rendered
    prompts; the completion is the longest label's tokens plus one. Empty when
    no sampled row has a prompt (nothing to estimate from).
    """
    from smart_spark.llm.spend import CHARS_PER_TOKEN, estimated_prompt_tokens

    sizes = [estimated_prompt_tokens(p, system_prompt) for p in prompts if p is not None]
    if not sizes:
        return {}
    prompt_tokens = sum(sizes) / len(sizes)
    completion_tokens = -(-max(len(label) for label in labels) // CHARS_PER_TOKEN) + 1
    return {spec.name: spec.cost(prompt_tokens, completion_tokens) for spec in catalogue}


def _pool_keys(pool):
    """``row_keys`` for the engine: the routing key of each pool position (the split hash of a blend reads it)."""
    return lambda positions: [pool[p].key for p in positions]


def _profiling_source(caller, spec, watch, pool):
    """(progress history, answers paid, the answer source paying through ``caller``, the progress callback).

    The answer source records each answer by (model, pool position) and feeds
    the reference's to ``watch``; the callback logs each profiling step.
    """
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
        prompts = [spec.prompt(pool[p].text) for p in positions]
        results = caller.ask({model: prompts})[model]
        for position, r in zip(positions, results):
            answers[(model, position)] = r
        if model == watch.reference:
            watch.add(results)
        return results

    return history, answers, answer_source, progress


def preflight(catalogue: ModelCatalogue) -> None:
    """Every model reachable, known and keyed before the first paid call (PreflightError otherwise)."""
    try:
        from smart_spark.llm.preflight import check_models
    except ImportError:  # the front door's preflight not merged yet
        logger.debug("smart_spark.llm.preflight not available; skipping the model preflight")
        return
    check_models(catalogue, catalogue.names)


class ProfilingCalls:
    """The driver's LLM client for profiling, closed after the fit; builds the PayingCaller."""

    def __init__(self, params: Any, catalogue: ModelCatalogue, store: Any) -> None:
        self.params, self.catalogue, self.store = params, catalogue, store
        self.client = None

    def __enter__(self):
        from smart_spark.llm.client import LLMClient

        p = self.params
        self.client = LLMClient(
            self.catalogue, list(p.getLabels()), max_tokens=p.getMaxTokens(), timeout=p.getTimeout(),
            max_retries=p.getMaxRetries(), concurrency=p.getConcurrency(), system_prompt=p.getSystemPrompt(),
        )
        return self.make

    def make(self, spec):
        from smart_spark.spark.calls import PayingCaller

        budget = None
        cap = self.params.getSpendCap()
        if cap is not None:
            from smart_spark.llm.spend import SpendBudget

            budget = SpendBudget(cap, self.catalogue, self.params.getMaxTokens(), self.params.getSystemPrompt())
        return PayingCaller(spec, self.client, budget=budget, store=self.store)

    def __exit__(self, *exc_info: object) -> None:
        if self.client is not None:
            self.client.close()
