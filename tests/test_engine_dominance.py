"""The pilot stops calling candidates no plan could choose (``engine/dominance.py``); no Spark."""

from __future__ import annotations

import numpy as np
import pytest

from smart_spark.engine import SmartConfig, SmartEngine
from smart_spark.engine.dominance import dominated_candidates, envelope_at
from smart_spark.engine.profiler import AnswerArrays


def test_envelope_is_the_best_mix_at_a_cost():
    points = [(0.1, 0.8), (1.0, 1.0)]
    assert envelope_at(0.55, points) == pytest.approx(0.9)  # halfway between the two
    assert envelope_at(0.05, points) == -np.inf  # nothing is that cheap
    assert envelope_at(0.2, [(0.1, 0.95), (0.3, 0.5), (1.0, 1.0)]) >= 0.95  # a cheaper, better point alone


def test_a_dear_and_worse_candidate_is_dominated_only_when_the_counts_show_it():
    costs = {"cheap": 0.1, "dear": 0.6, "worse_cheaper": 0.05}
    clear = {"cheap": (40, 40), "dear": (40, 24), "worse_cheaper": (40, 20)}
    assert dominated_candidates(clear, costs, reference_cost=1.0) == ["dear"]
    # A dear model that has agreed so far may still be the best: it stays.
    unclear = {"cheap": (10, 10), "dear": (10, 10), "worse_cheaper": (10, 5)}
    assert dominated_candidates(unclear, costs, reference_cost=1.0) == []
    # The cheapest candidate is never dropped (it may be the cheap end of a mix), nor a cheap one.
    assert "worse_cheaper" not in dominated_candidates(clear, costs, reference_cost=1.0)
    cheap_pair = {"cheap": 0.01, "dear": 0.05, "worse_cheaper": 0.005}
    assert dominated_candidates(clear, cheap_pair, reference_cost=1.0) == []
    # Dearer than the reference: never worth a call.
    assert dominated_candidates({"x": (1, 1)}, {"x": 2.0}, reference_cost=1.0) == ["x"]


def test_a_dominated_candidate_leaves_the_pilot_and_stays_out_of_the_plan():
    """A dear model that always disagrees is called on part of the pilot only; the choice is the same."""
    n = 20_000
    rng = np.random.default_rng(3)
    good = rng.random(n) < 0.95
    calls = {}

    def source(model, positions):
        positions = np.asarray(positions)
        calls[model] = calls.get(model, 0) + len(positions)
        agree = {"ref": np.ones(len(positions), bool), "good": good[positions],
                 "useless": np.zeros(len(positions), bool), "cheap": good[positions]}[model]
        price = {"ref": 1.0, "good": 0.1, "useless": 0.6, "cheap": 0.02}[model]
        ok = np.ones(len(positions), bool)
        return AnswerArrays(keys=agree, costs=np.full(len(positions), price), ok=ok)

    config = SmartConfig(0.9, 0.95, batch_size=4096)
    result = SmartEngine(config, ["good", "useless", "cheap", "ref"], "ref", solver="enumerate").run(n, n, source)
    pilot = result.profile.pilot_size
    assert calls["useless"] < pilot <= calls["good"], (calls, pilot)
    assert result.profile.stats["useless"].pilot_n < pilot
    assert result.plan.fractions.get("useless", 0.0) == 0.0


def test_an_excluded_model_is_never_confirmed():
    from smart_spark.engine.payoff import PilotSummary, decide_confirmation

    common = dict(unit_costs={"best": 0.001, "other": 0.002, "ref": 0.03}, reference="ref", n_total=100_000,
                  n_profiled=30, accuracy_target=0.9, budget=0.05, max_more=99_970)
    alone = decide_confirmation(PilotSummary(**common, counts={"other": (30, 29)}), "mix")
    kept = decide_confirmation(PilotSummary(**common, counts={"best": (30, 30), "other": (30, 29)}), "mix")
    excluded = decide_confirmation(
        PilotSummary(**common, counts={"best": (30, 30), "other": (30, 29)}, excluded=("best",)), "mix")
    assert "best" in kept.alphas and "best" not in excluded.alphas
    assert set(excluded.alphas) == {"other"} and set(alone.alphas) == {"other"}


def test_a_pilot_with_only_cheap_candidates_runs_in_one_go():
    """No candidate may leave (all under a tenth of the reference): one pilot call per model, as before."""
    batches = []

    def source(model, positions):
        batches.append((model, len(positions)))
        ok = np.ones(len(positions), bool)
        return AnswerArrays(keys=ok, costs=np.full(len(positions), {"ref": 1.0, "a": 0.05, "b": 0.01}[model]), ok=ok)

    config = SmartConfig(0.9, 0.95, batch_size=4096, pilot_size=40, max_profile=40)
    SmartEngine(config, ["a", "b", "ref"], "ref", solver="enumerate", prices={"ref": 1.0, "a": 0.05, "b": 0.01}).run(
        10_000, 10_000, source)
    assert sorted(batches) == [("a", 40), ("b", 40), ("ref", 40)]
