"""One owner of spending: SpendBudget reserves each call's worst case, so calls in flight never overshoot."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

from conftest import ROOT, simulated_catalogue
from smart_spark.llm.client import CallResult
from smart_spark.llm.spend import SpendBudget, estimated_prompt_tokens
from smart_spark.spark.apply import ApplySpec
from smart_spark.spark.calls import PayingCaller

CATALOGUE = simulated_catalogue("http://127.0.0.1:9/v1")


def test_worst_case_uses_the_catalogue_cost():
    budget = SpendBudget(1.0, CATALOGUE, max_tokens=16, system_prompt="be brief")
    prompt = "x" * 300
    spec = CATALOGUE["gpt-4"]
    assert budget.worst_case("gpt-4", prompt) == spec.cost(estimated_prompt_tokens(prompt, "be brief"), 16)


def test_concurrent_reservations_never_exceed_the_cap():
    budget = SpendBudget(0.01, CATALOGUE, max_tokens=16)
    worst = budget.worst_case("gpt-4", "p" * 90)
    admitted = []

    def worker():
        for _ in range(200):
            reserved = budget.reserve("gpt-4", "p" * 90)
            if reserved is not None:
                admitted.append(reserved)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # everything admitted is still in flight (unsettled): its worst case fits under the cap
    assert len(admitted) == int(0.01 // worst) and sum(admitted) <= 0.01 + 1e-12


class SlowClient:
    """Every call is in flight at once; each costs exactly the worst case (the adversarial case)."""

    def __init__(self, budget):
        self.budget, self.calls, self.in_flight, self.max_in_flight = budget, 0, 0, 0

    async def acomplete_batch(self, model, prompts):
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return [CallResult(model, "Yes", "Yes", 0, 0, self.budget.worst_case(model, prompts[0]), None, 1)]


def test_paying_caller_stops_at_the_cap_with_calls_in_flight():
    budget = SpendBudget(0.02, CATALOGUE, max_tokens=16)
    client = SlowClient(budget)
    spec = ApplySpec(plan_json="{}", catalogue_yaml="models: []", labels=("Yes", "No"), prompt_template="{text}")
    answers = PayingCaller(spec, client, budget=budget).ask({"gpt-4": [f"prompt {i:04d} " * 5 for i in range(300)]})
    spent = sum(a.spent for a in answers["gpt-4"])
    assert client.max_in_flight > 10  # the calls really ran concurrently
    assert 0.02 - budget.worst_case("gpt-4", "prompt 0000 " * 5) < spent <= 0.02
    capped = [a for a in answers["gpt-4"] if a.error]
    assert capped and all("spend cap reached" in a.error for a in capped)


def test_executor_modules_import_without_pyspark_ml_or_pandas():
    code = ("import sys; import smart_spark.spark.apply, smart_spark.spark.calls; "
            "print(sorted(m for m in ('pyspark.ml', 'pandas', 'pulp', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), check=True)
    assert out.stdout.strip() == "[]", out.stdout
