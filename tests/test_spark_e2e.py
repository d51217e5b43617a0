"""End-to-end SmartLLMClassifier runs on the shared local[2] session through the stand-in server."""

from __future__ import annotations

import hashlib
import logging

import pandas as pd

import pytest
from pyspark.sql import functions as F

from conftest import FAKE_KEY, FAKE_KEY_ENV, SIM_LABELS, simulated_backend, simulated_catalogue, text_frame
from smart_checks import models_called, prompts_of, realised_agreement, server_spend
from smart_spark import SmartLLMClassifier
from smart_spark.errors import ConfigurationError


def row_key(row_id, text) -> str:
    """The operator's row key with idCol: the id and the text's SHA-256."""
    return f"{row_id}|{hashlib.sha256(text.encode()).hexdigest()}"


def classifier(catalogue, **kw):
    base = dict(labels=SIM_LABELS, models=catalogue, referenceModel="gpt-4", accuracyTarget=0.9,
                mlflowLogging="never")
    base.update(kw)
    return SmartLLMClassifier(**base)


def test_simulated_end_to_end(spark, sim_server, sim_catalogue, caplog):
    df = text_frame(spark, 500, partitions=3).withColumn("extra", F.col("id") * 2)
    clf = classifier(sim_catalogue, idCol="id", seed=1)
    with caplog.at_level(logging.INFO, logger="smart_spark"):
        out = df.transform(clf).toPandas()  # df.transform(clf): the classifier is callable

    # every input row and column, unchanged, plus the output columns
    assert list(out.columns) == ["id", "text", "extra", "prediction", "prediction_model", "prediction_cost",
                                 "prediction_error", "prediction_paid", "prediction_escalated"]
    assert len(out) == 500 and out["id"].is_unique and sorted(out["id"]) == list(range(500))
    assert (out["extra"] == out["id"] * 2).all()
    assert out["prediction"].isin(SIM_LABELS + [None]).all()

    prompts = prompts_of(out["text"], clf.getPromptTemplate(), SIM_LABELS)
    # fit spend + the cost column's sum is what the server answered
    spend = out["prediction_cost"].sum()
    run = clf.lastRun
    assert spend + run.fit_paid == pytest.approx(server_spend(sim_server, sim_catalogue, prompts), rel=1e-9)
    plan, profile = clf.lastPlan, clf.lastProfile
    assert plan is not None and profile.n_profiled > 0
    assert run.fit_paid == pytest.approx(profile.spent) and spend > 0
    # profiled rows were paid by the fit: reused here, at cost 0
    keys = [row_key(i, t) for i, t in zip(out["id"], out["text"])]
    profiled = pd.Series([k in run.profiled_keys for k in keys], index=out.index)
    assert not out.loc[profiled, "prediction_paid"].any() and (out.loc[profiled, "prediction_cost"] == 0).all()
    assert out.loc[~profiled, "prediction_paid"].all()

    # no row paid twice; profiled rows never called again; at most the plan's chain per row
    counters = sim_server.counters()
    assert all(c["requests"] == c["distinct_prompts"] == c["answered"] for c in counters.values()), counters
    profiled_ids = {str(k) for k in run.profiled_keys}
    assert len(profiled_ids) == profile.n_profiled
    names = sim_catalogue.names
    for key, model, prompt in zip(keys, out["prediction_model"], prompts):
        called = models_called(sim_server, names, prompt)
        if key in profiled_ids:
            assert model == "gpt-4" and "gpt-4" in called
        else:
            assert called == [model] and model in plan.fractions and model == plan.route(key)
    assert counters["gpt-4"]["requests"] == int((out["prediction_model"] == "gpt-4").sum())

    # the realised agreement meets the target
    agreement = realised_agreement(sim_server.backend, out["prediction_model"], prompts, SIM_LABELS, "gpt-4")
    assert agreement >= 0.9
    assert out["prediction_error"].isna().all()

    # progress on the driver: items done, bounds, spend so far
    lines = [r.getMessage() for r in caplog.records if "SMART profiling progress" in r.getMessage()]
    assert lines and "spent $" in lines[-1] and "[" in lines[-1]
    assert "SMART plan" in clf.lastSummary() and "SMART profile" in clf.lastSummary()


def test_reevaluation_routes_identically_and_pays_nothing_again(spark, sim_server, sim_catalogue):
    df = text_frame(spark, 200, prefix="again")
    clf = classifier(sim_catalogue, idCol="id", seed=2, accuracyTarget=0.85)
    out = df.transform(clf)
    first = out.select("id", "prediction_model", "prediction_paid").toPandas().sort_values("id")
    requests_after_first = sim_server.counters()
    second = out.select("id", "prediction_model", "prediction_paid", "prediction_cost").toPandas().sort_values("id")
    assert list(first["prediction_model"]) == list(second["prediction_model"])
    assert first["prediction_paid"].any()
    # the second evaluation reads every answer from the application's answer store
    assert sim_server.counters() == requests_after_first
    assert not second["prediction_paid"].any() and (second["prediction_cost"] == 0).all()


def test_duplicate_texts_without_id_share_answers_and_cost_is_not_double_counted(spark, sim_server, sim_catalogue):
    base = [(f"dup text {i % 60}",) for i in range(240)]  # each text 4 times
    df = spark.createDataFrame(base, "text string").repartition(2)
    df = df.localCheckpoint()  # a deterministic input (row ids are stable)
    clf = classifier(sim_catalogue, seed=4, accuracyTarget=0.8)
    out = df.transform(clf).toPandas()
    assert len(out) == 240
    by_text = out.groupby("text")["prediction_model"].nunique()
    assert (by_text == 1).all()  # the same key routes (and is answered) the same way
    prompts = prompts_of(out["text"], clf.getPromptTemplate(), SIM_LABELS)
    assert out["prediction_cost"].sum() + clf.lastRun.fit_paid == pytest.approx(
        server_spend(sim_server, sim_catalogue, prompts), rel=1e-9)
    counters = sim_server.counters()
    # copies in the same Arrow batch are called once; each of the 2 partitions may call a text once
    assert all(c["requests"] <= 2 * c["distinct_prompts"] for c in counters.values())
    assert sum(c["requests"] for c in counters.values()) < 240


def test_null_and_empty_text_are_kept(spark, sim_server, sim_catalogue):
    rows = [(i, None if i % 10 == 0 else ("   " if i % 10 == 1 else f"text {i}")) for i in range(120)]
    df = spark.createDataFrame(rows, "id long, text string")
    clf = classifier(sim_catalogue, idCol="id", accuracyTarget=0.8)
    out = df.transform(clf).toPandas().sort_values("id")
    assert len(out) == 120
    blank = out["text"].isna() | (out["text"].fillna("").str.strip() == "")
    assert blank.sum() == 24
    assert (out.loc[blank, "prediction_error"] == "empty text").all()
    assert (out.loc[blank, "prediction_cost"] == 0).all() and out.loc[blank, "prediction"].isna().all()
    assert out.loc[~blank, "prediction"].notna().all()
    assert clf.lastRun.n_rows == 120 and clf.lastRun.n_valid == 96


def test_bad_input_columns(spark, sim_catalogue):
    df = spark.createDataFrame([(1, 2)], "id long, text long")
    with pytest.raises(ConfigurationError, match="textCol 'text' must be a string column"):
        df.transform(classifier(sim_catalogue))
    with pytest.raises(ValueError, match="textCol 'body' is not a column"):
        df.transform(classifier(sim_catalogue, textCol="body"))
    with pytest.raises(ValueError, match="idCol 'key' is not a column"):
        spark.createDataFrame([("a",)], "text string").transform(classifier(sim_catalogue, idCol="key"))
    with pytest.raises(ValueError, match="outputCol"):
        spark.createDataFrame([("a", "b")], "text string, prediction string").transform(classifier(sim_catalogue))
    with pytest.raises(ValueError, match="referenceModel 'gpt-5'"):
        spark.createDataFrame([("a",)], "text string").transform(classifier(sim_catalogue, referenceModel="gpt-5"))


def test_empty_dataframe(spark, sim_catalogue):
    out = spark.createDataFrame([], "id long, text string").transform(classifier(sim_catalogue))
    assert out.count() == 0 and out.columns[-1] == "prediction_escalated"


def test_one_model_catalogue_runs_the_reference_on_everything(spark, sim_server):
    sim_server.reset_counters()
    catalogue = simulated_catalogue(sim_server.base_url, models=["gpt-4"])
    clf = classifier(catalogue, idCol="id")
    out = text_frame(spark, 60, prefix="solo").transform(clf).toPandas()
    assert (out["prediction_model"] == "gpt-4").all() and out["prediction"].notna().all()
    assert clf.lastPlan.fractions == {"gpt-4": 1.0} and clf.lastProfile.n_profiled == 0
    assert sim_server.counters()["gpt-4"]["requests"] == 60


def test_failures_escalate_and_nothing_is_lost(spark):
    from smart_spark.testing import FaultConfig, StandInServer

    faults = FaultConfig(rate_500=0.3)
    with StandInServer(simulated_backend(), faults=faults, seed=3) as server:
        catalogue = simulated_catalogue(server.base_url)
        clf = classifier(catalogue, idCol="id", maxRetries=0, accuracyTarget=0.8, seed=5, maxErrorRate=1.0)
        out = text_frame(spark, 300, prefix="faulty").transform(clf).toPandas()
        plan = clf.lastPlan
        assert len(out) == 300 and out["id"].is_unique
        failed = out["prediction_model"].isna()
        assert failed.any() and (~failed).sum() > 200
        assert out.loc[failed, "prediction_error"].str.startswith("all models failed").all()
        assert out.loc[failed, "prediction"].isna().all()
        # an answered row never names a label it was not given; errors only where nothing answered
        assert out.loc[~failed, "prediction_error"].isna().all()
        prompts = prompts_of(out["text"], clf.getPromptTemplate(), SIM_LABELS)
        consumed = {str(k) for k in clf.lastRun.consumed_keys}
        assert len(consumed) > len(clf.lastRun.profiled_keys)  # some reference calls failed while profiling
        for row_id, text, prompt in zip(out["id"], out["text"], prompts):
            key = row_key(row_id, text)
            if key in consumed:
                continue
            first = plan.route(key)
            allowed = {first, *plan.escalation(first)}
            assert set(models_called(server, catalogue.names, prompt)) <= allowed
        # no (model, prompt) was ever paid twice
        assert all(server.answered_count(m, p) <= 1 for m in catalogue.names for p in prompts)
        assert out["prediction_cost"].sum() + clf.lastRun.fit_paid == pytest.approx(
            server_spend(server, catalogue, prompts), rel=1e-9)


def test_spend_cap_is_respected(spark, sim_server, sim_catalogue):
    clf = classifier(sim_catalogue, idCol="id", spendCap=0.05, method="reference")
    out = text_frame(spark, 200, prefix="capped").transform(clf).toPandas()
    assert len(out) == 200
    assert out["prediction_cost"].sum() <= 0.05 * 1.1
    capped = out["prediction_error"].fillna("").str.contains("spend cap")
    assert capped.any() and out.loc[capped, "prediction"].isna().all()


def test_job_descriptions(spark, sim_server, sim_catalogue, monkeypatch):
    seen = []
    sc = spark.sparkContext
    original = sc.setJobDescription
    monkeypatch.setattr(sc, "setJobDescription", lambda value: (seen.append(value), original(value))[1])
    text_frame(spark, 100, prefix="desc").transform(classifier(sim_catalogue, accuracyTarget=0.8)).count()
    assert "SMART profiling: count rows" in seen and "SMART profiling: sample" in seen
    assert sc.getLocalProperty("spark.job.description") is None  # restored afterwards


def test_no_key_in_logs_or_explain(spark, sim_server, sim_catalogue, caplog, capsys):
    assert sim_catalogue.models[0].api_key_env == FAKE_KEY_ENV
    clf = classifier(sim_catalogue, idCol="id", accuracyTarget=0.8)
    with caplog.at_level(logging.DEBUG):
        out = text_frame(spark, 100, prefix="secret").transform(clf)
        out.explain(True)
        rows = out.collect()
    text = caplog.text + capsys.readouterr().out + clf.explainParams() + clf.lastSummary() + str(rows)
    assert len(rows) == 100
    assert FAKE_KEY not in text
