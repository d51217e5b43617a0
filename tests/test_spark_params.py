"""Params of SmartLLMClassifier: defaults, pyspark.ml-style accessors, fail-fast validation, save/load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import FAKE_KEY, FAKE_KEY_ENV, SIM_LABELS, simulated_catalogue
from smart_spark import SmartLLMClassifier


def make(**kw):
    base = dict(labels=SIM_LABELS, models=simulated_catalogue("http://127.0.0.1:9/v1"), referenceModel="gpt-4")
    base.update(kw)
    return SmartLLMClassifier(**base)


def test_defaults_and_accessors():
    clf = make()
    assert clf.getTextCol() == "text" and clf.getOutputCol() == "prediction" and clf.getIdCol() is None
    assert clf.getAccuracyTarget() == 0.9 and clf.getConfidence() == 0.95 and clf.getMethod() == "mix"
    assert clf.getLabels() == SIM_LABELS and clf.getReferenceModel() == "gpt-4"
    assert "{text}" in clf.getPromptTemplate()
    assert clf.setAccuracyTarget(0.8) is clf and clf.getAccuracyTarget() == 0.8
    clf.setParams(textCol="review", seed=7, concurrency=4)
    assert (clf.getTextCol(), clf.getSeed(), clf.getConcurrency()) == ("review", 7, 4)
    assert clf.catalogue().names == ["gpt-4", "text-davinci-002", "gpt-3.5-turbo", "text-curie-001", "gptj_6B"]
    assert clf.lastPlan is None and "not run yet" in clf.lastSummary()


def test_models_from_yaml_path(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(simulated_catalogue("http://127.0.0.1:9/v1").to_yaml())
    clf = make(models=str(path))
    assert "gpt-3.5-turbo" in clf.catalogue()
    with pytest.raises(ValueError, match="models"):
        make(models=str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(accuracyTarget=0.0), "accuracyTarget"),
        (dict(accuracyTarget=1.2), "accuracyTarget"),
        (dict(accuracyTarget=float("nan")), "accuracyTarget"),
        (dict(confidence=1.0), "confidence"),
        (dict(method="cheapest"), "method"),
        (dict(labels=[]), "labels"),
        (dict(labels=["Yes", "yes"]), "labels"),
        (dict(labels="Yes,No"), "labels"),
        (dict(promptTemplate="Classify this"), "promptTemplate"),
        (dict(maxProfile=0), "maxProfile"),
        (dict(batchSize=-1), "batchSize"),
        (dict(concurrency=0), "concurrency"),
        (dict(spendCap=-1.0), "spendCap"),
        (dict(seed="x"), "seed"),
        (dict(models=42), "models"),
        (dict(mlflowLogging="sometimes"), "mlflowLogging"),
    ],
)
def test_bad_values_fail_fast_naming_the_param(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(**kw)


def test_reference_not_in_catalogue_fails_before_any_job():
    clf = make(referenceModel="gpt-5")
    with pytest.raises(ValueError, match="referenceModel 'gpt-5' is not in the catalogue"):
        clf.validate()


def test_missing_labels_or_models_named():
    with pytest.raises(ValueError, match="labels"):
        SmartLLMClassifier(models=simulated_catalogue("http://x/v1"), referenceModel="gpt-4").validate()
    with pytest.raises(ValueError, match="models"):
        SmartLLMClassifier(labels=SIM_LABELS, referenceModel="gpt-4").validate()


def test_a_pasted_key_is_refused_as_key_variable():
    entry = {"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1, "api_key_env": "sk-abc-123"}
    with pytest.raises(ValueError, match="models"):
        make(models=[entry], referenceModel="m")


def test_save_load_round_trip_without_secrets(spark, tmp_path):
    clf = make(accuracyTarget=0.85, idCol="id", seed=11, spendCap=2.5)
    path = str(tmp_path / "clf")
    clf.save(path)
    loaded = SmartLLMClassifier.load(path)
    for param in clf.params:
        assert clf.getOrDefault(param) == loaded.getOrDefault(loaded.getParam(param.name)), param.name
    assert loaded.catalogue() == clf.catalogue()
    stored = "".join(p.read_text(errors="ignore") for p in Path(path).rglob("*") if p.is_file())
    assert FAKE_KEY_ENV in stored  # the variable's NAME is kept
    assert FAKE_KEY not in stored and os.environ[FAKE_KEY_ENV] not in stored


def test_pipeline_fit_save_load(spark, sim_server, sim_catalogue, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import SQLTransformer

    from smart_spark import SmartLLMClassifierModel

    clf = make(textCol="clean", models=sim_catalogue, accuracyTarget=0.8, mlflowLogging="never", executionMode="batch")
    pipeline = Pipeline(stages=[SQLTransformer(statement="SELECT *, trim(text) AS clean FROM __THIS__"), clf])
    df = spark.createDataFrame([(i, f" pipeline text {i} ") for i in range(80)], "id long, text string")
    model = pipeline.fit(df)
    path = str(tmp_path / "pipeline")
    model.write().overwrite().save(path)
    loaded = PipelineModel.load(path)
    stage = loaded.stages[1]
    assert isinstance(stage, SmartLLMClassifierModel) and stage.getTextCol() == "clean"
    assert stage.getExecutionMode() == "batch"  # applied below through the stand-in's Batch API
    assert stage.plan.fractions == model.stages[1].plan.fractions
    out = loaded.transform(df).toPandas()
    assert len(out) == 80 and out["prediction"].notna().all()
    stored = "".join(p.read_text(errors="ignore") for p in Path(path).rglob("*") if p.is_file())
    assert FAKE_KEY not in stored


def test_one_label_is_a_configuration_error():
    from smart_spark.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least two labels"):
        make(labels=["Yes"])


def test_accessors_are_written_out_and_set_params_has_a_signature():
    import inspect

    from smart_spark.spark.params import SmartParams

    for param in make().params:
        cap = param.name[0].upper() + param.name[1:]
        assert f"get{cap}" in vars(SmartParams) and f"set{cap}" in vars(SmartParams), param.name
    signature = inspect.signature(SmartLLMClassifier.setParams)
    assert {"accuracyTarget", "answersPath", "textCol"} <= set(signature.parameters)


def test_explain_params_has_no_key():
    text = make().explainParams()
    assert "accuracyTarget" in text and FAKE_KEY not in text
