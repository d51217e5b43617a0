"""executionMode="batch" end to end on Spark: the apply phase through the stand-in's Batch API."""

from __future__ import annotations

import dataclasses

import pytest
from pyspark.sql import functions as F

from conftest import SIM_LABELS, simulated_backend, simulated_catalogue, text_frame
from smart_spark import SmartLLMClassifier
from smart_spark.testing import StandInServer
from smart_spark.testing.batch_api import BatchConfig


def test_batch_mode_end_to_end_at_half_price_with_a_failed_line_and_no_row_lost(spark, tmp_path):
    with StandInServer(simulated_backend(), batch=BatchConfig(completion_delay_s=0.2, fail_every=4)) as server:
        catalogue = simulated_catalogue(server.base_url)
        catalogue = type(catalogue)(tuple(dataclasses.replace(s, batch_discount=0.5) for s in catalogue))
        df = text_frame(spark, 40)
        clf = SmartLLMClassifier(
            idCol="id", labels=SIM_LABELS, models=catalogue, referenceModel="gpt-4", method="single",
            accuracyTarget=0.8, pilotSize=12, mlflowLogging="never", executionMode="batch",
            answersPath=str(tmp_path / "batch"),
        )
        model = clf.fit(df)
        assert model.getExecutionMode() == "batch"
        batch = model.transform(df).select("id", "prediction", "prediction_model", "prediction_cost",
                                           "prediction_error", "prediction_paid").toPandas()
        created = server.batch_api.created_batches()
        answered_in_batches = sum(c["answered"] for c in server.counters().values())

        online = model.copy().setExecutionMode("online").setAnswersPath(str(tmp_path / "online"))
        reference = online.transform(df).select("id", "prediction", "prediction_cost").toPandas()

    assert len(batch) == 40 and batch["prediction_error"].isna().all()  # every row, the failed lines retried
    assert created and answered_in_batches > 0
    joined = batch.merge(reference, on="id", suffixes=("", "_online"))
    assert (joined["prediction"] == joined["prediction_online"]).all()
    paid = joined[joined["prediction_paid"]]
    assert len(paid) > 0
    ratio = paid["prediction_cost"] / paid["prediction_cost_online"]
    assert ratio.apply(lambda r: r == pytest.approx(0.5) or r == pytest.approx(1.0)).all()
    assert ratio.apply(lambda r: r == pytest.approx(1.0)).sum() >= 1  # a line failed in its batch, bought on-line
    assert (ratio < 0.75).sum() > (ratio > 0.75).sum()

