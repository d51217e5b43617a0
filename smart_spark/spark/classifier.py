"""``SmartLLMClassifier``: SMART as a Spark ML Transformer.

``df.transform(clf)`` (or ``clf.transform(df)``, or a Pipeline stage):

1. validates the params and the input schema (errors name the param/column);
2. counts the rows, draws a seeded uniform sample across all partitions to the
   driver and profiles it with the engine and the LLM client (Spark job
   descriptions "SMART profiling: ..."; progress lines on logger ``smart_spark``);
3. plans, logs to MLflow (params, per-model metrics, plan JSON, profile CSV,
   chart) when enabled, and returns the input with four columns added, computed
   lazily by a pandas UDF named ``SMART_apply``:

   ``<outputCol>`` label or null; ``<outputCol>_model`` model that answered;
   ``<outputCol>_cost`` USD spent on the row (profiling included: the run's spend
   is the column's sum); ``<outputCol>_error`` why the prediction is null.

The apply phase calls the LLMs every time the output DataFrame is evaluated:
cache it, write it, or use :meth:`summarize` once. Routing is deterministic
(key hash), so re-evaluations and task retries route rows identically.

Row outcomes are documented in :mod:`smart_spark.spark.apply`; rows with null or
blank text are kept (prediction null, cost 0, error ``"empty text"``) and are not
counted in the N the accuracy guarantee is about.

Spend cap (``spendCap``): profiling may spend up to the cap; what is left is
split evenly over the unprofiled rows, and each Arrow batch may spend its rows'
share (pooled within the batch, escalations included). A call is only sent when
its worst-case cost (prompt ~chars/3 + 8 tokens, ``maxTokens`` completion
tokens) still fits (:class:`~smart_spark.spark.apply.SpendBudget`), so the cap is
hard up to that token estimate; rows left over get null and an explicit
"spend cap reached" error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from smart_spark.catalogue import ModelCatalogue
from smart_spark.spark import sampling
from smart_spark.spark.apply import (
    RESULT_DDL,
    SPEND_CAP,
    ApplySpec,
    ProfiledAnswer,
    SpendBudget,
    process_batch,
    render_prompt,
)
from smart_spark.spark.params import SmartParams, catalogue_yaml
from smart_spark.spark.session import is_connect, job_description

logger = logging.getLogger("smart_spark")

SUFFIXES = ("_model", "_cost", "_error")


@dataclass
class SmartRun:
    """What the last transform measured and decided (driver side, plain data)."""

    plan: Any
    profile: Any
    n_rows: int
    n_valid: int
    pool_size: int
    profiling_seconds: float
    progress: list[dict] = field(default_factory=list)
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    output_col: str = "prediction"
    reference: str = ""
    reference_unit_cost: float = 0.0
    #: Row keys whose reference answer came from profiling (they are never called again).
    profiled_keys: frozenset = frozenset()
    #: Row keys profiling called models for (profiled ones, plus those whose reference call failed).
    consumed_keys: frozenset = frozenset()

    @property
    def reference_only_cost(self) -> float:
        """Estimated USD for the reference on every valid row."""
        return self.reference_unit_cost * self.n_valid

    @property
    def expected_cost(self) -> float:
        """Profiling spend plus the plan's expected spend on the remaining rows."""
        return float(self.profile.spent) + float(self.plan.expected_cost)

    def summary(self) -> str:
        ref = self.reference_only_cost
        lines = [
            f"SMART run: {self.n_rows} rows ({self.n_valid} with text), sample of {self.pool_size}, "
            f"profiling {self.profiling_seconds:.1f}s",
            self.profile.summary(),
            self.plan.summary(),
            f"  expected total ${self.expected_cost:.4f} (profiling ${self.profile.spent:.4f}) "
            f"vs reference on all rows ${ref:.4f}"
            + (f" -> {ref / self.expected_cost:.1f}x cheaper" if self.expected_cost > 0 else ""),
        ]
        if self.mlflow_run_id:
            lines.append(f"  MLflow run {self.mlflow_run_id}")
        return "\n".join(lines)


class SmartLLMClassifier(Transformer, SmartParams, DefaultParamsReadable, DefaultParamsWritable):
    """Classify a text column with the cheapest mix of LLMs that meets an accuracy target.

    >>> clf = SmartLLMClassifier(textCol="review", labels=["positive", "negative"],
    ...                          models="conf/models.yaml", referenceModel="gpt-4o",
    ...                          accuracyTarget=0.9)
    >>> out = df.transform(clf).cache()
    >>> print(clf.lastSummary())

    Accuracy means agreement with ``referenceModel`` (after label normalisation),
    guaranteed over the rows with text with probability ``confidence``.
    No API key is ever stored: the catalogue holds only env var names, and
    every process that calls an LLM reads the key from its own environment.
    """

    @keyword_only
    def __init__(
        self,
        *,
        textCol: str = "text",
        idCol: str | None = None,
        outputCol: str = "prediction",
        labels: list[str] | None = None,
        promptTemplate: str | None = None,
        models: Any = None,
        referenceModel: str | None = None,
        accuracyTarget: float = 0.9,
        confidence: float = 0.95,
        method: str = "mix",
        seed: int = 0,
        pilotSize: int | None = None,
        maxProfile: int = 5000,
        profileBatchSize: int = 64,
        batchSize: int = 512,
        concurrency: int | None = None,
        maxTokens: int = 16,
        timeout: float = 30.0,
        maxRetries: int = 6,
        spendCap: float | None = None,
        systemPrompt: str | None = None,
        mlflowLogging: str = "auto",
        mlflowExperiment: str = "smart_spark",
        mlflowTrackingUri: str | None = None,
        mlflowRunName: str | None = None,
    ) -> None:
        super().__init__()
        self._last_run: SmartRun | None = None
        kwargs = self._input_kwargs
        self._set(**{k: v for k, v in kwargs.items() if v is not None})

    @keyword_only
    def setParams(self, **kwargs: Any) -> "SmartLLMClassifier":
        """Set several params at once (keyword arguments only)."""
        return self._set(**self._input_kwargs)

    def __call__(self, df: DataFrame) -> DataFrame:
        """``df.transform(clf)`` support."""
        return self.transform(df)

    # ----------------------------------------------------------- last run
    @property
    def lastPlan(self):
        """The :class:`~smart_spark.engine.Plan` of the last transform (None before)."""
        return self._last_run.plan if self._last_run else None

    @property
    def lastProfile(self):
        """The :class:`~smart_spark.engine.Profile` of the last transform (None before)."""
        return self._last_run.profile if self._last_run else None

    @property
    def lastRun(self) -> SmartRun | None:
        return self._last_run

    def getLastPlan(self):
        return self.lastPlan

    def getLastProfile(self):
        return self.lastProfile

    def lastSummary(self) -> str:
        """Readable text summary of the last transform's profile and plan."""
        if self._last_run is None:
            return "SmartLLMClassifier: not run yet"
        return self._last_run.summary()

    def copy(self, extra=None):
        that = super().copy(extra)
        that._last_run = None
        return that

    # ---------------------------------------------------------- validation
    def catalogue(self) -> ModelCatalogue:
        import yaml

        if not self.isDefined(self.models) or self.getModels() is None:
            raise ValueError("models must be set (a ModelCatalogue, a list of entries or a YAML path)")
        return ModelCatalogue.from_dicts(yaml.safe_load(self.getModels())["models"])

    def validate(self, schema=None) -> ModelCatalogue:
        """Check params (and the input schema when given); returns the catalogue."""
        if not self.isDefined(self.labels) or self.getOrDefault(self.labels) is None:
            raise ValueError("labels must be set to a non-empty list of labels")
        catalogue = self.catalogue()
        if not self.isDefined(self.referenceModel) or self.getReferenceModel() is None:
            raise ValueError(f"referenceModel must be set to one of the catalogue's models {catalogue.names}")
        reference = self.getReferenceModel()
        if reference not in catalogue:
            raise ValueError(f"referenceModel {reference!r} is not in the catalogue (models: {catalogue.names})")
        output = self.getOutputCol()
        if schema is not None:
            names = schema.names
            text_col = self.getTextCol()
            if text_col not in names:
                raise ValueError(f"textCol {text_col!r} is not a column of the input (columns: {names})")
            if not isinstance(schema[text_col].dataType, StringType):
                raise TypeError(
                    f"textCol {text_col!r} must be a string column, got {schema[text_col].dataType.simpleString()}"
                )
            id_col = self.getIdCol()
            if id_col and id_col not in names:
                raise ValueError(f"idCol {id_col!r} is not a column of the input (columns: {names})")
            for name in [output, *(output + s for s in SUFFIXES)]:
                if name in names:
                    raise ValueError(f"outputCol: column {name!r} already exists in the input")
            for internal in (sampling.KEY_COL, sampling.ROW_ID_COL, sampling.RESULT_COL):
                if internal in names:
                    raise ValueError(f"the input must not have a column named {internal!r} (used internally)")
        return catalogue

    def _config(self):
        from smart_spark.engine import SmartConfig

        return SmartConfig(
            accuracy_target=self.getAccuracyTarget(),
            confidence=self.getConfidence(),
            method=self.getMethod(),
            seed=self.getSeed(),
            pilot_size=self.getPilotSize(),
            max_profile=self.getMaxProfile(),
            batch_size=self.getProfileBatchSize(),
        )

    # ----------------------------------------------------------- transform
    def _transform(self, dataset: DataFrame) -> DataFrame:
        catalogue = self.validate(dataset.schema)
        config = self._config()
        labels = list(self.getLabels())
        reference = self.getReferenceModel()
        text_col, id_col, output = self.getTextCol(), self.getIdCol(), self.getOutputCol()
        template = self.getPromptTemplate()
        spark = dataset.sparkSession
        started = time.monotonic()

        keyed = sampling.with_keys(dataset, text_col, id_col)
        with job_description(spark, "SMART profiling: count rows"):
            counts = keyed.agg(F.count(F.lit(1)).alias("n"), F.count(sampling.KEY_COL).alias("valid")).first()
        n_rows, n_valid = int(counts["n"]), int(counts["valid"])
        wanted = min(n_valid, self.getMaxProfile())
        if config.method == "reference" or len(catalogue) == 1:
            wanted = 0  # nothing to learn: the reference answers every row in the apply phase
        with job_description(spark, "SMART profiling: sample"):
            pool = sampling.draw_pool(keyed, text_col, n_valid, wanted, config.seed)
        logger.info(
            "SMART profiling: %d rows (%d with text), random sample of %d drawn", n_rows, n_valid, len(pool)
        )

        result, history, answers = self._profile_and_plan(catalogue, config, labels, reference, template, n_valid, pool)
        plan, profile = result.plan, result.profile
        profiled: dict[str, ProfiledAnswer] = {}
        for item in profile.items:
            row = pool[item.position]
            others = {}
            if item.error is not None:
                others = {
                    model: (r.label, r.raw)
                    for (model, position), r in answers.items()
                    if position == item.position and r.error is None and model != reference
                }
            profiled[row.key] = ProfiledAnswer(item.label, item.raw, float(item.cost), row.row_id, item.error, others)

        cap = self.getSpendCap()
        row_budget = None
        if cap is not None:
            left = max(0.0, cap - float(profile.spent))
            row_budget = left / max(1, plan.n_remaining)
        spec = ApplySpec(
            plan_json=plan.to_json(),
            catalogue_yaml=catalogue_yaml(catalogue),
            labels=tuple(labels),
            prompt_template=template,
            profiled=profiled,
            system_prompt=self.getSystemPrompt(),
            max_tokens=self.getMaxTokens(),
            timeout=self.getTimeout(),
            max_retries=self.getMaxRetries(),
            concurrency=self.getConcurrency(),
            chunk_size=self.getBatchSize(),
            row_budget=row_budget,
        )
        ref_stats = profile.stats.get(reference)
        ref_unit = plan.unit_costs.get(reference, getattr(ref_stats, "unit_cost", 0.0)) or 0.0
        self._last_run = SmartRun(
            plan=plan,
            profile=profile,
            n_rows=n_rows,
            n_valid=n_valid,
            pool_size=len(pool),
            profiling_seconds=time.monotonic() - started,
            progress=history,
            output_col=output,
            reference=reference,
            reference_unit_cost=float(ref_unit) if ref_unit == ref_unit else 0.0,
            profiled_keys=frozenset(k for k, a in profiled.items() if a.error is None),
            consumed_keys=frozenset(profiled),
        )
        logger.info("%s", self._last_run.summary())
        self._log_mlflow(catalogue)

        apply_udf = F.pandas_udf(_make_apply(spec), RESULT_DDL).asNondeterministic()
        result_col = sampling.RESULT_COL
        applied = keyed.withColumn(
            result_col,
            apply_udf(F.col(sampling.KEY_COL), F.col(sampling.quote(text_col)), F.col(sampling.ROW_ID_COL)),
        )
        res = F.col(result_col)
        return applied.select(
            *[F.col(sampling.quote(c)) for c in dataset.columns],
            res["prediction"].alias(output),
            res["model"].alias(output + "_model"),
            res["cost"].alias(output + "_cost"),
            res["error"].alias(output + "_error"),
        )

    def _profile_and_plan(self, catalogue, config, labels, reference, template, n_valid, pool):
        from smart_spark.engine import SmartEngine
        from smart_spark.llm.client import CallResult, LLMClient

        history: list[dict] = []
        answers: dict[tuple[str, int], Any] = {}

        def progress(event: dict) -> None:
            history.append(
                {
                    "phase": event.get("phase"),
                    "items_done": int(event.get("items_done", 0)),
                    "spent": float(event["spent"]),
                    "bounds": {m: tuple(map(float, b)) for m, b in (event.get("bounds") or {}).items()},
                }
            )
            logger.info(
                "SMART profiling progress: %s, %d/%d sampled items done, spent $%.4f; bounds %s",
                event.get("phase"),
                history[-1]["items_done"],
                len(pool),
                history[-1]["spent"],
                ", ".join(f"{m} [{lo:.3f}, {hi:.3f}]" for m, (lo, hi) in sorted(history[-1]["bounds"].items())),
            )

        engine = SmartEngine(config, catalogue.names, reference)
        with LLMClient(
            catalogue,
            labels,
            max_tokens=self.getMaxTokens(),
            timeout=self.getTimeout(),
            max_retries=self.getMaxRetries(),
            spend_cap=self.getSpendCap(),
            concurrency=self.getConcurrency(),
            system_prompt=self.getSystemPrompt(),
        ) as client:

            budget = None
            if self.getSpendCap() is not None:
                budget = SpendBudget(self.getSpendCap(), catalogue_yaml(catalogue), self.getMaxTokens(),
                                     self.getSystemPrompt())

            def answer_source(model: str, positions):
                prompts = [render_prompt(template, pool[p].text, labels) for p in positions]
                if budget is None:
                    results = client.complete_batch(model, prompts)
                else:
                    admitted, reserved = budget.admit(model, prompts)
                    results = client.complete_batch(model, prompts[:admitted]) if admitted else []
                    budget.settle(reserved, sum(r.cost for r in results))
                    results = list(results) + [
                        CallResult(model, None, None, 0, 0, 0.0, f"{SPEND_CAP}; not called", 0)
                        for _ in prompts[admitted:]
                    ]
                for position, r in zip(positions, results):
                    answers[(model, position)] = r
                return results

            result = engine.run(n_valid, len(pool), answer_source, progress=progress)
        return result, history, answers

    # -------------------------------------------------------------- MLflow
    def _mlflow_enabled(self) -> bool:
        mode = self.getMlflowLogging()
        if mode == "never":
            return False
        if mode == "always":
            return True
        import os

        if self.getMlflowTrackingUri() or os.environ.get("MLFLOW_TRACKING_URI"):
            return True
        try:
            import mlflow

            return mlflow.active_run() is not None
        except Exception:
            return False

    def _log_mlflow(self, catalogue: ModelCatalogue) -> None:
        if self._last_run is None or not self._mlflow_enabled():
            return
        from smart_spark.tracking import log_transform

        run_id, uri = log_transform(
            self._last_run,
            catalogue=catalogue,
            params=self._loggable_params(),
            experiment=self.getMlflowExperiment(),
            tracking_uri=self.getMlflowTrackingUri(),
            run_name=self.getMlflowRunName(),
        )
        self._last_run.mlflow_run_id = run_id
        self._last_run.mlflow_tracking_uri = uri

    def _loggable_params(self) -> dict[str, Any]:
        return {
            "accuracy_target": self.getAccuracyTarget(),
            "confidence": self.getConfidence(),
            "method": self.getMethod(),
            "seed": self.getSeed(),
            "reference_model": self.getReferenceModel(),
            "labels": ",".join(self.getLabels()),
            "pilot_size": self.getPilotSize(),
            "max_profile": self.getMaxProfile(),
            "spend_cap": self.getSpendCap(),
            "text_col": self.getTextCol(),
            "id_col": self.getIdCol(),
        }

    # ----------------------------------------------------------- summarize
    def summarize(self, output_df: DataFrame, log: bool = True) -> dict[str, Any]:
        """Realised spend and model split of an output of this classifier's last transform.

        Runs one aggregation over ``output_df`` (which evaluates the apply phase
        unless the DataFrame is cached) and, when the last transform logged to
        MLflow, logs the figures to the same run. Returns a dict with
        ``rows``, ``spend`` (USD, the cost column's sum), ``by_model``
        (model -> rows, ``None`` for rows without a prediction), ``null_predictions``,
        ``reference_only_cost`` and ``savings`` (reference-only / spend).
        """
        output = self._last_run.output_col if self._last_run else self.getOutputCol()
        spark = output_df.sparkSession
        model_col, cost_col = F.col(sampling.quote(output + "_model")), F.col(sampling.quote(output + "_cost"))
        with job_description(spark, "SMART apply + summarize"):
            rows = (
                output_df.groupBy(model_col.alias("model"))
                .agg(
                    F.count(F.lit(1)).alias("rows"),
                    F.sum(cost_col).alias("spend"),
                    F.sum(F.col(sampling.quote(output)).isNull().cast("long")).alias("nulls"),
                )
                .collect()
            )
        by_model = {r["model"]: int(r["rows"]) for r in rows}
        spend_by_model = {r["model"]: float(r["spend"] or 0.0) for r in rows}
        total_rows = sum(by_model.values())
        spend = sum(spend_by_model.values())
        summary: dict[str, Any] = {
            "rows": total_rows,
            "spend": spend,
            "by_model": by_model,
            "spend_by_model": spend_by_model,
            "null_predictions": sum(int(r["nulls"] or 0) for r in rows),
        }
        if self._last_run is not None:
            ref = self._last_run.reference_only_cost
            summary["reference_only_cost"] = ref
            summary["expected_cost"] = self._last_run.expected_cost
            summary["savings"] = ref / spend if spend > 0 else float("inf")
            if log and self._last_run.mlflow_run_id:
                from smart_spark.tracking import log_summary

                log_summary(self._last_run, summary)
        return summary

    def __repr__(self) -> str:
        return f"SmartLLMClassifier(uid={self.uid})"


def _make_apply(spec: ApplySpec):
    """The pandas UDF body; ``spec`` travels in its closure (works on Spark Connect)."""

    def SMART_apply(keys, texts, row_ids):  # noqa: N802 - the name shows in Spark plans
        return process_batch(spec, keys.tolist(), texts.tolist(), row_ids.tolist())

    import pandas as pd

    SMART_apply.__annotations__ = {"keys": pd.Series, "texts": pd.Series, "row_ids": pd.Series, "return": pd.DataFrame}
    return SMART_apply


__all__ = ["SmartLLMClassifier", "SmartRun", "is_connect"]
