"""Confidence from log-probabilities: catalogue field, client request, stand-in server replay/simulation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from smart_spark.catalogue import CatalogueError, ModelCatalogue, ModelSpec
from smart_spark.llm import LLMClient
from smart_spark.llm.confidence import label_confidence
from smart_spark.testing import ReplayBackend, SimulatedBackend, StandInServer, with_base_url
from smart_spark.testing.backends import SimulatedModel
from smart_spark.testing.cascade_replay import convert

REPO = Path(__file__).resolve().parents[1]
COURT = REPO.parent / "shared" / "data" / "cascade" / "court_opinion.csv"


def _catalogue(top_logprobs: int) -> ModelCatalogue:
    return ModelCatalogue.from_dicts(
        [
            {"name": "cheap", "input_price_per_1m": 0.15, "output_price_per_1m": 0.6, "top_logprobs": top_logprobs},
            {"name": "reference", "input_price_per_1m": 2.5, "output_price_per_1m": 10.0},
        ]
    )


def test_catalogue_top_logprobs_field_round_trips_and_is_checked():
    spec = ModelSpec.from_dict({"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1, "top_logprobs": 5})
    assert spec.top_logprobs == 5 and ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict({"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1}).top_logprobs == 0
    with pytest.raises(CatalogueError, match="'m'.*top_logprobs"):
        ModelSpec.from_dict({"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1, "top_logprobs": 50})


def test_label_confidence_sums_tokens_of_a_label_and_skips_formatting_tokens():
    content = [
        {"token": '"', "logprob": 0.0, "top_logprobs": []},
        {
            "token": "Yes",
            "logprob": np.log(0.6),
            "top_logprobs": [
                {"token": "Yes", "logprob": np.log(0.6)},
                {"token": " yes", "logprob": np.log(0.2)},
                {"token": "No", "logprob": np.log(0.1)},
                {"token": "Maybe", "logprob": np.log(0.1)},
            ],
        },
    ]
    assert label_confidence(content, "Yes", ["Yes", "No"]) == pytest.approx(0.8 / 0.9)
    assert label_confidence(None, "Yes", ["Yes", "No"]) is None
    assert label_confidence(content, None, ["Yes", "No"]) is None


@pytest.fixture()
def court_replay(tmp_path):
    if not COURT.exists():
        pytest.skip(f"shared data not available: {COURT} (run inside the project workspace)")
    replay = tmp_path / "court.csv"
    convert(COURT, replay)
    return replay


def test_replayed_cheap_model_returns_its_recorded_confidence(court_replay):
    with open(court_replay, newline="") as handle:
        rows = list(csv.DictReader(handle))[:40]
    with StandInServer(ReplayBackend.from_csv(court_replay)) as server:
        with LLMClient(with_base_url(_catalogue(2), server.base_url), ["yes", "no"], timeout=5.0) as llm:
            results = llm.complete_batch("cheap", [r["query"] for r in rows])
            plain = llm.complete_batch("reference", [r["query"] for r in rows[:3]])
    for row, result in zip(rows, results):
        assert result.label == row["cheap_answer"]
        assert result.confidence == pytest.approx(float(row["cheap_confidence"]), rel=1e-9, abs=1e-12)
    assert all(r.confidence is None and r.ok for r in plain)  # no top_logprobs in its catalogue entry


def test_client_asks_for_logprobs_only_where_the_catalogue_says(court_replay):
    with StandInServer(ReplayBackend.from_csv(court_replay)) as server:
        with LLMClient(with_base_url(_catalogue(0), server.base_url), ["yes", "no"], timeout=5.0) as llm:
            (result,) = llm.complete_batch("cheap", ["0"])
    assert result.ok and result.confidence is None


@pytest.mark.parametrize("kind", ["calibrated", "overconfident", "unrelated"])
def test_simulated_confidence_kinds(kind):
    backend = SimulatedBackend(
        labels=("yes", "no"),
        models={"reference": SimulatedModel(1.0), "cheap": SimulatedModel(0.8, confidence=kind)},
        reference="reference",
    )
    prompts = [f"item {i}" for i in range(4000)]
    conf = np.array([backend.confidence_for("cheap", p) for p in prompts])
    agrees = np.array([backend.label_for("cheap", p) == backend.reference_label(p) for p in prompts])
    high = conf >= np.quantile(conf, 0.75)
    if kind == "calibrated":
        assert abs(agrees[high].mean() - conf[high].mean()) < 0.03
        assert abs(agrees.mean() - conf.mean()) < 0.03
    elif kind == "overconfident":
        assert conf[~agrees].mean() - agrees[~agrees].mean() > 0.5
        assert conf.mean() > agrees.mean() + 0.1
    else:
        assert abs(agrees[high].mean() - agrees.mean()) < 0.04


def test_simulated_server_sends_openai_logprobs_shape():
    backend = SimulatedBackend(
        labels=("yes", "no"),
        models={"reference": SimulatedModel(1.0), "cheap": SimulatedModel(0.8, confidence="calibrated")},
        reference="reference",
    )
    with StandInServer(backend) as server:
        with LLMClient(with_base_url(_catalogue(2), server.base_url), ["yes", "no"], timeout=5.0) as llm:
            results = llm.complete_batch("cheap", [f"item {i}" for i in range(20)])
    for i, result in enumerate(results):
        assert result.confidence == pytest.approx(backend.confidence_for("cheap", f"item {i}"), rel=1e-9)


def test_cascade_through_client_and_replay_server_matches_the_array_path(court_replay):
    """End to end without Spark: the certificate paid through HTTP equals the one on the arrays."""
    from smart_spark.engine.cascade import certify_cascade
    from smart_spark.engine.cascade_data import load_dataset
    from smart_spark.engine.cascade_source import cascade_profile

    data = load_dataset(COURT)
    with StandInServer(ReplayBackend.from_csv(court_replay)) as server:
        with LLMClient(with_base_url(_catalogue(2), server.base_url), ["yes", "no"], timeout=5.0) as llm:

            def answer_source(model, positions):
                return llm.complete_batch(model, [data.ids[p] for p in positions])

            over_http = certify_cascade(
                len(data.ids), cascade_profile(answer_source, "cheap", "reference"),
                accuracy_target=0.9, error_budget=0.1, rng=np.random.default_rng(3), cheap_cost_ratio=1 / 16,
            )
            counts = server.counters()
    on_arrays = certify_cascade(
        len(data.ids), lambda p: (data.confidence[p], data.agrees[p]),
        accuracy_target=0.9, error_budget=0.1, rng=np.random.default_rng(3), cheap_cost_ratio=1 / 16,
    )
    assert over_http.threshold == pytest.approx(on_arrays.threshold, rel=1e-12)
    assert np.array_equal(over_http.sampled, on_arrays.sampled)
    kept = over_http.kept(data.confidence)
    assert 1.0 - (kept & ~data.agrees).sum() / kept.size >= 0.9
    # only profiled rows were paid, to both models (the cheap model on the rest only when applied)
    assert counts["reference"]["answered"] == counts["cheap"]["answered"] == over_http.sampled.size
