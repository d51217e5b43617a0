"""The operator's ``prices=`` for the engine: per-row prices from the catalogue, and what they decide."""

from __future__ import annotations

import numpy as np
import pytest

from smart_spark import ModelCatalogue, ModelSpec
from smart_spark.engine import SmartConfig, SmartEngine
from smart_spark.engine.profiler import AnswerArrays
from smart_spark.llm.spend import estimated_prompt_tokens
from smart_spark.spark.fitting import row_prices


def _catalogue(prices: dict[str, tuple[float, float]]) -> ModelCatalogue:
    return ModelCatalogue(tuple(
        ModelSpec(name=m, input_price_per_token=i / 1e6, output_price_per_token=o / 1e6, base_url="http://127.0.0.1:1/v1")
        for m, (i, o) in prices.items()
    ))


def test_row_prices_use_the_sampled_prompts_and_a_short_completion():
    catalogue = _catalogue({"big": (30.0, 60.0), "small": (2.0, 2.0)})
    prompts = ["a" * 300, "b" * 600, None]  # None: an oversized row, no call, no estimate
    prices = row_prices(catalogue, prompts, ["Yes", "No"], system_prompt="sys")
    tokens = (estimated_prompt_tokens("a" * 300, "sys") + estimated_prompt_tokens("b" * 600, "sys")) / 2
    completion = 2  # "Yes" is one token at 3 characters per token, plus one
    assert prices["big"] == pytest.approx(tokens * 30e-6 + completion * 60e-6)
    assert prices["small"] == pytest.approx(tokens * 2e-6 + completion * 2e-6)
    assert row_prices(catalogue, [None], ["Yes", "No"]) == {}


def test_prices_from_the_catalogue_let_the_engine_skip_profiling_that_cannot_pay():
    """Candidates barely cheaper than the reference: at N = 300 the pilot could never pay back."""
    catalogue = _catalogue({"ref": (10.0, 10.0), "a": (9.5, 9.5), "b": (9.7, 9.7)})
    prices = row_prices(catalogue, ["some review text " * 20] * 5, ["positive", "negative"])
    asked: list[str] = []

    def answers(model, positions):
        asked.append(model)
        ok = np.ones(len(positions), dtype=bool)
        return AnswerArrays(keys=ok, costs=np.full(len(positions), prices[model]), ok=ok)

    config = SmartConfig(0.9, 0.95)
    priced = SmartEngine(config, list(prices), "ref", prices=prices).run(300, 300, answers)
    assert asked == [] and set(priced.plan.fractions) == {"ref"}
    assert "pay" in priced.profile.reason  # the log and MLflow say why
    unpriced = SmartEngine(config, list(prices), "ref").run(300, 300, answers)
    assert {"a", "b"} <= set(asked), "without prices the pilot calls every candidate"
    assert unpriced.profile.spent > priced.profile.spent


def test_the_operator_passes_catalogue_prices_to_the_engine(spark, sim_server):
    """Candidates priced next to the reference: the fit runs the reference alone, no candidate is called."""
    import dataclasses

    from conftest import SIM_LABELS, simulated_catalogue, text_frame
    from smart_spark import SmartLLMClassifier

    sim_server.reset_counters()
    catalogue = simulated_catalogue(sim_server.base_url)
    reference = catalogue["gpt-4"]
    near = ModelCatalogue(tuple(
        s if s.name == "gpt-4" else dataclasses.replace(
            s, input_price_per_token=0.97 * reference.input_price_per_token,
            output_price_per_token=0.97 * reference.output_price_per_token)
        for s in catalogue
    ))
    clf = SmartLLMClassifier(labels=SIM_LABELS, models=near, referenceModel="gpt-4", accuracyTarget=0.9,
                             mlflowLogging="never", idCol="id")
    clf.fit(text_frame(spark, 200, partitions=2))
    assert "pay" in clf.lastProfile.reason
    called = {m for m, c in sim_server.counters().items() if c["requests"]}
    assert called <= {"gpt-4"}, called
