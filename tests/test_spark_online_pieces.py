"""The on-line apply phase answers a task's next piece while this one finishes, and still pays once per prompt."""

from __future__ import annotations

import asyncio
import threading

import pandas as pd

from smart_spark.engine import Plan
from smart_spark.llm.client import CallResult
from smart_spark.spark import apply as apply_module
from smart_spark.spark.apply import ApplySpec, ErrorRateGuard
from smart_spark.spark.calls import SharedPayments
from smart_spark.spark.online_calls import apply_partition

PLAN = Plan(fractions={"cheap": 1.0}, reference="ref", accuracy_target=0.9, confidence=0.95, remaining_target=0.88,
            n_total=100, n_remaining=90, unit_costs={"cheap": 0.001, "ref": 0.1}, seed=5)


class SlowClient:
    """Answers "Yes" after a short wait (so pieces overlap); counts calls per prompt, from any thread."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    async def acomplete_batch(self, model, prompts):
        await asyncio.sleep(0.05)
        with self.lock:
            for p in prompts:
                self.calls[p] = self.calls.get(p, 0) + 1
        return [CallResult(model, "Yes", "Yes", 3, 1, 0.25, None, 1) for _ in prompts]


def test_overlapping_pieces_keep_order_and_pay_each_prompt_once(tmp_path, monkeypatch):
    client = SlowClient()
    monkeypatch.setattr(apply_module, "client_for", lambda spec: client)
    spec = ApplySpec(plan_json=PLAN.to_json(), catalogue_yaml="models: []", labels=("Yes", "No"),
                     prompt_template="Q: {text}", answers_path=str(tmp_path / "answers"))
    # two Arrow batches of 25 rows, pieces of 10; texts repeat across pieces under other keys
    texts = [f"text {i % 15}" for i in range(50)]
    batches = [(pd.Series([f"k{i}" for i in range(s, s + 25)]), pd.Series(texts[s : s + 25])) for s in (0, 25)]
    frames = list(apply_partition(spec, batches, 10, ErrorRateGuard(spec)))
    assert [len(f) for f in frames] == [10, 10, 5, 10, 10, 5]
    out = pd.concat(frames, ignore_index=True)
    assert out["prediction"].eq("Yes").all() and out["error"].isna().all()
    assert client.calls == {f"Q: text {i}": 1 for i in range(15)}
    assert out["paid"].sum() == 15 and out["cost"].sum() == 15 * 0.25


def test_a_paid_answer_is_shared_only_with_asks_that_looked_before_it_was_stored():
    shared = SharedPayments()
    early = shared.open()
    assert shared.begin("k") is None  # pay for it
    waiting = shared.begin("k")  # another piece asks meanwhile: waits for that payment
    paid = apply_module.Answer("m", "Yes", "Yes", 0.1, None, True, 0.1)
    shared.finish("k", paid)
    assert waiting.result() is paid
    late = shared.open()  # looks the store up after the payment: finds it there
    assert shared.begin("k") is paid  # the early ask may not have seen it in the store
    shared.close(early)
    assert len(shared) == 0
    shared.close(late)
    assert shared.begin("x") is None
    waiting = shared.begin("x")
    shared.finish("x", apply_module.Answer("m", None, None, 0.0, "HTTP 500", False))
    assert len(shared) == 0 and waiting.result().error == "HTTP 500"  # failures are not kept: called again
