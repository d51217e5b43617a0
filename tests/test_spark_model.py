"""Estimator -> Model: fit returns a lazy SmartLLMClassifierModel that saves, loads and refuses misuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAKE_KEY, ROOT, SIM_LABELS, text_frame
from smart_spark import SmartLLMClassifier, SmartLLMClassifierModel
from smart_spark.errors import ConfigurationError


def classifier(catalogue, **kw):
    base = dict(labels=SIM_LABELS, models=catalogue, referenceModel="gpt-4", accuracyTarget=0.85, idCol="id",
                mlflowLogging="never")
    base.update(kw)
    return SmartLLMClassifier(**base)


def test_fit_returns_a_model_and_transform_is_lazy(spark, sim_server, sim_catalogue):
    df = text_frame(spark, 200, prefix="lazy")
    clf = classifier(sim_catalogue, seed=3)
    model = clf.fit(df)
    assert isinstance(model, SmartLLMClassifierModel) and clf.lastModel is model
    assert model.plan.fractions == clf.lastPlan.fractions and model.profile.n_profiled > 0
    after_fit = sim_server.counters()
    out = model.transform(df)
    out.explain()
    assert sim_server.counters() == after_fit  # no LLM call before an action
    assert len(out.collect()) == 200
    assert sum(c["requests"] for c in sim_server.counters().values()) > sum(c["requests"] for c in after_fit.values())


def test_save_load_round_trip_and_format_version(spark, sim_server, sim_catalogue, tmp_path):
    df = text_frame(spark, 150, prefix="persist")
    model = classifier(sim_catalogue, seed=4).fit(df)
    path = str(tmp_path / "model")
    model.write().overwrite().save(path)
    model.write().overwrite().save(path)  # overwrite works
    loaded = SmartLLMClassifierModel.load(path)
    assert loaded.plan == model.plan
    assert loaded.state.profiled == model.state.profiled
    assert loaded.profile.n_profiled == model.profile.n_profiled
    assert loaded.getAccuracyTarget() == 0.85 and loaded.getIdCol() == "id"
    first = model.transform(df).select("id", "prediction_model").toPandas().sort_values("id")
    again = loaded.transform(df).select("id", "prediction_model").toPandas().sort_values("id")
    assert list(first["prediction_model"]) == list(again["prediction_model"])
    stored = b"".join(p.read_bytes() for p in Path(path).rglob("*") if p.is_file())
    assert FAKE_KEY.encode() not in stored

    # a saved model of another format version is refused, naming the version
    state_file = next(Path(path, "state").glob("part-*"))
    body = json.loads(state_file.read_text())
    meta_file = next(Path(path, "metadata").glob("part-*"))
    meta = json.loads(meta_file.read_text())
    meta["smartFormatVersion"] = 99
    meta_file.write_text(json.dumps(meta))
    for crc in Path(path, "metadata").glob(".*.crc"):
        crc.unlink()
    with pytest.raises(ConfigurationError, match="format version 99"):
        SmartLLMClassifierModel.load(path)
    assert body["format_version"] == 1


def test_loaded_model_refuses_other_text_column_labels_or_prompt(spark, sim_server, sim_catalogue, tmp_path):
    df = text_frame(spark, 120, prefix="strict")
    model = classifier(sim_catalogue).fit(df)
    with pytest.raises(ConfigurationError, match="labels"):
        model.copy().setLabels(["Yes", "No", "Maybe"]).transform(df)
    with pytest.raises(ConfigurationError, match="promptTemplate"):
        model.copy().setPromptTemplate("Other prompt: {text}").transform(df)
    renamed = df.withColumnRenamed("text", "body")
    with pytest.raises(ConfigurationError, match="textCol"):
        model.copy().setTextCol("body").transform(renamed)
    with pytest.raises(ConfigurationError, match="textCol 'text' is not a column"):
        model.transform(renamed)


def test_model_logged_to_mlflow_and_loaded_by_run_id_in_a_new_process(spark, sim_server, sim_catalogue, tmp_path,
                                                                        monkeypatch):
    pytest.importorskip("mlflow")
    from smart_spark.tracking import load_model

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    clf = classifier(sim_catalogue, mlflowLogging="always", mlflowTrackingUri=uri, mlflowExperiment="models")
    model = clf.fit(text_frame(spark, 120, prefix="logged"))
    run_id = model.run.mlflow_run_id
    assert run_id
    assert load_model(run_id, tracking_uri=uri).plan == model.plan
    script = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\n"
        "from smart_spark.tracking import load_model\n"
        "m = load_model('runs:/' + sys.argv[2], tracking_uri=sys.argv[3])\n"
        "print('PLAN', sorted(m.plan.fractions.items()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT), run_id, uri], capture_output=True, text=True,
                          timeout=180, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PLAN {sorted(model.plan.fractions.items())}" in proc.stdout


def test_broadcast_keeps_the_task_closure_small(spark):
    """A fitted state of ~1 MB (20,000 profiled answers) reaches executors by broadcast, not in the closure."""
    import pickle

    from pyspark import cloudpickle

    from smart_spark.spark.apply import ApplySpec
    from smart_spark.spark.model import _make_apply, _ship
    from smart_spark.spark.state import ProfiledAnswer

    profiled = {f"key{i:05d}": ProfiledAnswer("Yes", f"Yes, because {i}") for i in range(20_000)}
    spec = ApplySpec(plan_json="{}", catalogue_yaml="models: []", labels=("Yes", "No"), prompt_template="{text}",
                     profiled=profiled)
    closure = len(cloudpickle.dumps(_make_apply(_ship(spark, spec), 512)))
    assert len(pickle.dumps(spec)) > 500_000 and closure < 20_000, closure
