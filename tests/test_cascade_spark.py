"""End to end through Spark: a catalogue whose cheap model gives log-probabilities -> a certified cascade.

The stand-in server replays court_opinion (the cheap model's recorded answer and
confidence, the reference's answer) for 400 rows. The fit certifies a cascade
threshold on the profiled rows beside the plain mix and keeps the cascade (the
plain mix of a 0.79-agreeing model cannot compete); the apply phase keeps the
cheap answer at or above the threshold and escalates the rest to the reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from smart_spark import SmartLLMClassifier
from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine.cascade import certify_cascade, pool_looks
from smart_spark.engine.cascade_data import load_dataset
from smart_spark.spark.cascade_fit import CASCADE_BUDGET_SHARE
from smart_spark.spark.model import SmartLLMClassifierModel
from smart_spark.testing import ReplayBackend, StandInServer, with_base_url
from smart_spark.testing.cascade_replay import LABELS, convert

COURT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cascade" / "court_opinion.csv"
N_ROWS, TARGET, CONFIDENCE = 400, 0.9, 0.9


@pytest.fixture(scope="module")
def court():
    if not COURT.exists():
        pytest.skip(f"shared data not available: {COURT} (run inside the project workspace)")
    data = load_dataset(COURT)
    assert data.ids[:N_ROWS] == [str(i) for i in range(N_ROWS)]
    return data


def _engine_kept_shares(data, runs: int = 200) -> np.ndarray:
    """The engine's kept share on the same rows, budget and looks, over random profiling orders."""
    conf, agrees = data.confidence[:N_ROWS], data.agrees[:N_ROWS]
    budget = (1 - CONFIDENCE) * CASCADE_BUDGET_SHARE
    shares = []
    for seed in range(runs):
        result = certify_cascade(
            N_ROWS, lambda p: (conf[p], agrees[p]), accuracy_target=TARGET, error_budget=budget,
            rng=np.random.default_rng(0), cheap_cost_ratio=1 / 16,
            schedule=pool_looks(N_ROWS, N_ROWS, budget, TARGET), order=np.random.default_rng(seed).permutation(N_ROWS),
        )
        shares.append(result.kept(conf).mean())
    return np.array(shares)


@pytest.mark.slow
def test_cascade_end_to_end_through_spark(spark, court, tmp_path):
    replay = tmp_path / "court.csv"
    convert(COURT, replay)
    catalogue = ModelCatalogue.from_dicts([
        {"name": "cheap", "input_price_per_1m": 0.15, "output_price_per_1m": 0.6, "top_logprobs": 2},
        {"name": "reference", "input_price_per_1m": 2.5, "output_price_per_1m": 10.0},
    ])
    df = spark.createDataFrame([(i, str(i)) for i in range(N_ROWS)], "id long, text string").repartition(2)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with StandInServer(ReplayBackend.from_csv(replay)) as server:
        clf = SmartLLMClassifier(
            labels=list(LABELS), models=with_base_url(catalogue, server.base_url), referenceModel="reference",
            accuracyTarget=TARGET, confidence=CONFIDENCE, idCol="id", promptTemplate="{text}", seed=5,
            answersPath=str(tmp_path / "answers"), mlflowLogging="always", mlflowTrackingUri=uri,
            mlflowExperiment="cascade",
        )
        model = clf.fit(df)
        out = model.transform(df).cache()
        rows = out.toPandas().sort_values("id").reset_index(drop=True)
        summary = model.summarize(out)
        fit_counts = server.counters()

        # saved and loaded: the same cascade, the same answers, nothing paid again
        path = str(tmp_path / "model")
        model.write().overwrite().save(path)
        loaded = SmartLLMClassifierModel.load(path)
        again = loaded.transform(df).toPandas().sort_values("id").reset_index(drop=True)
        assert server.counters() == fit_counts

    cascade = model.state.cascade
    assert cascade is not None and cascade["model"] == "cheap" and math.isfinite(cascade["threshold"])
    assert model.plan.method == "cascade" and loaded.state.cascade == cascade
    assert list(again["prediction_model"]) == list(rows["prediction_model"]) and not again["prediction_paid"].any()
    threshold = cascade["threshold"]

    ids = rows["id"].to_numpy()
    conf, cheap, reference = court.confidence[ids], court.cheap[ids], court.reference[ids]
    profiled = np.array([k.split("|", 1)[0] for k in model.state.profiled], dtype=int)
    is_profiled = np.isin(ids, profiled)
    # profiled rows: the reference's answer from profiling, not paid again
    assert (rows.loc[is_profiled, "prediction_model"] == "reference").all()
    assert not rows.loc[is_profiled, "prediction_paid"].any()
    # the rest: the cheap answer stands exactly at or above the threshold, else escalated to the reference
    rest = ~is_profiled
    kept = rest & (conf >= threshold)
    assert (rows.loc[kept, "prediction_model"] == "cheap").all() and not rows.loc[kept, "prediction_escalated"].any()
    assert (rows.loc[kept, "prediction"].to_numpy() == np.array(LABELS)[cheap[kept]]).all()
    escalated = rest & ~kept
    assert (rows.loc[escalated, "prediction_model"] == "reference").all()
    assert rows.loc[escalated, "prediction_escalated"].all()
    assert (rows.loc[~is_profiled, "prediction"].to_numpy() != None).all()  # noqa: E711 - every row answered
    assert rows["prediction"].to_numpy()[~kept].tolist() == np.array(LABELS)[reference[~kept]].tolist()
    # every call paid once: cheap on profiled rows it was asked on and every unprofiled row; reference never twice
    assert fit_counts["cheap"]["answered"] <= N_ROWS
    assert fit_counts["reference"]["answered"] == is_profiled.sum() + escalated.sum()
    cheap_cost = rows.loc[kept, "prediction_cost"].mean()
    assert (rows.loc[escalated, "prediction_cost"] > 10 * cheap_cost).all()  # the cheap call counted too

    # the promise on this run, and the engine's kept share within noise
    agreement = np.mean(rows["prediction"].to_numpy() == np.array(LABELS)[reference])
    assert agreement >= TARGET
    engine = _engine_kept_shares(court)
    realised = kept.mean()
    assert abs(realised - engine.mean()) <= 3 * engine.std() + 1e-9, (realised, engine.mean(), engine.std())
    assert summary["cascade_kept_share"]["cheap"] == pytest.approx(realised)
    assert summary["escalated_rows"] == escalated.sum()

    # MLflow: the threshold and the share the cascade kept
    from mlflow import MlflowClient

    metrics = MlflowClient(tracking_uri=uri).get_run(model.run.mlflow_run_id).data.metrics
    assert metrics["cascade.threshold.cheap"] == pytest.approx(threshold)
    assert metrics["realised_cascade_kept_share.cheap"] == pytest.approx(realised)
    assert metrics["cascade.expected_kept_share.cheap"] == pytest.approx(cascade["expected_kept_share"])
