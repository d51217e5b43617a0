"""Chains of cascades A@t1 -> B@t2 -> reference without Spark: thresholds, the engine option, apply, day two."""

from __future__ import annotations

import numpy as np
import pytest

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine import Plan, SmartConfig
from smart_spark.engine.cascade_chain import answered_by, chain_flags, chain_row_costs, pick_chain_thresholds
from smart_spark.llm.client import CallResult
from smart_spark.spark.apply import ApplySpec, process_batch
from smart_spark.spark.cascade_confirm import CascadeAnswers, confirmed_cascades
from smart_spark.spark.cascade_mix import CascadeSource, chain_candidates, engine_with_cascade, mix_cascades
from smart_spark.spark.state import DataFingerprint, FittedState

COSTS = {"a": 1 / 16, "b": 0.2, "plain": 0.5, "ref": 1.0}
CATALOGUE = ModelCatalogue.from_dicts([
    {"name": "a", "input_price_per_1m": 1.0, "output_price_per_1m": 1.0, "top_logprobs": 5},
    {"name": "b", "input_price_per_1m": 3.2, "output_price_per_1m": 3.2, "top_logprobs": 5},
    {"name": "plain", "input_price_per_1m": 8.0, "output_price_per_1m": 8.0},
    {"name": "ref", "input_price_per_1m": 16.0, "output_price_per_1m": 16.0},
])


class Ans:
    def __init__(self, label, confidence, cost, error=None):
        self.label, self.raw, self.error, self.confidence, self.cost = label, label, error, confidence, cost


def test_chain_flags_and_costs_follow_the_first_model_that_keeps_the_row():
    conf_a, conf_b = np.array([0.9, 0.5, 0.5, -np.inf]), np.array([0.1, 0.9, 0.2, 0.95])
    agree_a, agree_b = np.array([True, True, True, True]), np.array([False, False, True, True])
    step = answered_by([conf_a, conf_b], (0.8, 0.8))
    assert step.tolist() == [0, 1, 2, 1]  # a failed first answer (-inf) goes on like an unsure one
    assert chain_flags([conf_a, conf_b], [agree_a, agree_b], (0.8, 0.8)).tolist() == [True, False, True, True]
    assert chain_row_costs(step, [0.1, 0.2], 1.0).tolist() == pytest.approx([0.1, 0.3, 1.3, 0.3])


def _population(n: int, seed: int):
    """a: right on its confident rows only; b: calibrated, right on most rows a is unsure of."""
    rng = np.random.default_rng(seed)
    conf_a = rng.uniform(0.5, 1.0, n)
    agree_a = rng.uniform(size=n) < np.where(conf_a > 0.8, 0.995, 0.5)
    conf_b = rng.uniform(0.5, 1.0, n)
    agree_b = rng.uniform(size=n) < np.where(conf_b > 0.6, 0.99, 0.4)
    plain = rng.uniform(size=n) < 0.93
    return conf_a, agree_a, conf_b, agree_b, plain


def test_pick_chain_thresholds_sends_the_first_models_unsure_rows_to_the_second():
    conf_a, agree_a, conf_b, agree_b, _ = _population(400, 1)
    t1, t2 = pick_chain_thresholds([conf_a, conf_b], [agree_a, agree_b], [COSTS["a"], COSTS["b"]], 1.0, 0.95)
    assert 0.75 <= t1 <= 0.85 and 0.55 <= t2 <= 0.7
    assert pick_chain_thresholds([conf_a, conf_b], [agree_a, agree_b], [1.0, 0.5], 1.0, 0.95) is None


def _source(population, answers, asked=None):
    conf_a, agree_a, conf_b, agree_b, plain = population

    def source(model, positions):
        if asked is not None:
            asked.extend((model, int(p)) for p in positions)
        flags = {"a": agree_a, "b": agree_b, "plain": plain}
        out = [Ans("yes" if model == "ref" or flags[model][p] else "no",
                   {"a": conf_a, "b": conf_b}[model][p] if model in ("a", "b") else None, COSTS[model])
               for p in positions]
        answers.update({(model, int(p)): a for p, a in zip(positions, out)})
        return out

    return source


def test_the_engine_is_offered_the_chain_and_plans_it_under_the_promise():
    n, k = 3000, 300
    population = _population(n, 2)
    answers: dict = {}
    asked: list = []
    source = _source(population, answers, asked)
    source("a", range(k)), source("ref", range(k))  # what the one-cascade certificate paid
    asked.clear()
    assert chain_candidates(CATALOGUE, "ref", "a") == ["b"]
    result, found = engine_with_cascade(
        source, answers, cascade_model="a", first_rows=k, models=CATALOGUE.names, reference="ref", n_valid=n,
        pool_size=n, config=SmartConfig(0.95, 0.9), prices=COSTS, solver="enumerate", chain_models=["b"])
    assert sorted(p for m, p in asked if m == "b" and p < k) == list(range(k))  # b paid once on the first rows
    assert len(asked) == len(set(asked))  # nothing asked of any model twice
    chain = found["a>b"]
    assert [m for m, _ in chain["steps"]] == ["a", "b"] and 0.0 < chain["kept_rate"] <= 1.0
    plan = result.plan
    assert plan.fractions.get("a>b", 0.0) > 0.3 and plan.agreement_bound >= 0.95 - 1e-9
    entry = mix_cascades(plan, found, 0.1, result.profile)
    state = FittedState(plan_json=plan.to_json(), profile={}, profiled={}, fitted_with={},
                        data=DataFingerprint(1, 1, 1), cascade=entry)
    again = FittedState.from_json(state.to_json())
    assert again.saved_version == 3 and again.chains == {"a>b": chain["steps"]} and "a>b" not in again.cascades


def test_cascade_source_answers_a_chain_at_the_cost_of_every_call():
    answers = {("a", 0): Ans("no", 0.9, 0.1), ("a", 1): Ans("no", 0.5, 0.1), ("a", 2): Ans("no", 0.5, 0.1),
               ("b", 1): Ans("maybe", 0.9, 0.2), ("b", 2): Ans("maybe", 0.3, 0.2)}
    calls = []

    def source(model, positions):
        calls.append((model, list(positions)))
        return [Ans("yes", None, 1.0) for _ in positions]

    got = CascadeSource(source, answers, "a", "ref", 0.8, offset=0, chains={"a>b": (("a", 0.8), ("b", 0.8))})(
        "a>b", [0, 1, 2])
    assert [a.label for a in got] == ["no", "maybe", "yes"]
    assert [a.cost for a in got] == pytest.approx([0.1, 0.3, 1.3])
    assert calls == [("ref", [2])]


class Client:
    """a: "No" at confidence i/100 for prompt "Q: i"; b: "Maybe" at confidence 1 - i/100; ref: "Yes"."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    async def acomplete_batch(self, model, prompts):
        self.calls.extend((model, p) for p in prompts)
        label = {"a": "No", "b": "Maybe", "ref": "Yes"}[model]
        out = []
        for p in prompts:
            i = int(p.split()[-1])
            confidence = {"a": i / 100, "b": 1 - i / 100}.get(model)
            out.append(CallResult(model, label, label, 3, 1, COSTS[model], None, 1, confidence))
        return out


def test_apply_asks_the_chain_in_turn_and_says_which_model_answered():
    plan = Plan(fractions={"a>b": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.9,
                remaining_target=0.9, n_total=100, n_remaining=100, unit_costs={"a>b": 0.5, "ref": 1.0})
    spec = ApplySpec(plan_json=plan.to_json(), catalogue_yaml="models: []", labels=("Yes", "No", "Maybe"),
                     prompt_template="Q: {text}", chains={"a>b": (("a", 0.8), ("b", 0.7))})
    client = Client()
    out = process_batch(spec, [f"k{i}" for i in range(100)], [str(i) for i in range(100)], client=client)
    i = np.arange(100)
    by_a, by_b = i >= 80, (i < 80) & (i <= 30)  # a keeps i/100 >= 0.8; b keeps 1 - i/100 >= 0.7
    by_ref = ~by_a & ~by_b
    assert (out.loc[by_a, "model"] == "a").all() and not out.loc[by_a, "escalated"].any()
    assert (out.loc[by_b, "model"] == "b").all() and (out.loc[by_b, "prediction"] == "Maybe").all()
    assert (out.loc[by_ref, "model"] == "ref").all() and out.loc[~by_a, "escalated"].all()
    expected = np.where(by_a, COSTS["a"], np.where(by_b, COSTS["a"] + COSTS["b"], COSTS["a"] + COSTS["b"] + 1.0))
    assert out["cost"].to_numpy() == pytest.approx(expected)
    assert len(client.calls) == 100 + 80 + int(by_ref.sum())  # every model asked once per row at most


def test_day_two_confirms_a_chain_with_its_saved_thresholds():
    calls = []

    def source(model, positions):
        calls.append((model, list(positions)))
        conf = {"a": [0.9, 0.5, 0.5], "b": [0.1, 0.9, 0.2]}.get(model)
        return [Ans({"a": "no", "b": "maybe"}.get(model, "yes"), conf[p] if conf else None,
                    COSTS[model]) for p in positions]

    answers = CascadeAnswers(source, "ref", {}, {"a>b": (("a", 0.8), ("b", 0.8))})
    assert [a.label for a in answers("ref", [0, 1, 2])] == ["yes"] * 3
    got = answers("a>b", [0, 1, 2])
    assert [a.label for a in got] == ["no", "maybe", "yes"] and answers.kept_rate("a>b") == pytest.approx(2 / 3)
    assert [m for m, _ in calls] == ["ref", "a", "b"]  # the escalated row's reference answer was bought once
    plan = Plan(fractions={"a>b": 0.5, "ref": 0.5}, reference="ref", accuracy_target=0.9, confidence=0.9,
                remaining_target=0.9, n_total=100, n_remaining=90, unit_costs={"a>b": 0.5, "ref": 1.0})
    state = FittedState(plan_json=plan.to_json(), profile={}, profiled={}, fitted_with={},
                        data=DataFingerprint(1, 1, 1), cascade={"kind": "mix", "cascades": [
                            {"model": "a>b", "threshold": 0.8, "steps": [{"model": "a", "threshold": 0.8},
                                                                         {"model": "b", "threshold": 0.8}]}]})
    confirmed = confirmed_cascades(state, plan, answers, 3, {"a>b": 0.05})
    kept = FittedState(plan_json=plan.to_json(), profile={}, profiled={}, fitted_with={},
                       data=DataFingerprint(1, 1, 1), cascade=confirmed)
    assert kept.chains == {"a>b": (("a", 0.8), ("b", 0.8))}


def test_a_failed_plain_call_never_escalates_to_a_chain_option_as_if_it_were_a_model():
    from smart_spark.spark.cascade_apply import row_steps

    plan = Plan(fractions={"plain": 0.5, "a>b": 0.5}, reference="ref", accuracy_target=0.9, confidence=0.9,
                remaining_target=0.9, n_total=100, n_remaining=100, unit_costs={"plain": 0.1, "a>b": 0.5, "ref": 1.0})
    spec = ApplySpec(plan_json=plan.to_json(), catalogue_yaml="models: []", labels=("Yes",), prompt_template="{text}",
                     chains={"a>b": (("a", 0.8), ("b", 0.7))})
    assert row_steps(spec, plan, "plain") == [("plain", None), ("ref", None)]
    assert row_steps(spec, plan, "a>b") == [("a", 0.8), ("b", 0.7), ("ref", None)]
