"""Bad input and failure: loud errors before paying, an error-rate limit, ids that share text, oversized rows."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import SIM_LABELS, simulated_backend, simulated_catalogue, text_frame
from smart_checks import prompts_of
from smart_spark import ModelCatalogue, SmartLLMClassifier
from smart_spark.errors import ConfigurationError, ErrorRateExceeded, ProfilingError, find_smart_error

pytest.importorskip("smart_spark.store")


def classifier(catalogue, answers, **kw):
    base = dict(labels=SIM_LABELS, models=catalogue, referenceModel="gpt-4", accuracyTarget=0.85, idCol="id",
                answersPath=str(answers), mlflowLogging="never", maxRetries=0)
    base.update(kw)
    return SmartLLMClassifier(**base)


def with_reference_at(catalogue: ModelCatalogue, base_url: str) -> ModelCatalogue:
    return ModelCatalogue(tuple(dataclasses.replace(s, base_url=base_url) if s.name == "gpt-4" else s
                                for s in catalogue))


def test_reference_failing_in_profiling_is_a_profiling_error(spark, sim_server, sim_catalogue, tmp_path):
    from smart_spark.testing import FaultConfig, StandInServer

    with StandInServer(simulated_backend(), faults=FaultConfig(rate_500=1.0)) as broken:
        catalogue = with_reference_at(sim_catalogue, broken.base_url)
        clf = classifier(catalogue, tmp_path / "answers")
        with pytest.raises(ProfilingError, match="reference model gpt-4.*HTTP 500"):
            text_frame(spark, 300, prefix="no reference").transform(clf)
        assert clf.lastModel is None  # nothing to apply


def test_error_rate_limit_fails_the_action_and_keeps_paid_answers(spark, sim_server, sim_catalogue, tmp_path):
    from smart_spark.testing import FaultConfig, StandInServer

    answers = tmp_path / "answers"
    df = text_frame(spark, 240, prefix="error rate")
    model = classifier(sim_catalogue, answers, accuracyTarget=0.8, seed=2).fit(df)
    with StandInServer(simulated_backend(), faults=FaultConfig(rate_500=0.6), seed=1) as flaky:
        failing = model.copy().setModels(simulated_catalogue(flaky.base_url))
        with pytest.raises(Exception) as caught:
            failing.transform(df).collect()
        error = find_smart_error(caught.value)
        assert isinstance(error, ErrorRateExceeded), caught.value
        assert "maxErrorRate 0.05" in str(error) and "HTTP 500" in str(error) and "model " in str(error)
        paid_by_flaky = {m: c["answered"] for m, c in flaky.counters().items()}
    assert sum(paid_by_flaky.values()) > 0
    # the rerun (healthy endpoint) pays only for what the failed action did not get
    sim_server.reset_counters()
    out = model.transform(df).toPandas()
    assert out["prediction"].notna().all() and len(out) == 240
    prompts = prompts_of(out["text"], model.getPromptTemplate(), SIM_LABELS)
    reused = int((~out["prediction_paid"]).sum())
    assert reused >= model.profile.n_profiled + 1  # profiled rows and answers the failed action paid
    assert all(c["answered"] == c["distinct_prompts"] for c in sim_server.counters().values())
    assert len(prompts) == 240


def test_rows_sharing_an_id_but_not_the_text_never_share_an_answer(spark, sim_server, sim_catalogue, tmp_path):
    rows = [(i // 2, f"shared id {i // 2} text variant {i % 2}") for i in range(160)]
    df = spark.createDataFrame(rows, "id long, text string")
    clf = classifier(sim_catalogue, tmp_path / "answers", accuracyTarget=0.8)
    out = df.transform(clf).toPandas()
    backend = sim_server.backend
    prompts = prompts_of(out["text"], clf.getPromptTemplate(), SIM_LABELS)
    for model, prompt, prediction in zip(out["prediction_model"], prompts, out["prediction"]):
        from smart_spark.llm.labels import normalise_label

        assert prediction == normalise_label(backend.answer(model, prompt).text, SIM_LABELS)
    assert len(set(prompts)) == 160 and len(out) == 160


def test_oversized_rows_truncate_error_or_fail(spark, sim_server, sim_catalogue, tmp_path, caplog):
    import logging

    long_text = "a very long clause " * 40
    rows = [(i, long_text + str(i) if i % 20 == 0 else f"short text {i}") for i in range(120)]
    df = spark.createDataFrame(rows, "id long, text string")
    limit = 200

    with pytest.raises(ConfigurationError, match="6 of 120 rows .* maxPromptChars=200"):
        df.transform(classifier(sim_catalogue, tmp_path / "a", maxPromptChars=limit, oversizePolicy="fail"))
    assert sum(c["requests"] for c in sim_server.counters().values()) == 0  # nothing paid

    clf = classifier(sim_catalogue, tmp_path / "b", maxPromptChars=limit, oversizePolicy="error", accuracyTarget=0.8)
    out = df.transform(clf).toPandas()
    long_rows = out["text"].str.len() > 100
    assert out.loc[long_rows, "prediction_error"].str.startswith("prompt longer than maxPromptChars").all()
    assert out.loc[long_rows, "prediction"].isna().all() and out.loc[~long_rows, "prediction"].notna().all()
    assert clf.lastRun.n_valid == 114 and clf.lastRun.oversize_rows == 6

    sim_server.reset_counters()
    with caplog.at_level(logging.WARNING, logger="smart_spark"):
        clf = classifier(sim_catalogue, tmp_path / "c", maxPromptChars=limit, accuracyTarget=0.8)
        out = df.transform(clf).toPandas()
    assert "6 of 120 rows have a prompt longer than maxPromptChars=200" in caplog.text
    assert out["prediction"].notna().all()
    spec = clf.lastModel.applySpec(clf.catalogue(), "{}", )
    truncated = [spec.prompt(t) for t in out.loc[long_rows, "text"]]
    assert all(len(p) <= limit for p in truncated)
    assert all(any(sim_server.answered_count(m, p) for m in sim_catalogue.names) for p in truncated)


def test_summary_says_whether_nulls_keep_the_promise(spark, sim_server, sim_catalogue, tmp_path):
    out_model = classifier(sim_catalogue, tmp_path / "answers", accuracyTarget=0.8).fit(
        text_frame(spark, 200, prefix="promise"))
    out = out_model.transform(text_frame(spark, 200, prefix="promise")).cache()
    summary = out_model.summarize(out, log=False)
    assert summary["null_rows_with_text"] == 0 and summary["failure_slack_rows"] >= 0
    assert summary["promise_kept"] is True
    assert summary["paid_rows"] + summary["reused_rows"] == 200
