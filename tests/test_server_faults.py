"""Each injected fault, seen by a plain HTTP client, and the counters that record it."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlparse

import pytest

from smart_spark.testing import FaultConfig, SimulatedBackend, SimulatedModel, StandInServer

BACKEND = SimulatedBackend(["Yes", "No"], {"ref": SimulatedModel(1.0)}, reference="ref")


def _post(server: StandInServer, prompt: str = "Is it overruling?", timeout: float = 5.0):
    url = urlparse(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    body = json.dumps({"model": "ref", "messages": [{"role": "user", "content": prompt}]})
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


@pytest.mark.parametrize(
    "faults, check",
    [
        (FaultConfig(rate_429=1.0, retry_after_s=0.25), "429"),
        (FaultConfig(rate_500=1.0), "500"),
        (FaultConfig(rate_malformed=1.0), "malformed"),
        (FaultConfig(rate_empty_choices=1.0), "empty"),
    ],
)
def test_each_fault(faults, check):
    with StandInServer(BACKEND, faults=faults) as server:
        status, headers, body = _post(server)
        if check == "429":
            assert status == 429
            assert headers["Retry-After"] == "0.25" and headers["retry-after-ms"] == "250"
            assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
        elif check == "500":
            assert status == 500 and json.loads(body)["error"]["type"] == "server_error"
        elif check == "malformed":
            assert status == 200
            with pytest.raises(ValueError):
                json.loads(body)
        else:
            assert status == 200 and json.loads(body)["choices"] == []
        assert server.counters()["ref"] == {"requests": 1, "answered": 0, "distinct_prompts": 1, "faults": 1}
        assert server.answered_count("ref", "Is it overruling?") == 0


def test_timeout_fault_stalls_longer_than_the_client_waits():
    with StandInServer(BACKEND, faults=FaultConfig(rate_timeout=1.0, timeout_sleep_s=1.0)) as server:
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            _post(server, timeout=0.2)
        assert time.perf_counter() - start < 0.5
        assert server.counters()["ref"]["faults"] == 1
        assert server.counters()["ref"]["answered"] == 0


def test_fault_rates_are_honoured_and_validated():
    with StandInServer(BACKEND, faults=FaultConfig(rate_429=0.3, rate_500=0.1), seed=3) as server:
        statuses = [_post(server, f"prompt {i}")[0] for i in range(400)]
        assert statuses.count(429) / 400 == pytest.approx(0.3, abs=0.07)
        assert statuses.count(500) / 400 == pytest.approx(0.1, abs=0.05)
        counts = server.counters()["ref"]
        assert counts["requests"] == 400 and counts["distinct_prompts"] == 400
        assert counts["answered"] + counts["faults"] == 400
        server.reset_counters()
        assert server.counters() == {}
    with pytest.raises(ValueError, match="sum to"):
        FaultConfig(rate_429=0.7, rate_500=0.5)
    with pytest.raises(ValueError, match="must be in"):
        FaultConfig(rate_timeout=-0.1)


def test_bad_requests_get_openai_shaped_errors():
    with StandInServer(BACKEND) as server:
        url = urlparse(server.base_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        connection.request("POST", "/v1/chat/completions", "{nope", {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 400 and json.loads(response.read())["error"]["code"] == "invalid_json"
        connection.request("GET", "/v1/embeddings")
        response = connection.getresponse()
        assert response.status == 404 and json.loads(response.read())["error"]["code"] == "unknown_url"


def test_stop_closes_keep_alive_connections_and_restarts():
    server = StandInServer(BACKEND).start()
    url = urlparse(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=2)
    connection.request("GET", "/v1/models")
    assert connection.getresponse().read()
    server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", "/v1/models")
        connection.getresponse()
    with server:
        assert _post(server)[0] == 200
