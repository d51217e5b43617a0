"""The Batch API: the stand-in server's /v1/files + /v1/batches and the batch client, end to end."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.llm import LLMClient
from smart_spark.llm.batch import BatchClient, BatchRequest
from smart_spark.testing import SimulatedBackend, SimulatedModel, StandInServer
from smart_spark.testing.batch_api import BatchConfig

MODEL = "cheap"
LABELS = ["Yes", "No"]
BACKEND = SimulatedBackend(
    LABELS, {"ref": SimulatedModel(1.0), MODEL: SimulatedModel(0.8)}, reference="ref", correlation=0.3
)
REQUESTS = [BatchRequest(f"key-{i:02d}", f"Is clause {i} overruling?") for i in range(10)]


def _catalogue(server: StandInServer) -> ModelCatalogue:
    return ModelCatalogue((ModelSpec(MODEL, 2e-6, 4e-6, base_url=server.base_url, batch_discount=0.5),))


@contextlib.contextmanager
def _batch_client(server: StandInServer, *, online: bool = True, **options) -> Iterator[BatchClient]:
    """A batch client (retrying failed lines with an on-line client unless ``online=False``); both closed after."""
    catalogue = _catalogue(server)
    options.setdefault("poll_interval_s", 0.05)
    online_client = LLMClient(catalogue, LABELS) if online else None
    try:
        with BatchClient(catalogue, LABELS, online=online_client, **options) as client:
            yield client
    finally:
        if online_client is not None:
            online_client.close()


def _answered_once(server: StandInServer) -> bool:
    return all(server.answered_count(MODEL, r.prompt) == 1 for r in REQUESTS)


def test_batch_answers_every_request_at_the_discount_and_retries_failed_lines_online():
    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.2, fail_every=4)) as server:
        with _batch_client(server) as client:
            results = client.run(MODEL, REQUESTS)
        spec = _catalogue(server)[MODEL]
        assert set(results) == {r.key for r in REQUESTS}
        assert all(r.ok for r in results.values())
        for request in REQUESTS:
            result = results[request.key]
            assert result.label == BACKEND.label_for(MODEL, request.prompt)
            online_price = spec.cost(result.prompt_tokens, result.completion_tokens)
            retried_online = request.key in ("key-03", "key-07")  # every 4th line failed inside the batch
            assert result.cost == pytest.approx(online_price if retried_online else online_price / 2)
        assert _answered_once(server)  # nothing paid twice
        assert len(server.batch_api.created_batches()) == 1
        assert client.spent == pytest.approx(sum(results[r.key].cost for r in REQUESTS if r.key not in ("key-03", "key-07")))


def test_failed_lines_without_online_retry_are_errors_not_drops():
    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.1, fail_every=4)) as server:
        with _batch_client(server, online=False) as client:
            results = client.run(MODEL, REQUESTS)
        assert len(results) == len(REQUESTS)
        failed = {k: r for k, r in results.items() if not r.ok}
        assert set(failed) == {"key-03", "key-07"}
        batch_id = server.batch_api.created_batches()[0]
        for result in failed.values():
            assert batch_id in result.error and "HTTP 500" in result.error and result.cost == 0 and result.label is None


def test_a_restarted_job_resumes_waiting_for_its_recorded_batch():
    records: list[dict] = []

    def record(model, batch_id, keys, meta):
        records.append({"model": model, "batch_id": batch_id, "keys": list(keys), "meta": dict(meta)})

    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.6)) as server:
        # The first job gives up waiting (as if it had been killed): its rows say a rerun resumes.
        with _batch_client(server, recorder=record, max_wait_s=0.05) as first:
            interrupted = first.run(MODEL, REQUESTS)
        assert all("resumes the wait" in r.error for r in interrupted.values())
        assert [r["batch_id"] for r in records] == server.batch_api.created_batches()
        assert sorted(records[0]["keys"]) == sorted(r.key for r in REQUESTS)

        # The rerun (a new client, as in a new process) waits for the recorded batch instead of resubmitting.
        with _batch_client(server) as rerun:
            results = rerun.run(MODEL, REQUESTS + [BatchRequest("key-new", "Is clause new overruling?")],
                                recorded=records)
        assert rerun.submitted and len(server.batch_api.created_batches()) == 2  # only for the one new key
        assert all(r.ok for r in results.values()) and len(results) == len(REQUESTS) + 1
        assert _answered_once(server)


def test_a_batch_created_but_never_recorded_is_found_by_its_fingerprint():
    def crash(*_):
        raise KeyboardInterrupt("killed right after batches.create")

    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.1)) as server:
        with _batch_client(server, recorder=crash) as first, pytest.raises(KeyboardInterrupt):
            first.run(MODEL, REQUESTS)
        with _batch_client(server) as rerun:
            results = rerun.run(MODEL, REQUESTS)
        assert rerun.submitted == [] and len(server.batch_api.created_batches()) == 1
        assert all(r.ok for r in results.values()) and _answered_once(server)


@pytest.mark.parametrize("outcome", ["failed", "expired"])
def test_rejected_or_expired_batches_go_online_once(outcome):
    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.1, outcome=outcome)) as server:
        with _batch_client(server) as client:
            results = client.run(MODEL, REQUESTS)
        assert all(r.ok for r in results.values()) and len(results) == len(REQUESTS)
        assert _answered_once(server)  # the expired batch's answered half is not paid again on-line


@pytest.mark.parametrize("outcome, cause", [("failed", "batch_rejected"), ("expired", "batch_expired")])
def test_rejected_or_expired_batches_without_online_retry_name_the_cause(outcome, cause):
    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.1, outcome=outcome)) as server:
        with _batch_client(server, online=False) as client:
            results = client.run(MODEL, REQUESTS)
    errors = [r.error for r in results.values() if not r.ok]
    assert len(results) == len(REQUESTS)
    assert len(errors) == (len(REQUESTS) if outcome == "failed" else len(REQUESTS) // 2)
    assert all(cause in e for e in errors)


def test_one_key_with_two_prompts_is_refused():
    with StandInServer(BACKEND) as server, _batch_client(server) as client:
        with pytest.raises(ValueError, match="key-00"):
            client.run(MODEL, [BatchRequest("key-00", "a"), BatchRequest("key-00", "b")])


def test_a_recorded_batch_the_provider_does_not_know_is_redone_once():
    records = [{"model": MODEL, "batch_id": "batch_from_elsewhere", "keys": [r.key for r in REQUESTS], "meta": {}}]
    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.1)) as server:
        with _batch_client(server) as client:
            results = client.run(MODEL, REQUESTS, recorded=records)
        assert all(r.ok for r in results.values()) and _answered_once(server)
        assert server.batch_api.created_batches() == []  # answered on-line: the unknown batch is never assumed paid


def test_complete_batch_has_the_online_clients_contract_and_resumes_from_recorded_batches():
    records: list[dict] = []
    prompts = [r.prompt for r in REQUESTS[:4]] + ["", REQUESTS[0].prompt]  # a blank and a duplicate

    def record(model, batch_id, keys, meta):
        records.append({"model": model, "batch_id": batch_id, "keys": list(keys), "meta": dict(meta)})

    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.3)) as server:
        options = dict(recorder=record, recorded=lambda: list(records))
        with _batch_client(server, max_wait_s=0.05, **options) as first:
            first.complete_batch(MODEL, prompts)  # gives up waiting, as a killed job would
        with _batch_client(server, **options) as rerun:
            results = rerun.complete_batch(MODEL, prompts)
        assert len(server.batch_api.created_batches()) == 1
        assert [r.label for r in results[:4]] == [BACKEND.label_for(MODEL, p) for p in prompts[:4]]
        assert results[4].error == "empty prompt; not called" and results[5].label == results[0].label
        assert all(server.answered_count(MODEL, p) == 1 for p in prompts[:4])


def test_batches_recorded_in_the_answer_store_are_resumed_by_a_new_process(tmp_path):
    """The recorder and the recorded batches are the durable answer store's (a new AnswerStore
    object stands for the restarted job's process)."""
    from smart_spark.store import AnswerStore, answer_key

    with StandInServer(BACKEND, batch=BatchConfig(completion_delay_s=0.4)) as server:
        store = AnswerStore(str(tmp_path / "answers"))
        prompts = [r.prompt for r in REQUESTS]
        with _batch_client(server, max_wait_s=0.05, recorder=store.record_batch, recorded=store.batches) as first:
            assert all("resumes the wait" in r.error for r in first.complete_batch(MODEL, prompts))
        restarted = AnswerStore(str(tmp_path / "answers"))
        (recorded,) = restarted.batches()
        assert recorded["keys"] == [answer_key(MODEL, p, max_tokens=16) for p in prompts]
        with _batch_client(server, recorder=restarted.record_batch, recorded=restarted.batches) as rerun:
            results = rerun.complete_batch(MODEL, prompts)
        assert rerun.submitted == [] and server.batch_api.created_batches() == [recorded["batch_id"]]
        assert all(r.ok for r in results) and _answered_once(server)
