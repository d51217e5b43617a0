"""MLflow logging of a SMART run: params, per-model metrics, plan, profile, chart, realised spend.

Where: the active run when there is one (and no other tracking URI was asked
for), else a new run in the configured experiment, which is ended after the
transform's logging; :func:`log_summary` adds the realised figures to the same
run later. Nothing logged contains an API key: the catalogue's prices and model
names are logged, never its endpoints or key variables, and the params come
from an explicit allow-list.

Params are immutable in MLflow; a second transform in the same active run with
different settings logs the conflicting values as tags ``smart.param.<name>``
instead of failing.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

logger = logging.getLogger("smart_spark")

STATUS_CODES = {"invalid": -1.0, "dropped": -0.5, "unknown": 0.0, "satisfied": 1.0, "reference": 2.0}
_BATCH = 900


def metric_key(*parts: str) -> str:
    """An MLflow-safe key (alphanumerics, _ - . / and spaces)."""
    return ".".join(re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(p)) for p in parts)


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _target_run(client, tracking_uri: str | None, experiment: str, run_name: str | None) -> tuple[str, bool]:
    """(run_id, created): the active run if usable, else a new run in ``experiment``."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and (tracking_uri is None or tracking_uri == mlflow.get_tracking_uri()):
        return active.info.run_id, False
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags={"smart_spark.kind": "transform"})
    return run.info.run_id, True


def log_transform(run: Any, *, catalogue, params: dict[str, Any], experiment: str,
                  tracking_uri: str | None = None, run_name: str | None = None) -> tuple[str, str]:
    """Log a :class:`~smart_spark.spark.run.SmartRun`; returns (run_id, tracking_uri)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from smart_spark.tracking.charts import plan_figure
    from smart_spark.tracking.uri import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(tracking_uri)  # a plain path -> SQLite (MLflow 3 refuses file stores)
    client = MlflowClient(tracking_uri=tracking_uri)
    uri = tracking_uri or mlflow.get_tracking_uri()
    run_id, created = _target_run(client, tracking_uri, experiment, run_name)
    plan, profile = run.plan, run.profile
    now = int(time.time() * 1000)

    wanted = {k: ("None" if v is None else str(v)) for k, v in params.items()}
    wanted["models"] = ",".join(catalogue.names)
    for spec in catalogue:
        wanted[metric_key("price", spec.name, "input_per_1m")] = f"{spec.input_price_per_token * 1e6:g}"
        wanted[metric_key("price", spec.name, "output_per_1m")] = f"{spec.output_price_per_token * 1e6:g}"
        if spec.request_fee:
            wanted[metric_key("price", spec.name, "request_fee")] = f"{spec.request_fee:g}"
    existing = client.get_run(run_id).data.params
    new_params, tags = [], [RunTag("smart_spark.version", _version())]
    for key, value in wanted.items():
        if key not in existing:
            new_params.append(Param(key, value[:6000]))
        elif existing[key] != value:
            logger.warning("MLflow param %s already logged as %r in run %s; logging %r as a tag",
                           key, existing[key], run_id, value)
            tags.append(RunTag(metric_key("smart.param", key), value[:5000]))

    metrics: list[Metric] = []

    def metric(key: str, value: Any, step: int = 0) -> None:
        value = _finite(value)
        if value is not None:
            metrics.append(Metric(key, value, now, step))

    metric("n_rows", run.n_rows)
    metric("n_valid", run.n_valid)
    metric("n_profiled", profile.n_profiled)
    metric("profiled_pilot_items", profile.pilot_size)
    metric("profiled_confirmation_items", profile.confirmation_size)
    metric("sample_size", run.pool_size)
    metric("profiling_spend_usd", profile.spent)
    metric("fit_paid_usd", getattr(run, "fit_paid", None))
    metric("fit_reused_answers", getattr(run, "fit_reused", None))
    metric("oversize_rows", getattr(run, "oversize_rows", None))
    metric("profiling_seconds", run.profiling_seconds)
    metric("expected_apply_cost_usd", plan.expected_cost)
    metric("expected_cost_usd", run.expected_cost)
    metric("reference_only_cost_usd", run.reference_only_cost)
    if run.expected_cost > 0:
        metric("expected_savings_x", run.reference_only_cost / run.expected_cost)
    metric("remaining_target", plan.remaining_target)
    for model, stats in profile.stats.items():
        metric(metric_key("profiled_items", model), stats.n + getattr(stats, "pilot_n", 0))
        metric(metric_key("confirmation_items", model), stats.n)
        metric(metric_key("agreement", model), stats.agreement_rate)
        metric(metric_key("lower_bound", model), stats.lower)
        metric(metric_key("upper_bound", model), stats.upper)
        metric(metric_key("unit_cost_usd", model), stats.unit_cost)
        metric(metric_key("status_code", model), STATUS_CODES.get(stats.status, 0.0))
        metric(metric_key("alpha", model), stats.alpha)
        metric(metric_key("fraction", model), plan.fractions.get(model, 0.0))
        tags.append(RunTag(metric_key("smart.status", model), str(stats.status)))
    from smart_spark.spark.state import cascade_entries

    for cascade in cascade_entries(getattr(run, "cascade", None)):  # the certified confidence cascades the plan applies
        metric(metric_key("cascade.threshold", cascade["model"]), cascade["threshold"])
        metric(metric_key("cascade.expected_kept_share", cascade["model"]), cascade["expected_kept_share"])
        metric(metric_key("cascade.profiled_rows", cascade["model"]), cascade["profiled_rows"])
        metric(metric_key("cascade.error_budget", cascade["model"]), cascade["error_budget"])
        if "share" in cascade:  # a cascade among the options of the mix: the share of the rows left it was given
            metric(metric_key("cascade.share", cascade["model"]), cascade["share"])
        for step in cascade.get("steps", ()):  # a chain: each model's threshold and expected kept share
            metric(metric_key("chain.threshold", cascade["model"], step["model"]), step["threshold"])
            if "expected_kept_share" in step:
                metric(metric_key("chain.expected_kept_share", cascade["model"], step["model"]),
                       step["expected_kept_share"])
    for event in run.progress:
        step = int(event["items_done"])
        metric("profiling.spent_usd", event["spent"], step)
        for model, (lower, upper) in event["bounds"].items():
            metric(metric_key("profiling.lower", model), lower, step)
            metric(metric_key("profiling.upper", model), upper, step)

    client.log_batch(run_id, params=new_params[:100], tags=tags[:100])
    for start in range(100, len(new_params), 100):
        client.log_batch(run_id, params=new_params[start : start + 100])
    for start in range(100, len(tags), 100):
        client.log_batch(run_id, tags=tags[start : start + 100])
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    client.log_text(run_id, plan.to_json(), "smart/plan.json")
    client.log_text(run_id, profile.to_frame().to_csv(index=False), "smart/profile.csv")
    client.log_text(run_id, run.summary(), "smart/summary.txt")
    figure = plan_figure(run)
    client.log_figure(run_id, figure, "smart/plan_chart.png")
    if created:
        client.set_terminated(run_id)
    logger.info("SMART logged to MLflow run %s (%s)", run_id, uri)
    return run_id, uri


def log_summary(run: Any, summary: dict[str, Any]) -> None:
    """Log :meth:`SmartLLMClassifier.summarize` figures to the run of the transform."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=run.mlflow_tracking_uri)
    now = int(time.time() * 1000)
    metrics = []

    def metric(key: str, value: Any) -> None:
        value = _finite(value)
        if value is not None:
            metrics.append(Metric(key, value, now, 0))

    metric("realised_spend_usd", summary["spend"])
    metric("realised_rows", summary["rows"])
    metric("realised_null_predictions", summary["null_predictions"])
    metric("realised_savings_x", summary.get("savings"))
    metric("realised_paid_rows", summary.get("paid_rows"))
    metric("realised_reused_rows", summary.get("reused_rows"))
    metric("realised_null_rows_with_text", summary.get("null_rows_with_text"))
    metric("failure_slack_rows", summary.get("failure_slack_rows"))
    metric("realised_escalated_rows", summary.get("escalated_rows"))
    for model, share in (summary.get("cascade_kept_share") or {}).items():
        metric(metric_key("realised_cascade_kept_share", model), share)
    if "promise_kept" in summary:
        metric("promise_kept", float(summary["promise_kept"]))
    for model, rows in summary["by_model"].items():
        name = model if model is not None else "none"
        metric(metric_key("realised_rows", name), rows)
        metric(metric_key("realised_share", name), rows / summary["rows"] if summary["rows"] else 0.0)
        metric(metric_key("realised_spend_usd", name), summary["spend_by_model"].get(model, 0.0))
    client.log_batch(run.mlflow_run_id, metrics=metrics)
    client.log_dict(run.mlflow_run_id, {k: v for k, v in summary.items() if k != "by_model"} | {
        "by_model": {str(k): v for k, v in summary["by_model"].items()},
        "spend_by_model": {str(k): v for k, v in summary["spend_by_model"].items()},
    }, "smart/realised.json")


def _version() -> str:
    from smart_spark import __version__

    return __version__


def log_confirmation(stats: dict[str, Any], *, experiment: str, tracking_uri: str | None = None,
                     run_name: str | None = None, fitted_run_id: str | None = None) -> str:
    """Log a fitted model's confirmation on new data (decision, sample, bounds) to a run; returns its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(tracking_uri=tracking_uri)
    run_id, created = _target_run(client, tracking_uri, experiment, run_name)
    now = int(time.time() * 1000)
    metrics = [Metric(metric_key("confirmation", k), v, now, 0)
               for k, v in ((k, _finite(v)) for k, v in stats.items() if not isinstance(v, (list, str)))
               if v is not None]
    tags = [RunTag("smart.confirmation.decision", str(stats.get("decision"))),
            RunTag("smart.confirmation.failing_models", ",".join(stats.get("failing_models") or []) or "none")]
    if fitted_run_id:
        tags.append(RunTag("smart.fitted_run_id", fitted_run_id))
    client.log_batch(run_id, metrics=metrics, tags=tags)
    client.log_dict(run_id, stats, "smart/confirmation.json")
    if created:
        client.set_terminated(run_id)
    return run_id
