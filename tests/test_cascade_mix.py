"""The fit's mix of plain models and cascades without Spark: one sample, the planner, the apply chain, day two."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine import Plan, SmartConfig
from smart_spark.llm.client import CallResult
from smart_spark.spark.apply import ApplySpec, process_batch
from smart_spark.spark.cascade_mix import CascadeSource, engine_with_cascade, mix_cascades, offers_cascade_mix
from smart_spark.spark.state import DataFingerprint, FittedState, cascade_entries

CATALOGUE = ModelCatalogue.from_dicts([
    {"name": "cheap", "input_price_per_1m": 0.15, "output_price_per_1m": 0.6, "top_logprobs": 2},
    {"name": "mid", "input_price_per_1m": 1.0, "output_price_per_1m": 4.0},
    {"name": "ref", "input_price_per_1m": 2.5, "output_price_per_1m": 10.0},
])
COSTS = {"cheap": 0.01, "mid": 0.08, "ref": 0.16}


class Ans:
    def __init__(self, label, confidence, cost, error=None):
        self.label, self.raw, self.error, self.confidence, self.cost = label, label, error, confidence, cost


def _population(n: int, seed: int):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    cheap_agrees = rng.uniform(size=n) < confidence  # calibrated, about 0.75
    mid_agrees = rng.uniform(size=n) < 0.8
    return confidence, cheap_agrees, mid_agrees


def test_the_engine_gets_the_cascade_beside_plain_models_on_the_rows_after_the_certificate():
    n, k = 4000, 300
    confidence, cheap_agrees, mid_agrees = _population(n, 3)
    asked: dict[str, list[int]] = {}
    answers: dict = {}

    def source(model, positions):
        asked.setdefault(model, []).extend(int(p) for p in positions)
        if model == "cheap":
            out = [Ans("yes" if cheap_agrees[p] else "no", confidence[p], 0.01) for p in positions]
        elif model == "mid":
            out = [Ans("yes" if mid_agrees[p] else "no", None, 0.08) for p in positions]
        else:
            out = [Ans("yes", None, 0.16) for _ in positions]
        answers.update({(model, int(p)): a for p, a in zip(positions, out)})
        return out

    source("cheap", range(k)), source("ref", range(k))  # what the one-cascade certificate paid
    asked.clear()
    assert offers_cascade_mix(CATALOGUE, "ref", "mix") and not offers_cascade_mix(CATALOGUE, "ref", "single")
    config = SmartConfig(0.9, 0.95)
    result, cascades = engine_with_cascade(
        source, answers, cascade_model="cheap", first_rows=k, models=CATALOGUE.names, reference="ref", n_valid=n,
        pool_size=2000, config=config, prices=COSTS, solver="enumerate")
    threshold = cascades["cheap"]["threshold"]
    assert 0.5 < threshold < 1.0
    assert cascades["cheap"]["kept_rate"] == pytest.approx(np.mean(confidence[:k] >= threshold))
    # the engine asked only rows after the certificate's, each paid once
    assert all(k <= p < 2000 for ps in asked.values() for p in ps)
    assert all(len(set(ps)) == len(ps) for ps in asked.values())
    profile, plan = result.profile, result.plan
    assert profile.n_total == n and plan.n_total == n and plan.accuracy_target == 0.9
    assert profile.positions.min() >= k
    # the engine's statistics of "cheap" are the cascade's: kept and agreeing, or the reference's answer
    stats = profile.stats["cheap"]
    seen = np.asarray(profile.positions)
    flags = (confidence < threshold) | cheap_agrees
    assert stats.n + stats.pilot_n > 0
    assert stats.agreements + stats.pilot_agreements <= int(flags[seen].sum())
    # the profile's spend is what was paid: an escalated row's reference call counted once
    assert profile.spent == pytest.approx(sum(a.cost for (_, p), a in answers.items() if p >= k))
    assert stats.unit_cost > COSTS["cheap"]  # while the cascade's planning cost pays both calls
    assert plan.fractions.get("cheap", 0.0) > 0.5 and plan.agreement_bound >= 0.9 - 1e-9
    entry = mix_cascades(plan, cascades, 0.05, profile)
    state = FittedState(plan_json=plan.to_json(), profile={}, profiled={}, fitted_with={},
                        data=DataFingerprint(1, 1, 1), cascade=entry)
    assert state.cascades == {"cheap": threshold} and state.saved_version == 2
    (c,) = cascade_entries(FittedState.from_json(state.to_json()).cascade)
    assert c["share"] == plan.fractions["cheap"] and c["error_budget"] == plan.alphas["cheap"]


def test_cascade_source_escalates_unsure_rows_to_the_reference_at_both_costs():
    answers = {("cheap", 5): Ans("no", 0.9, 0.01), ("cheap", 6): Ans("no", 0.6, 0.01),
               ("cheap", 7): Ans(None, None, 0.01, error="timeout"), ("ref", 6): Ans("yes", None, 0.16)}
    calls = []

    def source(model, positions):
        calls.append((model, list(positions)))
        return [Ans("yes", None, 0.16) for _ in positions]

    got = CascadeSource(source, answers, "cheap", "ref", 0.8, offset=5)("cheap", [0, 1, 2])
    assert [a.label for a in got] == ["no", "yes", "yes"]
    assert [a.cost for a in got] == pytest.approx([0.01, 0.17, 0.17])
    assert calls == [("ref", [7])]  # the reference's answer to row 6 was already paid
    plain = CascadeSource(source, answers, "cheap", "ref", None, offset=5)("cheap", [1])
    assert plain[0].label == "no"


def test_too_few_certificate_rows_offer_the_model_plain():
    def source(model, positions):
        return [Ans("yes", 0.9 if model == "cheap" else None, COSTS[model]) for _ in positions]

    result, cascades = engine_with_cascade(
        source, {}, cascade_model="cheap", first_rows=10, models=CATALOGUE.names, reference="ref", n_valid=3000,
        pool_size=1000, config=SmartConfig(0.9, 0.95), prices=COSTS, solver="enumerate")
    assert cascades == {} and result.profile.positions.min() >= 10


class Client:
    """cheap: "No" at confidence i/100 for prompt "Q: i"; mid: "Maybe"; ref: "Yes"."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    async def acomplete_batch(self, model, prompts):
        self.calls.extend((model, p) for p in prompts)
        answer = {"cheap": "No", "mid": "Maybe", "ref": "Yes"}[model]
        return [CallResult(model, answer, answer, 3, 1, COSTS[model], None, 1,
                           int(p.split()[-1]) / 100 if model == "cheap" else None) for p in prompts]


def test_a_cascade_beside_a_dearer_plain_model_escalates_straight_to_the_reference():
    plan = Plan(fractions={"cheap": 0.999999, "mid": 0.000001}, reference="ref", accuracy_target=0.9,
                confidence=0.9, remaining_target=0.88, n_total=100, n_remaining=100,
                unit_costs={"cheap": 0.09, "mid": 0.1, "ref": 0.16})
    spec = ApplySpec(plan_json=plan.to_json(), catalogue_yaml="models: []", labels=("Yes", "No", "Maybe"),
                     prompt_template="Q: {text}", cascades={"cheap": 0.5})
    client = Client()
    out = process_batch(spec, [f"k{i}" for i in range(100)], [str(i) for i in range(100)], client=client)
    kept = np.arange(100) >= 50
    assert (out.loc[kept, "model"] == "cheap").all()
    assert (out.loc[~kept, "model"] == "ref").all() and out.loc[~kept, "escalated"].all()
    assert not any(m == "mid" for m, _ in client.calls)  # the plain model never answers a cascade's unsure row
    assert not math.isnan(out["cost"].sum())


def test_day_two_confirms_a_cascade_with_its_saved_threshold_on_fresh_rows():
    from smart_spark.engine.confirm import PlanEstimates, confirm_plan
    from smart_spark.spark.apply import Answer
    from smart_spark.spark.cascade_confirm import CascadeAnswers, cascade_rates, confirmed_cascades

    n = 4000
    confidence, cheap_agrees, _ = _population(n, 8)
    threshold = 0.8
    day_one = Plan(fractions={"cheap": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.9,
                   remaining_target=0.88, n_total=1000, n_remaining=800, unit_costs={"cheap": 0.07, "ref": 0.16},
                   bounds={"cheap": 0.9}, alphas={"cheap": 0.05}, method="cascade", estimates={"cheap": 0.95})
    state = FittedState(plan_json=day_one.to_json(), profile={}, profiled={}, fitted_with={},
                        data=DataFingerprint(1, 1, 1),
                        cascade={"model": "cheap", "threshold": threshold, "expected_kept_share": 0.5,
                                 "profiled_rows": 200, "error_budget": 0.05})
    assert cascade_rates(state, {}) == {"cheap": (200, 190)}
    order = np.random.default_rng(2).permutation(n)

    def paid(model, positions):
        rows = order[np.asarray(positions, dtype=int)]
        if model == "cheap":
            return [Answer("cheap", "yes" if cheap_agrees[r] else "no", None, 0.01, None, True, 0.01, confidence[r])
                    for r in rows]
        return [Answer("ref", "yes", None, 0.16, None, True, 0.16) for _ in rows]

    answers = CascadeAnswers(paid, "ref", state.cascades)
    config = SmartConfig(0.9, 0.9)
    result = confirm_plan(day_one, n, n, answers, config, rates=PlanEstimates(cascade_rates(state, {})))
    asked = answers.asked["cheap"]
    stats = result.profile.stats["cheap"]
    flags = (confidence[order[:asked]] < threshold) | cheap_agrees[order[:asked]]
    assert stats.n == asked and stats.agreements == int(flags.sum())  # the cascade's flags, not the plain model's
    kept = float(np.mean(confidence[order[:asked]] >= threshold))
    assert answers.kept_rate("cheap") == pytest.approx(kept)
    assert stats.unit_cost == pytest.approx(0.01 + (1 - kept) * 0.16)  # escalated rows pay both calls
    assert result.holds and result.plan.agreement_bound >= 0.9 - 1e-9
    paid = answers.paid_result(result)  # the reference once per row, the cheap model on every row asked
    assert paid.spent == pytest.approx(0.16 * paid.profile.positions.size + 0.01 * asked)
    assert result.spent > paid.spent  # the confirmation's own sum counts escalations' reference calls twice
    confirmed = confirmed_cascades(state, result.plan, answers, asked, {"cheap": stats.alpha})
    assert cascade_entries(confirmed)[0]["threshold"] == threshold
    assert cascade_entries(confirmed)[0]["share"] == result.plan.fractions["cheap"]


def test_the_reference_is_never_asked_twice_when_the_engine_asks_models_in_parallel():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    answers: dict = {}
    asked: list[tuple[str, int]] = []
    lock = threading.Lock()

    def source(model, positions):  # records what it paid, like the fit's answer source
        time.sleep(0.05)
        out = [Ans("no" if model == "cheap" else "yes", 0.6 if model == "cheap" else None, 0.01) for _ in positions]
        with lock:
            asked.extend((model, int(p)) for p in positions)
            answers.update({(model, int(p)): a for p, a in zip(positions, out)})
        return out

    cascade = CascadeSource(source, answers, "cheap", "ref", 0.8, offset=0)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda m: cascade(m, list(range(20))), ["cheap", "ref"]))
    assert sorted(p for m, p in asked if m == "ref") == list(range(20))
