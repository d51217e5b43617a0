"""Free checks before the first paid call (smart_spark.llm.preflight), the stand-in server's /models,
and paid calls that fail: each cause reported as what it is, and not retried when retrying cannot help
(before, a refused connection read "did not answer within 30 s (gave up after 7 attempts)").

Every endpoint here is local: the stand-in server, a closed port, a socket that
accepts and never answers, a tiny server that rejects every key, and a
``.invalid`` host name (RFC 6761: never resolves).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.errors import PreflightError, find_smart_error
from smart_spark.llm.client import LLMClient
from smart_spark.llm.failures import REFUSED_RETRIES
from smart_spark.llm.preflight import check_models
from smart_spark.testing import SimulatedBackend, SimulatedModel, StandInServer

BACKEND = SimulatedBackend(
    labels=("Yes", "No"),
    models={"ref": SimulatedModel(agreement=1.0), "cheap": SimulatedModel(agreement=0.9)},
    reference="ref",
)


def _catalogue(base_url: str, *names: str, **fields) -> ModelCatalogue:
    return ModelCatalogue(tuple(ModelSpec(n, 1e-6, 1e-6, base_url=base_url, **fields) for n in names))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.fixture()
def server():
    with StandInServer(BACKEND) as running:
        yield running


@pytest.fixture()
def silent_port():
    """A socket that accepts connections (the kernel does) but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


class _RejectingHandler(BaseHTTPRequestHandler):
    """Answers every request with OpenAI's 401, quoting the key it was sent."""

    def _reject(self) -> None:
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                                     "param": None, "code": "invalid_api_key"}}).encode()
        if self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reject

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def rejecting_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


# ------------------------------------------------------------ the stand-in server
def test_stand_in_lists_exactly_its_models(server):
    with urllib.request.urlopen(server.base_url + "/models") as response:
        listing = json.load(response)
    assert listing["object"] == "list"
    assert sorted(m["id"] for m in listing["data"]) == ["cheap", "ref"]
    assert all(m["object"] == "model" for m in listing["data"])


def test_stand_in_unknown_model_gets_openai_404(server):
    body = json.dumps({"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(server.base_url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 404
    error = json.load(caught.value)["error"]
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "gpt-nope" in error["message"] and error["param"] is None


# ------------------------------------------------------------------ check_models
def test_known_models_pass_and_nothing_is_paid(server):
    check_models(_catalogue(server.base_url, "ref", "cheap"), ["ref", "cheap"])
    assert server.counters() == {}  # GET /models only: no completion request reached the server


def test_unknown_model_is_named_before_any_call(server):
    catalogue = _catalogue(server.base_url, "ref", "cheap", "gpt-unknown")
    with pytest.raises(PreflightError) as caught:
        check_models(catalogue, catalogue.names)
    message = str(caught.value)
    assert "model 'gpt-unknown' is not known to its endpoint" in message
    assert "GET /models lists ['cheap', 'ref']" in message
    assert "'ref'" not in message.split("lists")[0]  # only the unknown model is blamed
    assert server.counters() == {}


def test_connection_refused_is_named_fast():
    catalogue = _catalogue(f"http://127.0.0.1:{closed_port()}/v1", "ref", "cheap")
    start = time.perf_counter()
    with pytest.raises(PreflightError) as caught:
        check_models(catalogue, catalogue.names)
    assert time.perf_counter() - start < 5
    assert "refused" in str(caught.value) and "['ref', 'cheap']" in str(caught.value)
    assert "did not answer" not in str(caught.value)


def test_dns_failure_is_named():
    catalogue = _catalogue("http://no-such-host.invalid/v1", "ref")
    with pytest.raises(PreflightError, match="DNS lookup failed for the host of ref at http://no-such-host.invalid/v1"):
        check_models(catalogue, catalogue.names, timeout=5)


def test_timeout_is_named(silent_port):
    catalogue = _catalogue(f"http://127.0.0.1:{silent_port}/v1", "ref")
    start = time.perf_counter()
    with pytest.raises(PreflightError, match=r"ref did not answer within 0.5 s"):
        check_models(catalogue, catalogue.names, timeout=0.5)
    assert time.perf_counter() - start < 5


def test_missing_key_is_named_without_calling(monkeypatch):
    monkeypatch.delenv("SMART_TEST_MISSING_KEY", raising=False)
    catalogue = _catalogue(f"http://127.0.0.1:{closed_port()}/v1", "ref", api_key_env="SMART_TEST_MISSING_KEY")
    with pytest.raises(PreflightError, match="environment variable SMART_TEST_MISSING_KEY .* is not set"):
        check_models(catalogue, catalogue.names)


def test_rejected_key_is_named_and_redacted(monkeypatch, rejecting_server):
    monkeypatch.setenv("SMART_TEST_KEY", "sk-test-secret-123456")
    catalogue = _catalogue(rejecting_server, "ref", api_key_env="SMART_TEST_KEY")
    with pytest.raises(PreflightError) as caught:
        check_models(catalogue, catalogue.names)
    message = str(caught.value)
    assert "HTTP 401" in message and "rejected the API key" in message
    assert "sk-test-secret-123456" not in message and "[REDACTED]" in message


def test_request_mode_for_endpoints_without_models(server, rejecting_server):
    # 'request': one tiny chat request (the only preflight that is paid, hence opt-in).
    check_models(_catalogue(server.base_url, "ref", preflight="request"), ["ref"])
    assert server.counters()["ref"]["requests"] == 1
    with pytest.raises(PreflightError, match="HTTP 401"):
        check_models(_catalogue(rejecting_server, "ref", preflight="request"), ["ref"])
    # 'none': only the key is checked, so even a closed port passes.
    check_models(_catalogue(f"http://127.0.0.1:{closed_port()}/v1", "ref", preflight="none"), ["ref"])


def test_endpoint_without_models_route_says_how_to_opt_out(server):
    # A base_url whose /models is a 404 (the stand-in serves only under /v1).
    catalogue = _catalogue(server.base_url.removesuffix("/v1") + "/other", "ref")
    with pytest.raises(PreflightError, match="GET /models is not available .* 'preflight: request'"):
        check_models(catalogue, catalogue.names)


def test_catalogue_preflight_field():
    spec = ModelSpec.from_dict({"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1, "preflight": "none"})
    assert spec.preflight == "none" and spec.to_dict()["preflight"] == "none"
    assert "preflight" not in ModelSpec("m", 1e-6, 1e-6).to_dict()  # the default is not written
    with pytest.raises(ValueError, match="preflight must be one of"):
        ModelSpec("m", 1e-6, 1e-6, preflight="ping")


def test_preflight_error_survives_spark_wrapping(server):
    catalogue = _catalogue(server.base_url, "gpt-unknown")
    with pytest.raises(PreflightError) as caught:
        check_models(catalogue, catalogue.names)
    wrapped = RuntimeError(f"Job aborted due to stage failure: Task 0 failed: {caught.value}\n\tat org.apache...")
    recovered = find_smart_error(wrapped)
    assert isinstance(recovered, PreflightError) and "gpt-unknown" in str(recovered)


# ------------------------------------------------- paid calls that fail (LLMClient)
LABELS = ["Yes", "No"]
SLOW_BACKOFF = dict(max_retries=6, backoff_base=0.5, backoff_max=30.0)


def test_connection_refused_is_named_and_given_up_fast():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with LLMClient(_catalogue(url, "ref"), LABELS, timeout=30.0, **SLOW_BACKOFF) as client:
        start = time.perf_counter()
        [result] = client.complete_batch("ref", ["prompt"])
        elapsed = time.perf_counter() - start
    assert result.error.startswith(f"connection to ref at {url} refused")
    assert "did not answer" not in result.error
    assert result.attempts == 1 + REFUSED_RETRIES  # a couple of fast retries, not max_retries
    assert elapsed < 3.0
    assert result.cost == 0.0 and result.label is None


def test_dns_failure_is_named_and_not_retried():
    with LLMClient(_catalogue("http://no-such-host.invalid/v1", "ref"), LABELS, timeout=5.0, **SLOW_BACKOFF) as client:
        [result] = client.complete_batch("ref", ["prompt"])
    assert result.error.startswith("DNS lookup failed for the host of ref at http://no-such-host.invalid/v1")
    assert result.attempts == 1


def test_unauthorized_is_named_and_not_retried(monkeypatch, rejecting_server):
    monkeypatch.setenv("SMART_TEST_KEY", "sk-test-secret-123456")
    catalogue = _catalogue(rejecting_server, "ref", api_key_env="SMART_TEST_KEY")
    with LLMClient(catalogue, LABELS, **SLOW_BACKOFF) as client:
        [result] = client.complete_batch("ref", ["prompt"])
    assert result.error.startswith("HTTP 401 from ref: Incorrect API key provided: [REDACTED]; unauthorized:")
    assert result.attempts == 1


def test_unknown_model_is_named_and_not_retried(server):
    with LLMClient(_catalogue(server.base_url, "gpt-unknown"), LABELS, **SLOW_BACKOFF) as client:
        [result] = client.complete_batch("gpt-unknown", ["prompt"])
    assert result.error.startswith("HTTP 404 from gpt-unknown: ")
    assert "does not know this model" in result.error
    assert result.attempts == 1
    assert server.counters()["gpt-unknown"]["answered"] == 0


def test_timeout_is_named_as_a_timeout(silent_port):
    url = f"http://127.0.0.1:{silent_port}/v1"
    with LLMClient(_catalogue(url, "ref"), LABELS, timeout=0.3, max_retries=1, backoff_base=0.0) as client:
        [result] = client.complete_batch("ref", ["prompt"])
    assert result.error == "ref did not answer within 0.3 s (gave up after 2 attempts)"
    assert result.attempts == 2  # timeouts may pass: retried up to max_retries


@pytest.mark.parametrize("kind", ["refused", "dns", "unknown model"])
def test_errors_name_their_model_in_a_batch(kind, server):
    url = {"refused": f"http://127.0.0.1:{closed_port()}/v1", "dns": "http://no-such-host.invalid/v1",
           "unknown model": server.base_url}[kind]
    with LLMClient(_catalogue(url, "m1"), LABELS, timeout=5.0, max_retries=6, backoff_base=0.01) as client:
        results = client.complete_batch("m1", [f"prompt {i}" for i in range(20)])
    assert all(not r.ok and "m1" in r.error for r in results)
    assert all(r.attempts <= 1 + REFUSED_RETRIES for r in results)
