"""The apply-phase batch logic without Spark: routing, escalation, profiled rows, outcomes."""

from __future__ import annotations

from collections import Counter

from smart_spark.engine import Plan
from smart_spark.llm.client import CallResult
from smart_spark.spark.apply import EMPTY_TEXT, ApplySpec, process_batch
from smart_spark.spark.state import ProfiledAnswer

PLAN = Plan(
    fractions={"cheap": 0.6, "mid": 0.2, "ref": 0.2},
    reference="ref",
    accuracy_target=0.9,
    confidence=0.95,
    remaining_target=0.88,
    n_total=100,
    n_remaining=90,
    unit_costs={"cheap": 0.001, "mid": 0.01, "ref": 0.1},
    seed=5,
)


class FakeClient:
    """Answers "Yes" from models not in ``failing``; records every call."""

    def __init__(self, failing=(), odd=()):
        self.failing, self.odd = set(failing), set(odd)
        self.calls: list[tuple[str, str]] = []

    async def acomplete_batch(self, model, prompts):
        return self.complete_batch(model, prompts)

    def complete_batch(self, model, prompts):
        out = []
        for p in prompts:
            self.calls.append((model, p))
            if model in self.failing:
                out.append(CallResult(model, None, None, 0, 0, 0.0, f"HTTP 500 from {model}", 7))
            elif model in self.odd:
                out.append(CallResult(model, None, "Cannot determine.", 3, 2, 0.5, None, 1))
            else:
                out.append(CallResult(model, "Yes", "Yes.", 3, 1, 0.25, None, 1))
        return out


def spec(**kw):
    base = dict(plan_json=PLAN.to_json(), catalogue_yaml="models: []", labels=("Yes", "No"), prompt_template="Q: {text}")
    base.update(kw)
    return ApplySpec(**base)


KEYS = [f"k{i}" for i in range(200)]
TEXTS = [f"text {i}" for i in range(200)]


def test_routing_follows_the_plan_and_is_deterministic():
    client = FakeClient()
    out = process_batch(spec(), KEYS, TEXTS, client=client)
    assert list(out["model"]) == [PLAN.route(k) for k in KEYS]
    again = process_batch(spec(), KEYS, TEXTS, client=FakeClient())
    assert list(again["model"]) == list(out["model"])
    assert Counter(m for m, _ in client.calls) == Counter(out["model"])
    assert (out["prediction"] == "Yes").all() and out["error"].isna().all()
    assert (out["cost"] == 0.25).all() and out["paid"].all()
    assert {p for _, p in client.calls} == {f"Q: {t}" for t in TEXTS}


def test_escalation_to_dearer_models_then_reference():
    client = FakeClient(failing={"cheap"})
    out = process_batch(spec(), KEYS, TEXTS, client=client)
    routed = [PLAN.route(k) for k in KEYS]
    for model, first in zip(out["model"], routed):
        assert model == ("mid" if first == "cheap" else first)
    per_row = Counter(p for _, p in client.calls)
    for text, first in zip(TEXTS, routed):
        assert per_row[f"Q: {text}"] == (2 if first == "cheap" else 1)  # never beyond the chain
    assert out["error"].isna().all()


def test_all_models_fail_gives_null_and_reasons():
    client = FakeClient(failing={"cheap", "mid", "ref"})
    out = process_batch(spec(), KEYS[:20], TEXTS[:20], client=client)
    assert out["prediction"].isna().all() and out["model"].isna().all()
    for err, key in zip(out["error"], KEYS[:20]):
        first = PLAN.route(key)
        chain = [first] + PLAN.escalation(first)
        assert err.startswith("all models failed: ")
        assert all(f"{m}: HTTP 500" in err for m in chain)
    assert len(client.calls) == sum(1 + len(PLAN.escalation(PLAN.route(k))) for k in KEYS[:20])


def test_profiled_rows_reuse_the_reference_answer_and_are_not_paid_again():
    profiled = {
        "k1": ProfiledAnswer("No", "No"),
        "k2": ProfiledAnswer(None, None, error="HTTP 500 from ref"),
        "k3": ProfiledAnswer(None, "Incomplete context."),
    }
    keys = ["k1", "k1", "k2", "k3", "k4", "k4"]
    texts = ["a", "a", "b", "c", "d", "d"]
    client = FakeClient()
    out = process_batch(spec(profiled=profiled), keys, texts, client=client)
    assert list(out["prediction"][:2]) == ["No", "No"] and list(out["model"][:2]) == ["ref", "ref"]
    assert list(out["cost"][:2]) == [0.0, 0.0] and not out["paid"][:2].any()  # paid while profiling
    # reference failed while profiling: processed like any other row
    assert out["prediction"][2] == "Yes" and out["cost"][2] == 0.25 and out["paid"][2]
    assert out["prediction"][3] is None and out["model"][3] == "ref" and "matches no label" in out["error"][3]
    # a duplicate key in the batch: answered once, the copy reuses it at cost 0
    assert list(out["paid"][4:]) == [True, False] and list(out["cost"][4:]) == [0.25, 0.0]
    assert sorted(p for _, p in client.calls) == ["Q: b", "Q: d"]


def test_empty_text_is_kept_with_an_explicit_error():
    client = FakeClient()
    out = process_batch(spec(), [None, None, "k"], [None, "   ", "x"], client=client)
    assert list(out["error"][:2]) == [EMPTY_TEXT, EMPTY_TEXT]
    assert list(out["cost"][:2]) == [0.0, 0.0] and out["prediction"][:2].isna().all()
    assert len(client.calls) == 1


def test_answer_without_label_is_never_guessed():
    out = process_batch(spec(), KEYS[:10], TEXTS[:10], client=FakeClient(odd={"cheap", "mid", "ref"}))
    assert out["prediction"].isna().all()
    assert out["error"].str.contains("Cannot determine").all()
    assert out["model"].notna().all() and (out["cost"] == 0.5).all()


def test_client_exception_becomes_row_errors():
    class Broken:
        async def acomplete_batch(self, model, prompts):
            raise RuntimeError("environment variable X is not set")

    out = process_batch(spec(), KEYS[:5], TEXTS[:5], client=Broken())
    assert out["prediction"].isna().all()
    assert out["error"].str.contains("is not set").all()
