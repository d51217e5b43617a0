"""LLMClient against the stand-in server over real HTTP: order, retries, faults, limits, loops."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.llm import CallResult, LLMClient
from smart_spark.testing import FaultConfig, SimulatedBackend, SimulatedModel, StandInServer, with_base_url

LABELS = ["Yes", "No"]
BACKEND = SimulatedBackend(
    LABELS,
    {"ref": SimulatedModel(1.0, odd_answer_rate=0.2), "cheap": SimulatedModel(0.8)},
    reference="ref",
    correlation=0.5,
)
PRICES = ModelCatalogue(
    (
        ModelSpec("ref", input_price_per_token=1e-5, output_price_per_token=2e-5, request_fee=1e-4),
        ModelSpec("cheap", input_price_per_token=1e-6, output_price_per_token=1e-6, max_concurrency=4),
    )
)
PROMPTS = [f"Item {i}: does the holding overrule the earlier case?" for i in range(200)]
FAST = dict(timeout=2.0, backoff_base=0.01, backoff_max=0.1)


def _client(server: StandInServer, **options) -> LLMClient:
    return LLMClient(with_base_url(PRICES, server.base_url), LABELS, **{**FAST, **options})


@pytest.fixture(scope="module")
def server():
    with StandInServer(BACKEND) as running:
        yield running


def test_results_in_order_with_labels_usage_and_cost(server):
    with _client(server) as client:
        results = client.complete_batch("ref", PROMPTS[:50])
    assert [r.model for r in results] == ["ref"] * 50
    for prompt, result in zip(PROMPTS, results):
        expected = BACKEND.answer("ref", prompt)
        assert result.ok and result.attempts == 1
        assert result.raw == expected.text
        assert result.label == BACKEND.label_for("ref", prompt)
        assert (result.prompt_tokens, result.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
        assert result.cost == pytest.approx(PRICES["ref"].cost(expected.prompt_tokens, expected.completion_tokens))
    assert any(r.raw != r.label for r in results)  # odd answers were normalised
    assert client.spent == pytest.approx(sum(r.cost for r in results))


def test_fault_storm_every_prompt_answered_or_explicit_error_never_paid_twice():
    # The client's timeout leaves a real answer a second of slack: an answer that arrives after the client gave
    # up is paid twice by any client (the provider charged it), so a tight timeout on a busy machine would
    # test the scheduler, not the client. Injected timeouts sleep well past it.
    faults = FaultConfig(rate_429=0.30, rate_500=0.10, rate_timeout=0.05, retry_after_s=0.02, timeout_sleep_s=3.0)
    with StandInServer(BACKEND, faults=faults, seed=11) as server:
        with _client(server, timeout=1.0, concurrency=16) as client:
            results = client.complete_batch("ref", PROMPTS)
        counters = server.counters()["ref"]
        assert len(results) == len(PROMPTS)
        for prompt, result in zip(PROMPTS, results):
            if result.ok:
                assert result.raw == BACKEND.answer("ref", prompt).text
                assert server.answered_count("ref", prompt) == 1  # answered once, paid once
            else:
                assert result.label is None and result.raw is None and result.error
                assert "gave up after 7 attempts" in result.error
                assert server.answered_count("ref", prompt) == 0
        # Retries show in the counters: every attempt reached the server, nothing else did.
        assert counters["requests"] == sum(r.attempts for r in results)
        assert counters["requests"] > len(PROMPTS) * 1.5
        assert counters["answered"] == sum(r.ok for r in results) >= len(PROMPTS) - 3
        assert counters["faults"] == counters["requests"] - counters["answered"]
        assert counters["distinct_prompts"] == len(PROMPTS)
        assert client.spent == pytest.approx(sum(r.cost for r in results))


@pytest.mark.parametrize("fault", ["rate_malformed", "rate_empty_choices"])
def test_broken_200_responses_are_retried(fault):
    with StandInServer(BACKEND, faults=FaultConfig(**{fault: 0.5}), seed=2) as server:
        with _client(server) as client:
            results = client.complete_batch("ref", PROMPTS[:40])
        assert all(r.ok for r in results)
        assert max(r.attempts for r in results) > 1
        assert server.counters()["ref"]["answered"] == 40
        # Broken responses carried no usage: only the answered calls were charged.
        assert client.spent == pytest.approx(sum(PRICES["ref"].cost(r.prompt_tokens, r.completion_tokens) for r in results))


def test_retry_after_is_honoured():
    faults = FaultConfig(rate_429=1.0, retry_after_s=0.1)
    with StandInServer(BACKEND, faults=faults) as server:
        with _client(server, max_retries=3, backoff_base=0.0, backoff_max=5.0) as client:
            start = time.perf_counter()
            [result] = client.complete_batch("ref", PROMPTS[:1])
            elapsed = time.perf_counter() - start
    assert result.error.startswith("HTTP 429 from ref: Rate limit reached")
    assert result.attempts == 4 and result.cost == 0.0
    assert 0.3 <= elapsed < 2.0  # three waits of 0.1-0.12 s, not the zero backoff


def test_client_errors_are_not_retried(server):
    catalogue = with_base_url(ModelCatalogue((ModelSpec("unknown-model", 0.0, 0.0),)), server.base_url)
    with LLMClient(catalogue, LABELS, **FAST) as client:
        [result] = client.complete_batch("unknown-model", PROMPTS[:1])
    assert result.attempts == 1
    assert result.error.startswith("HTTP 404 from unknown-model: The model `unknown-model` does not exist")


def test_per_request_timeout():
    with StandInServer(BACKEND, faults=FaultConfig(rate_timeout=1.0, timeout_sleep_s=2.0)) as server:
        with _client(server, timeout=0.2, max_retries=1) as client:
            start = time.perf_counter()
            [result] = client.complete_batch("ref", PROMPTS[:1])
    assert time.perf_counter() - start < 1.5  # not the 2 s x 2 the server would stall
    assert result.error == "ref did not answer within 0.2 s (gave up after 2 attempts)"


def test_spend_cap_stops_calls():
    with StandInServer(BACKEND) as server:
        per_call = PRICES["ref"].cost(BACKEND.answer("ref", PROMPTS[0]).prompt_tokens, 1)
        cap = per_call * 5.5
        with _client(server, spend_cap=cap, concurrency=1) as client:
            results = client.complete_batch("ref", PROMPTS[:20])
            answered = [r for r in results if r.ok]
            assert len(answered) == 6  # the sixth call starts below the cap, the seventh does not
            assert results[:6] == answered
            for result in results[6:]:
                assert result.error == f"spend cap of {cap:g} USD reached; not called"
                assert result.attempts == 0 and result.label is None and result.cost == 0
            assert cap <= client.spent < cap + per_call * 1.5
            assert server.counters()["ref"]["requests"] == 6
            # Later batches of the same run are refused without any call.
            again = client.complete_batch("ref", PROMPTS[20:25])
            assert all(r.error and r.attempts == 0 for r in again)
            assert server.counters()["ref"]["requests"] == 6


def test_concurrency_limit_per_model():
    with StandInServer(BACKEND, latency_s=0.1) as server:
        with _client(server) as client:
            start = time.perf_counter()
            client.complete_batch("cheap", PROMPTS[:12])  # max_concurrency 4 -> 3 waves
            limited = time.perf_counter() - start
            start = time.perf_counter()
            client.complete_batch("ref", PROMPTS[:12])  # default 16 -> 1 wave
            wide = time.perf_counter() - start
        with _client(server, concurrency=1) as client:
            start = time.perf_counter()
            client.complete_batch("cheap", PROMPTS[:4])
            serial = time.perf_counter() - start
    assert 0.3 <= limited
    assert wide < limited * 0.75
    assert serial >= 0.4


def test_repeated_calls_other_threads_and_running_loops(server):
    with _client(server) as client:
        first = client.complete_batch("ref", PROMPTS[:5])
        assert client.complete_batch("ref", PROMPTS[:5]) == first

        from_thread: list[list[CallResult]] = []
        worker = threading.Thread(target=lambda: from_thread.append(client.complete_batch("ref", PROMPTS[:5])))
        worker.start()
        worker.join()
        assert from_thread == [first]

        async def inside_a_running_loop():
            # e.g. a notebook: the sync call must not need (or break) the caller's loop
            sync = client.complete_batch("ref", PROMPTS[:5])
            concurrent = await asyncio.gather(
                client.acomplete_batch("ref", PROMPTS[:5]), client.acomplete_batch("cheap", PROMPTS[:5])
            )
            return sync, concurrent

        sync, (again, cheap) = asyncio.run(inside_a_running_loop())
        assert sync == again == first
        assert [r.model for r in cheap] == ["cheap"] * 5
        assert client.complete_batch("ref", []) == []


def test_missing_prompts_and_unknown_models(server):
    with _client(server) as client:
        empty, none = client.complete_batch("ref", ["  ", None])  # type: ignore[list-item]
        assert empty.error == none.error == "empty prompt; not called"
        with pytest.raises(Exception, match="model 'gpt-9' is not in the catalogue"):
            client.complete_batch("gpt-9", PROMPTS[:1])


def test_close_and_pickle(server):
    client = _client(server, spend_cap=1.0, concurrency=3, system_prompt="Answer Yes or No.")
    client.complete_batch("ref", PROMPTS[:3])
    copy = pickle.loads(pickle.dumps(client))
    assert (copy.spend_cap, copy.concurrency, copy.system_prompt, copy.spent) == (1.0, 3, "Answer Yes or No.", 0.0)
    assert copy.complete_batch("ref", PROMPTS[:3]) == client.complete_batch("ref", PROMPTS[:3])
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.complete_batch("ref", PROMPTS[:1])
    copy.close()
    threads = [t.name for t in threading.enumerate()]
    assert "smart-spark-llm" not in threads


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="spend_cap"):
        LLMClient(PRICES, LABELS, spend_cap=-1)
    with pytest.raises(ValueError, match="labels"):
        LLMClient(PRICES, [])
    with pytest.raises(TypeError, match="ModelCatalogue"):
        LLMClient([{"name": "x"}], LABELS)  # type: ignore[arg-type]
