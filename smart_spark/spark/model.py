"""``SmartLLMClassifierModel``: a fitted SMART plan, applied lazily by a pandas UDF.

``model.transform(df)`` adds six columns, computed when an action evaluates them:

``<outputCol>`` label or null; ``<outputCol>_model`` model that answered;
``<outputCol>_cost`` USD this evaluation paid for the row; ``<outputCol>_error``
why the prediction is null; ``<outputCol>_paid`` whether the answer was bought
by this evaluation (False: reused from profiling, a duplicate or the answer store);
``<outputCol>_escalated`` whether the row's first model was asked and the row
then went on to a later one (a confidence cascade's answer below its certified
threshold, or a failed call).

The fitted state (:class:`~smart_spark.spark.state.FittedState`) travels to the
executors by broadcast on classic Spark (the task closure stays small) and in
the UDF closure on Spark Connect, which has no SparkContext.

Persistence: ``model.write().overwrite().save(path)`` writes the params
(``<path>/metadata``, as every pyspark.ml stage) and the fitted state as one
JSON line (``<path>/state``); :meth:`SmartLLMClassifierModel.load` refuses a
saved model of another format version with a ConfigurationError.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from pyspark.ml import Model
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from smart_spark.errors import ConfigurationError
from smart_spark.spark import sampling
from smart_spark.spark.apply import EMPTY_TEXT, OVERSIZE, RESULT_DDL
from smart_spark.spark.params import SmartParams
from smart_spark.spark.run import SmartRun
from smart_spark.spark.session import is_connect, job_description
from smart_spark.spark.state import READABLE_VERSIONS, DataFingerprint, FittedState, cascade_entries

logger = logging.getLogger("smart_spark")


class SmartLLMClassifierModel(Model, SmartParams, MLReadable, MLWritable):
    """The fitted plan of :class:`~smart_spark.spark.classifier.SmartLLMClassifier`; see the module docstring."""

    def __init__(self, state: FittedState | None = None, run: SmartRun | None = None) -> None:
        super().__init__()
        self._state = state
        self._run = run
        #: semanticHash of the DataFrame fitted in this process (skips the fingerprint job on it).
        self._fitted_plan_hash: int | None = None
        #: What applying the model to new data decided, per data fingerprint (confirmed or refitted).
        self._reused: dict[DataFingerprint, Any] = {}
        self._last_reuse: Any = None

    # ------------------------------------------------------------- state
    @property
    def state(self) -> FittedState:
        if self._state is None:
            raise ConfigurationError("this SmartLLMClassifierModel has no fitted state (use SmartLLMClassifier.fit)")
        return self._state

    @property
    def plan(self):
        """The :class:`~smart_spark.engine.Plan` applied to unprofiled rows."""
        return self.run.plan

    @property
    def profile(self):
        """The :class:`~smart_spark.engine.Profile` the plan was made from."""
        return self.run.profile

    @property
    def run(self) -> SmartRun:
        """What the fit measured and decided (rebuilt from the saved state after a load)."""
        if self._run is None:
            state = self.state
            self._run = SmartRun(
                plan=state.plan(), profile=state.profile_object(), n_rows=state.n_rows, n_valid=state.n_valid,
                pool_size=state.pool_size, profiling_seconds=state.profiling_seconds,
                output_col=self.getOutputCol(), reference=state.fitted_with["referenceModel"],
                profiled_keys=frozenset(k for k, a in state.profiled.items() if a.error is None),
                consumed_keys=frozenset(state.profiled), cascade=state.cascade,
            )
        return self._run

    def summary(self) -> str:
        return self.appliedRun.summary()

    @property
    def appliedRun(self) -> SmartRun:
        """The run of the last transform: the fit's, or the confirmation's / refit's on new data."""
        return self._last_reuse.run if self._last_reuse is not None else self.run

    @property
    def lastConfirmation(self) -> dict[str, Any] | None:
        """Decision and statistics of the last confirmation on new data (None: applied to the fitted data)."""
        return self._last_reuse.confirmation if self._last_reuse is not None else None

    # ---------------------------------------------------------- transform
    def check_compatible(self, dataset: DataFrame | None = None) -> None:
        """A ConfigurationError when the params that give prompts their meaning differ from the fit's."""
        fitted = dict(self.state.fitted_with)
        now = self.fittedWith()
        changed = [name for name in fitted if fitted[name] != now.get(name)]
        if changed:
            details = "; ".join(f"{n}: fitted with {fitted[n]!r}, now {now.get(n)!r}" for n in changed)
            raise ConfigurationError(
                f"this model was fitted with other settings ({details}); fit a new model for them")
        if dataset is not None:
            self._validate_schema(dataset.schema)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from smart_spark.spark.answers import checked_store

        catalogue = self.validate()
        self.check_compatible(dataset)
        answers_path, store = checked_store(self.getAnswersPath(), dataset.sparkSession)
        keyed = self.keyed(dataset)
        state = self._state_for(dataset, keyed, store)
        spec = self.applySpec(catalogue, state.plan_json, profiled=state.profiled,
                              row_budget=self._row_budget(), answers_path=answers_path,
                              rate_share=_rate_share(catalogue, keyed))
        spec = dataclasses.replace(spec, cascades=state.cascades, chains=state.chains)
        apply_udf = F.pandas_udf(_make_apply(_ship(dataset.sparkSession, spec), self.getBatchSize()),
                                 RESULT_DDL).asNondeterministic()
        result = F.col(sampling.RESULT_COL)
        output = self.getOutputCol()
        applied = keyed.withColumn(
            sampling.RESULT_COL, apply_udf(F.col(sampling.KEY_COL), F.col(sampling.quote(self.getTextCol()))))
        return applied.select(
            *[F.col(sampling.quote(c)) for c in dataset.columns],
            result["prediction"].alias(output),
            result["model"].alias(output + "_model"),
            result["cost"].alias(output + "_cost"),
            result["error"].alias(output + "_error"),
            result["paid"].alias(output + "_paid"),
            result["escalated"].alias(output + "_escalated"),
        )

    def _state_for(self, dataset: DataFrame, keyed: DataFrame, store: Any) -> FittedState:
        """The fitted state on the data it was fitted on; on new data, the confirmed (or refitted) one."""
        self._last_reuse = None
        if self._fitted_plan_hash is not None and not is_connect(dataset) \
                and dataset.semanticHash() == self._fitted_plan_hash:
            return self.state
        from smart_spark.spark.fitting import data_fingerprint
        from smart_spark.spark.reuse import reuse_on_new_data

        with job_description(dataset.sparkSession, "SMART: is this the data the model was fitted on?"):
            data, _ = data_fingerprint(keyed, self.oversizeColumn())
        if data.matches(self.state.data):
            return self.state
        if data not in self._reused:
            self._reused[data] = reuse_on_new_data(self, dataset, keyed, data, store)
        self._last_reuse = self._reused[data]
        return self._last_reuse.state

    def _row_budget(self) -> float | None:
        cap = self.getSpendCap()
        if cap is None:
            return None
        run = self.appliedRun
        return max(0.0, cap - run.fit_paid) / max(1, run.plan.n_remaining)

    # ---------------------------------------------------------- summarize
    def summarize(self, output_df: DataFrame, log: bool = True) -> dict[str, Any]:
        """Realised spend and model split of an output of this model (one aggregation).

        Returns ``rows``, ``spend`` (USD this evaluation paid: the cost column's
        sum), ``paid_rows`` / ``reused_rows``, ``by_model`` (model -> rows,
        ``None`` for rows without a prediction), ``spend_by_model``,
        ``null_predictions``, ``fit_paid`` (what the fit paid),
        ``reference_only_cost`` and ``savings`` (reference-only / (fit + apply spend)).
        Logged to the fit's MLflow run when there is one.
        """
        output = self.getOutputCol()
        model_col, cost_col = F.col(sampling.quote(output + "_model")), F.col(sampling.quote(output + "_cost"))
        paid_col = F.col(sampling.quote(output + "_paid"))
        error = F.col(sampling.quote(output + "_error"))
        not_classified = error.isNotNull() & ((error == F.lit(EMPTY_TEXT)) | error.startswith(OVERSIZE))
        with job_description(output_df.sparkSession, "SMART apply + summarize"):
            rows = (
                output_df.groupBy(model_col.alias("model"))
                .agg(
                    F.count(F.lit(1)).alias("rows"),
                    F.sum(cost_col).alias("spend"),
                    F.sum(F.col(sampling.quote(output)).isNull().cast("long")).alias("nulls"),
                    F.sum((F.col(sampling.quote(output)).isNull() & ~not_classified).cast("long")).alias("failed"),
                    F.sum(paid_col.cast("long")).alias("paid"),
                    F.sum(F.col(sampling.quote(output + "_escalated")).cast("long")).alias("escalated"),
                )
                .collect()
            )
        by_model = {r["model"]: int(r["rows"]) for r in rows}
        spend_by_model = {r["model"]: float(r["spend"] or 0.0) for r in rows}
        spend = sum(spend_by_model.values())
        run = self.appliedRun
        paid_rows = sum(int(r["paid"] or 0) for r in rows)
        total_rows = sum(by_model.values())
        summary: dict[str, Any] = {
            "rows": total_rows,
            "spend": spend,
            "paid_rows": paid_rows,
            "reused_rows": total_rows - paid_rows,
            "by_model": by_model,
            "spend_by_model": spend_by_model,
            "null_predictions": sum(int(r["nulls"] or 0) for r in rows),
            "null_rows_with_text": sum(int(r["failed"] or 0) for r in rows),
            "failure_slack_rows": failure_slack_rows(run.plan),
            "fit_paid": run.fit_paid,
            "reference_only_cost": run.reference_only_cost,
            "expected_cost": run.expected_cost,
            # "batch": spend is at the catalogue's batch_discount; expected_cost stays at on-line prices.
            "execution_mode": self.getExecutionMode(),
        }
        summary["escalated_rows"] = sum(int(r["escalated"] or 0) for r in rows)
        cascades = cascade_entries(self._state_cascade())
        if cascades:  # share of the valid rows whose answer each cascade model kept (profiled rows included)
            # a model also answering in a chain answers rows that are not its cascade's: no share of its own
            chained = {s["model"] for c in cascades for s in c.get("steps", ())}
            summary["cascade_kept_share"] = {c["model"]: by_model.get(c["model"], 0) / max(1, run.n_valid)
                                             for c in cascades if "steps" not in c and c["model"] not in chained}
        # A null prediction counts as a disagreement: the promise survives as many as the plan has slack for.
        summary["promise_kept"] = summary["null_rows_with_text"] <= summary["failure_slack_rows"]
        if not summary["promise_kept"]:
            logger.warning("SMART: %d rows with text have no prediction, more than the plan's slack of %d rows: "
                           "the accuracy promise is not kept for this output", summary["null_rows_with_text"],
                           summary["failure_slack_rows"])
        total = spend + run.fit_paid
        summary["savings"] = run.reference_only_cost / total if total > 0 else float("inf")
        if log and run.mlflow_run_id:
            from smart_spark.tracking import log_summary

            log_summary(run, summary)
        return summary

    def _state_cascade(self):
        """The cascade of the state applied last (the fit's, or the confirmation's / refit's)."""
        return self._last_reuse.state.cascade if self._last_reuse is not None else self.state.cascade

    # -------------------------------------------------------- persistence
    def write(self) -> "SmartModelWriter":
        return SmartModelWriter(self)

    @classmethod
    def read(cls) -> "SmartModelReader":
        return SmartModelReader(cls)

    def copy(self, extra=None) -> "SmartLLMClassifierModel":
        that = super().copy(extra)
        that._state, that._run = self._state, self._run
        that._fitted_plan_hash, that._reused, that._last_reuse = self._fitted_plan_hash, {}, None
        return that

    def __repr__(self) -> str:
        return f"SmartLLMClassifierModel(uid={self.uid})"


class SmartModelWriter(DefaultParamsWriter):
    """Params as every pyspark.ml stage writes them, plus ``<path>/state`` (one JSON line)."""

    def saveImpl(self, path: str) -> None:
        model: SmartLLMClassifierModel = self.instance  # type: ignore[assignment]
        DefaultParamsWriter.saveMetadata(model, path, self.sparkSession,
                                         extraMetadata={"smartFormatVersion": model.state.saved_version})
        spark = self.sparkSession
        spark.createDataFrame([(model.state.to_json(),)], "value string").coalesce(1).write.text(
            os.path.join(path, "state"))


class SmartModelReader(MLReader):
    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> SmartLLMClassifierModel:
        spark = self.sparkSession
        metadata = DefaultParamsReader.loadMetadata(path, spark)
        version = metadata.get("smartFormatVersion")
        if version not in READABLE_VERSIONS:
            raise ConfigurationError(
                f"saved model {path}: format version {version!r}, this smart_spark reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; fit the model again with this version")
        line = spark.read.text(os.path.join(path, "state")).first()
        if line is None:
            raise ConfigurationError(f"saved model {path}: the fitted state (state/) is empty")
        model = self.cls(FittedState.from_json(line[0], where=f"saved model {path}"))
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model


def failure_slack_rows(plan) -> int:
    """Rows that may end without a prediction while the plan's agreement bound still meets the target.

    Each such row is counted as a disagreement: (bound - target) * N rows, rounded down.
    """
    engine_value = getattr(plan, "failure_slack_rows", None)
    if engine_value is not None:
        return int(engine_value() if callable(engine_value) else engine_value)
    return max(0, int((plan.agreement_bound - plan.accuracy_target) * plan.n_total + 1e-9))


def _ship(spark, spec):
    """The spec by broadcast on classic Spark (small task closures); in the closure on Spark Connect."""
    if is_connect(spark):
        return spec
    return spark.sparkContext.broadcast(spec)


def _rate_share(catalogue, keyed: DataFrame) -> float | None:
    """Each apply task's share of the models' declared rpm / tpm (None when no model declares one)."""
    if not any(spec.rpm or spec.tpm for spec in catalogue):
        return None
    from smart_spark.llm.ratelimit import job_rate_share

    share = job_rate_share(keyed)
    logger.info("SMART apply: each task paces itself to %.4g of every model's rpm / tpm", share)
    return share


def _make_apply(shipped, batch_size: int):
    """The pandas UDF body (one call per task); ``shipped`` is the ApplySpec or a Broadcast of it.

    On-line, each Arrow batch is answered in pieces of ``batch_size`` rows, the next
    piece's calls queued while this one's finish (:mod:`smart_spark.spark.online_calls`). In batch
    mode every Arrow batch is submitted before any is waited for, and answered in the
    Arrow batches it came in (:func:`smart_spark.spark.batch_calls.apply_partition`).
    """

    def SMART_apply(batches):  # noqa: N802 - the name shows in Spark plans
        from smart_spark.spark.apply import ErrorRateGuard

        spec = shipped.value if hasattr(shipped, "value") else shipped
        guard = ErrorRateGuard(spec)
        if spec.execution_mode == "batch":
            from smart_spark.spark.batch_calls import apply_partition

            yield from apply_partition(spec, batches, guard)
            return
        from smart_spark.spark.online_calls import apply_partition as apply_online

        yield from apply_online(spec, batches, batch_size, guard)

    from typing import Iterator, Tuple

    import pandas as pd

    SMART_apply.__annotations__ = {"batches": Iterator[Tuple[pd.Series, pd.Series]], "return": Iterator[pd.DataFrame]}
    return SMART_apply
