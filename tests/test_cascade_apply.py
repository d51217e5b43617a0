"""The cascade's apply phase and fit-time choice without Spark: threshold, escalation, costs, stored confidence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine import Plan, SmartConfig
from smart_spark.engine.cascade import cascade_looks, certify_cascade, pool_looks
from smart_spark.llm.client import CallResult
from smart_spark.spark.apply import ApplySpec, process_batch
from smart_spark.spark.calls import PayingCaller
from smart_spark.spark.cascade_fit import certify_on_pool, choose, plain_cannot_win, split_budget
from smart_spark.spark.state import DataFingerprint, FittedState, ProfiledAnswer
from smart_spark.store import AnswerStore

PLAN = Plan(
    fractions={"cheap": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.9, remaining_target=0.88,
    n_total=100, n_remaining=90, unit_costs={"cheap": 0.01, "ref": 0.1}, method="cascade",
)
CATALOGUE = ModelCatalogue.from_dicts([
    {"name": "cheap", "input_price_per_1m": 0.15, "output_price_per_1m": 0.6, "top_logprobs": 2},
    {"name": "ref", "input_price_per_1m": 2.5, "output_price_per_1m": 10.0},
])


class ConfidentClient:
    """The cheap model answers "No" at confidence i/100 for prompt "Q: i" (None at i = 0), the reference "Yes"."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    async def acomplete_batch(self, model, prompts):
        out = []
        for p in prompts:
            self.calls.append((model, p))
            i = int(p.split()[-1])
            if model == "cheap":
                out.append(CallResult(model, "No", "No", 3, 1, 0.01, None, 1, i / 100 if i else None))
            else:
                out.append(CallResult(model, "Yes", "Yes", 3, 1, 0.1, None, 1))
        return out


def _spec(**kw):
    base = dict(plan_json=PLAN.to_json(), catalogue_yaml="models: []", labels=("Yes", "No"),
                prompt_template="Q: {text}", cascades={"cheap": 0.5})
    base.update(kw)
    return ApplySpec(**base)


def test_cheap_answer_stands_at_or_above_the_threshold_else_escalates_with_both_costs():
    client = ConfidentClient()
    keys, texts = [f"k{i}" for i in range(100)], [str(i) for i in range(100)]
    out = process_batch(_spec(), keys, texts, client=client)
    kept = np.arange(100) >= 50  # confidence i/100 >= 0.5; i = 0 has no confidence: escalated
    assert (out.loc[kept, "model"] == "cheap").all() and (out.loc[kept, "prediction"] == "No").all()
    assert (out.loc[~kept, "model"] == "ref").all() and (out.loc[~kept, "prediction"] == "Yes").all()
    assert out.loc[~kept, "escalated"].all() and not out.loc[kept, "escalated"].any()
    assert out.loc[kept, "cost"].tolist() == pytest.approx([0.01] * 50)
    assert out.loc[~kept, "cost"].tolist() == pytest.approx([0.11] * 50)  # the cheap call is counted too
    assert out["error"].isna().all() and len(client.calls) == 150


def test_without_cascades_the_same_plan_keeps_every_cheap_answer():
    out = process_batch(_spec(cascades={}), ["a", "b"], ["1", "2"], client=ConfidentClient())
    assert (out["model"] == "cheap").all() and not out["escalated"].any()


def test_confidence_is_stored_and_reused_so_nothing_is_paid_twice(tmp_path):
    store = AnswerStore(str(tmp_path / "answers"))
    spec = _spec()
    first = PayingCaller(spec, ConfidentClient(), store=store).ask({"cheap": ["Q: 70", "Q: 20"]})["cheap"]
    client = ConfidentClient()
    again = PayingCaller(spec, client, store=AnswerStore(str(tmp_path / "answers"))).ask({"cheap": ["Q: 70", "Q: 20"]})
    assert [a.confidence for a in first] == [0.7, 0.2]
    assert [a.confidence for a in again["cheap"]] == [0.7, 0.2] and not client.calls
    assert not any(a.paid for a in again["cheap"])


def test_fitted_state_with_a_cascade_round_trips_as_version_2():
    state = FittedState(plan_json=PLAN.to_json(), profile={}, profiled={"k": ProfiledAnswer("Yes", "Yes")},
                        fitted_with={}, data=DataFingerprint(1, 1, 1),
                        cascade={"model": "cheap", "threshold": 0.75})
    assert state.saved_version == 2 and state.cascades == {"cheap": 0.75}
    loaded = FittedState.from_json(state.to_json())
    assert loaded.cascade == state.cascade and loaded.cascades == {"cheap": 0.75}
    body = json.loads(state.to_json())
    assert body["format_version"] == 2
    body.update(cascade=None, format_version=1)  # what a version-1 reader wrote: no cascade
    plain = FittedState.from_json(json.dumps(body))
    assert plain.cascade is None and plain.saved_version == 1


def test_pool_looks_keep_the_budget_and_end_at_the_pool():
    looks = pool_looks(10_000, 700, 0.05, 0.9)
    assert looks[-1][0] == 700 and all(n < 700 for n, _ in looks[:-1])
    assert sum(a for _, a in looks) == pytest.approx(0.05)
    assert sum(a for _, a in cascade_looks(10_000, 0.05, 0.9)) == pytest.approx(0.05)


def test_certify_on_pool_pays_only_the_pool_prefix_and_the_choice_prefers_the_cheaper_plan():
    rng = np.random.default_rng(1)
    n = 2000
    confidence = rng.uniform(0.5, 1.0, n)
    agrees = rng.uniform(size=n) < confidence  # calibrated
    asked: list[int] = []

    class Ans:
        def __init__(self, label, conf, cost):
            self.label, self.raw, self.error, self.confidence, self.cost = label, label, None, conf, cost

    def source(model, positions):
        asked.extend(positions)
        if model == "cheap":
            return [Ans("yes" if agrees[p] else "no", confidence[p], 0.01) for p in positions]
        return [Ans("yes", None, 0.16) for _ in positions]

    plain, budget = split_budget(SmartConfig(0.9, 0.9), "cheap")
    assert plain.confidence == pytest.approx(0.95) and budget == pytest.approx(0.05)
    fit = certify_on_pool(source, model="cheap", reference="ref", catalogue=CATALOGUE, unit_costs={},
                          n_valid=n, pool_size=600, accuracy_target=0.9, error_budget=budget)
    assert max(asked) < 600 and fit.result.sampled.size <= 600
    assert math.isfinite(fit.result.threshold) and 0 < fit.kept_rate < 1
    assert fit.unit_cost == pytest.approx(0.01 + (1 - fit.kept_rate) * 0.16)
    reference_only = Plan(fractions={"ref": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.95,
                          remaining_target=0.9, n_total=n, n_remaining=n, unit_costs={})
    assert choose(reference_only, fit, fit.result.sampled.size)
    free = Plan(fractions={"cheap": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.95,
                remaining_target=0.9, n_total=n, n_remaining=n, unit_costs={"cheap": 0.0, "ref": 0.16})
    assert not choose(free, fit, fit.result.sampled.size)
    assert plain_cannot_win(fit, 2, n, 0.9) in (True, False) and not plain_cannot_win(fit, 3, n, 0.9)
    # the same certificate as the engine's on arrays, profiled in the same order (catalogue price ratio)
    ratio = CATALOGUE["cheap"].cost(200, 2) / CATALOGUE["ref"].cost(200, 2)
    again = certify_cascade(n, lambda p: (confidence[p], agrees[p]), accuracy_target=0.9, error_budget=budget,
                            rng=np.random.default_rng(0), cheap_cost_ratio=ratio,
                            schedule=pool_looks(n, 600, budget, 0.9), order=np.arange(600))
    assert again.threshold == fit.result.threshold


def test_plan_with_cascade_merges_the_reference_answers_and_reports_the_users_confidence():
    from types import SimpleNamespace

    from smart_spark.spark.cascade_fit import plan_with_cascade

    rng = np.random.default_rng(4)
    n, pool_size = 3000, 800
    confidence = rng.uniform(0.5, 1.0, n)
    agrees = rng.uniform(size=n) < confidence

    class Ans:
        def __init__(self, label, conf, cost):
            self.label, self.raw, self.error, self.confidence, self.cost = label, label, None, conf, cost

    answers = {}

    def source(model, positions):
        out = [Ans("yes" if model == "ref" or agrees[p] else "no", confidence[p] if model == "cheap" else None,
                   0.01 if model == "cheap" else 0.16) for p in positions]
        answers.update({(model, int(p)): a for p, a in zip(positions, out)})
        return out

    fit = certify_on_pool(source, model="cheap", reference="ref", catalogue=CATALOGUE, unit_costs={},
                          n_valid=n, pool_size=pool_size, accuracy_target=0.9, error_budget=0.05)
    pool = [SimpleNamespace(key=f"k{i}") for i in range(pool_size)]
    dear = Plan(fractions={"ref": 0.5, "mid": 0.5}, reference="ref", accuracy_target=0.9, confidence=0.95,
                remaining_target=0.9, n_total=n, n_remaining=n - 10, unit_costs={"mid": 0.12, "ref": 0.16})
    earlier = {"k0": ProfiledAnswer("yes", "yes")}
    config = SmartConfig(0.9, 0.9)
    plan, profiled, cascade = plan_with_cascade(fit, answers, pool, dear, earlier, config)
    assert cascade is not None and plan.method == "cascade" and plan.fractions == {"cheap": 1.0}
    assert plan.confidence == 0.9 and plan.agreement_bound >= 0.9 - 1e-9
    assert len(profiled) == fit.result.sampled.size and all(a.label == "yes" for a in profiled.values())
    cheap_plain = Plan(fractions={"cheap": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.95,
                       remaining_target=0.9, n_total=n, n_remaining=n - 10, unit_costs={"cheap": 0.01, "ref": 0.16})
    plan, _, cascade = plan_with_cascade(fit, answers, pool, cheap_plain, earlier, config)
    assert cascade is None and plan.method == "mix" and plan.confidence == 0.9
