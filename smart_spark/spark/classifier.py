"""``SmartLLMClassifier``: SMART as a Spark ML Estimator.

``clf.fit(df)`` validates the params and the input schema (errors name the
param/column), counts the rows, draws a seeded uniform sample across all
partitions, profiles it with the engine and the LLMs, plans, logs to MLflow
(params, per-model metrics, plan, profile, chart and the fitted model itself)
when enabled, and returns a :class:`~smart_spark.spark.model.SmartLLMClassifierModel`.
``df.transform(clf)`` fits on ``df`` and then transforms it (the model's
transform is lazy: no LLM call before an action).

Rows with null or blank text are kept (prediction null, cost 0, error
``"empty text"``) and are not counted in the N the accuracy guarantee is about.

Spend cap (``spendCap``, owned by :class:`~smart_spark.llm.spend.SpendBudget`):
profiling may spend up to the cap; what is left is split evenly over the
unprofiled rows, and each batch may spend its rows' share. A call is only sent
when its worst-case cost still fits, so calls in flight never overshoot the
cap; rows left over get null and an explicit "spend cap reached" error.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame

from smart_spark.catalogue import ModelCatalogue
from smart_spark.spark.model import SmartLLMClassifierModel
from smart_spark.spark.params import SmartParams
from smart_spark.spark.run import SmartRun
from smart_spark.spark.session import is_connect

logger = logging.getLogger("smart_spark")


class SmartLLMClassifier(Estimator, SmartParams, DefaultParamsReadable, DefaultParamsWritable):
    """Classify a text column with the cheapest mix of LLMs that meets an accuracy target.

    >>> clf = SmartLLMClassifier(textCol="review", labels=["positive", "negative"],
    ...                          models="conf/models.yaml", referenceModel="gpt-4o",
    ...                          accuracyTarget=0.9, answersPath="/dbfs/smart/answers")
    >>> model = clf.fit(df)                 # profile + plan (paid once)
    >>> out = model.transform(df)           # lazy; every answer paid at most once
    >>> model.write().overwrite().save("/dbfs/smart/model")

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
        answersPath: str | None = None,
        maxErrorRate: float = 0.05,
        maxPromptChars: int | None = None,
        oversizePolicy: str = "truncate",
        onDrift: str = "refit",
        executionMode: str = "online",
    ) -> None:
        super().__init__()
        self._last_model: SmartLLMClassifierModel | None = None
        kwargs = self._input_kwargs
        self._set(**{k: v for k, v in kwargs.items() if v is not None})

    @keyword_only
    def setParams(
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
        answersPath: str | None = None,
        maxErrorRate: float = 0.05,
        maxPromptChars: int | None = None,
        oversizePolicy: str = "truncate",
        onDrift: str = "refit",
        executionMode: str = "online",
    ) -> "SmartLLMClassifier":
        """Set several params at once (keyword arguments only; None leaves a param as it is)."""
        kwargs = self._input_kwargs
        return self._set(**{k: v for k, v in kwargs.items() if v is not None})

    def __call__(self, df: DataFrame) -> DataFrame:
        """``df.transform(clf)``: fit on ``df``, then transform it."""
        return self.fit(df).transform(df)

    # ----------------------------------------------------------- last fit
    @property
    def lastModel(self) -> SmartLLMClassifierModel | None:
        """The model of the last fit (None before)."""
        return self._last_model

    @property
    def lastRun(self) -> SmartRun | None:
        return self._last_model.run if self._last_model else None

    @property
    def lastPlan(self):
        """The :class:`~smart_spark.engine.Plan` of the last fit (None before)."""
        return self._last_model.plan if self._last_model else None

    @property
    def lastProfile(self):
        """The :class:`~smart_spark.engine.Profile` of the last fit (None before)."""
        return self._last_model.profile if self._last_model else None

    def lastSummary(self) -> str:
        """Readable text summary of the last fit's profile and plan."""
        if self._last_model is None:
            return "SmartLLMClassifier: not run yet"
        return self._last_model.summary()

    def summarize(self, output_df: DataFrame, log: bool = True) -> dict[str, Any]:
        """:meth:`SmartLLMClassifierModel.summarize` of the last fit's model."""
        if self._last_model is None:
            raise RuntimeError("SmartLLMClassifier.summarize: fit (or transform) first")
        return self._last_model.summarize(output_df, log=log)

    def copy(self, extra=None) -> "SmartLLMClassifier":
        that = super().copy(extra)
        that._last_model = None
        return that

    # ---------------------------------------------------------------- fit
    def _fit(self, dataset: DataFrame) -> SmartLLMClassifierModel:
        from smart_spark.spark.fitting import ProfilingCalls, fit_state, preflight

        from smart_spark.spark.answers import checked_store

        catalogue = self.validate(dataset.schema)
        tracking_uri = self._checked_tracking_uri()
        _, store = checked_store(self.getAnswersPath(), dataset.sparkSession)
        preflight(catalogue)
        with ProfilingCalls(self, catalogue, store) as factory:
            fit = fit_state(self, dataset, caller_factory=factory, catalogue=catalogue)
        model = SmartLLMClassifierModel(fit.state, fit.run)
        self._copyValues(model)
        model._resetUid(self.uid.replace("SmartLLMClassifier", "SmartLLMClassifierModel"))
        if not is_connect(dataset):
            model._fitted_plan_hash = dataset.semanticHash()
        self._last_model = model
        logger.info("%s", fit.run.summary())
        self._log_mlflow(model, catalogue, tracking_uri)
        return model

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

    def _checked_tracking_uri(self) -> str | None:
        """The MLflow tracking URI, resolved and checked before anything is paid (a plain path -> SQLite)."""
        if not self._mlflow_enabled():
            return None
        try:
            from smart_spark.tracking.uri import resolve_tracking_uri
        except ImportError:  # the front door's resolver not merged yet: MLflow's own handling
            return self.getMlflowTrackingUri()
        return resolve_tracking_uri(self.getMlflowTrackingUri())

    def _log_mlflow(self, model: SmartLLMClassifierModel, catalogue: ModelCatalogue,
                    tracking_uri: str | None) -> None:
        if not self._mlflow_enabled():
            return
        from smart_spark.tracking import log_fitted_model, log_transform

        run = model.run
        run_id, uri = log_transform(
            run, catalogue=catalogue, params=self._loggable_params(), experiment=self.getMlflowExperiment(),
            tracking_uri=tracking_uri, run_name=self.getMlflowRunName(),
        )
        run.mlflow_run_id, run.mlflow_tracking_uri = run_id, uri
        log_fitted_model(model, run_id, uri)

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
            "execution_mode": self.getExecutionMode(),  # "batch": the realised spend is at the batch price
        }

    def __repr__(self) -> str:
        return f"SmartLLMClassifier(uid={self.uid})"


__all__ = ["SmartLLMClassifier", "SmartLLMClassifierModel", "SmartRun", "is_connect"]
