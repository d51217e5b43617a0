"""MLflow logging of SMART runs: params, per-model metrics, artifacts, realised spend, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAKE_KEY, SIM_LABELS, text_frame
from smart_spark import SmartLLMClassifier

mlflow = pytest.importorskip("mlflow")


def stored_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_transform_and_summarize_log_to_a_new_run(spark, sim_server, sim_catalogue, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from smart_spark.engine import Plan

    monkeypatch.chdir(tmp_path)  # the sqlite store puts artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    clf = SmartLLMClassifier(
        labels=SIM_LABELS, models=sim_catalogue, referenceModel="gpt-4", idCol="id", accuracyTarget=0.9,
        mlflowLogging="always", mlflowTrackingUri=uri, mlflowExperiment="smart-test", mlflowRunName="t1",
    )
    out = text_frame(spark, 300, prefix="mlflow").transform(clf).cache()
    summary = clf.summarize(out)
    run_id = clf.lastRun.mlflow_run_id
    assert run_id

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["accuracy_target"] == "0.9" and params["confidence"] == "0.95" and params["method"] == "mix"
    assert params["reference_model"] == "gpt-4" and "gpt-3.5-turbo" in params["models"]
    assert params["price.gpt-4.input_per_1m"] == "30" and params["price.gpt-4.output_per_1m"] == "60"
    for model in sim_catalogue.names:
        assert f"unit_cost_usd.{model}" in metrics and f"status_code.{model}" in metrics
        assert f"smart.status.{model}" in tags
    assert metrics["profiled_items.gpt-3.5-turbo"] > 0 and 0 < metrics["agreement.gpt-3.5-turbo"] <= 1
    assert metrics["profiled_pilot_items"] > 0
    assert metrics["profiled_pilot_items"] + metrics["profiled_confirmation_items"] >= metrics["n_profiled"]
    assert "lower_bound.gpt-3.5-turbo" in metrics and "upper_bound.gpt-3.5-turbo" in metrics
    assert metrics["reference_only_cost_usd"] > metrics["expected_cost_usd"] > 0
    assert metrics["realised_spend_usd"] == pytest.approx(summary["spend"])
    assert summary["spend"] == pytest.approx(out.toPandas()["prediction_cost"].sum())
    assert summary["rows"] == 300 and sum(summary["by_model"].values()) == 300
    history = client.get_metric_history(run_id, "profiling.spent_usd")
    assert len(history) >= 2  # progress of profiling, step = items done

    artifacts = Path(run.info.artifact_uri.replace("file://", ""))
    plan = Plan.from_json((artifacts / "smart" / "plan.json").read_text())
    assert plan.fractions == clf.lastPlan.fractions
    profile_csv = (artifacts / "smart" / "profile.csv").read_text()
    assert "gpt-3.5-turbo" in profile_csv and "status" in profile_csv.splitlines()[0]
    png = (artifacts / "smart" / "plan_chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    realised = json.loads((artifacts / "smart" / "realised.json").read_text())
    assert realised["rows"] == 300
    assert FAKE_KEY.encode() not in stored_bytes(tmp_path)


def test_logs_into_the_active_run(spark, sim_server, sim_catalogue, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/active.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("active-exp")
        with mlflow.start_run() as active:
            clf = SmartLLMClassifier(labels=SIM_LABELS, models=sim_catalogue, referenceModel="gpt-4",
                                     accuracyTarget=0.8)  # mlflowLogging="auto": an active run
            text_frame(spark, 120, prefix="active").transform(clf)
            assert clf.lastRun.mlflow_run_id == active.info.run_id
            # a second transform with other settings in the same run does not fail
            clf.setAccuracyTarget(0.85)
            text_frame(spark, 120, prefix="active2").transform(clf)
        data = mlflow.get_run(active.info.run_id).data
        assert data.params["accuracy_target"] == "0.8"
        assert data.tags["smart.param.accuracy_target"] == "0.85"
    finally:
        mlflow.set_tracking_uri(previous)
    assert FAKE_KEY.encode() not in stored_bytes(tmp_path)


def test_no_logging_without_a_run_or_uri(spark, sim_server, sim_catalogue, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clf = SmartLLMClassifier(labels=SIM_LABELS, models=sim_catalogue, referenceModel="gpt-4", accuracyTarget=0.8)
    text_frame(spark, 80, prefix="quiet").transform(clf)
    assert clf.lastRun.mlflow_run_id is None
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
