"""The API key never leaks: not in logs, repr, pickles, error texts or files written."""

from __future__ import annotations

import json
import logging
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cloudpickle
import pytest

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.llm import LLMClient
from smart_spark.testing import FaultConfig, SimulatedBackend, SimulatedModel, StandInServer

FAKE_KEY = "sk-fake-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
KEY_ENV = "SMART_SPARK_TEST_LLM_KEY"
BACKEND = SimulatedBackend(["Yes", "No"], {"ref": SimulatedModel(1.0)}, reference="ref")


class _EchoingAuthHandler(BaseHTTPRequestHandler):
    """A provider that rejects the key and quotes it back in the error (some do)."""

    protocol_version = "HTTP/1.1"
    seen_keys: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen_keys.append(key)
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                                     "code": "invalid_api_key", "param": None}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echoing_provider():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingAuthHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _catalogue(base_url: str) -> ModelCatalogue:
    return ModelCatalogue((ModelSpec("ref", 1e-6, 1e-6, base_url=base_url, api_key_env=KEY_ENV),))


def test_key_never_appears_anywhere(monkeypatch, tmp_path, caplog, capfd, echoing_provider):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    monkeypatch.setenv("OPENAI_LOG", "debug")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    blobs: list[bytes] = []

    faults = FaultConfig(rate_429=0.3, rate_500=0.2, rate_malformed=0.1, retry_after_s=0.01)
    with StandInServer(BACKEND, faults=faults) as server:
        with LLMClient(_catalogue(server.base_url), ["Yes", "No"], backoff_base=0.01, timeout=2.0) as client:
            results = client.complete_batch("ref", [f"prompt {i}" for i in range(30)])
            assert sum(r.ok for r in results) >= 28
            texts += [repr(client), str(client), repr(results), str(results)]
            blobs += [pickle.dumps(client), cloudpickle.dumps(client), pickle.dumps(results)]
            blobs.append(cloudpickle.dumps(lambda prompts: client.complete_batch("ref", prompts)))

    # A provider that quotes the key back in its error message.
    with LLMClient(_catalogue(echoing_provider), ["Yes", "No"]) as client:
        [rejected] = client.complete_batch("ref", ["prompt"])
    assert _EchoingAuthHandler.seen_keys[-1] == FAKE_KEY  # the key was read from the env var and sent
    assert rejected.error.startswith("HTTP 401 from ref: Incorrect API key provided: [REDACTED]; unauthorized: ")
    assert rejected.error.endswith("rejected the API key (gave up after 1 attempt)")
    texts += [rejected.error, repr(rejected)]

    captured = capfd.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    assert any("HTTP Request" in r.getMessage() or "Request options" in r.getMessage() for r in caplog.records)
    files = [path for path in Path(tmp_path).rglob("*") if path.is_file()]
    blobs += [path.read_bytes() for path in files]

    for text in texts:
        assert FAKE_KEY not in text
    for blob in blobs:
        assert FAKE_KEY.encode() not in blob


def test_missing_key_variable_is_a_clear_error_naming_the_variable(monkeypatch, echoing_provider):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with LLMClient(_catalogue(echoing_provider), ["Yes", "No"]) as client:
        with pytest.raises(RuntimeError, match=f"environment variable {KEY_ENV} .* is not set"):
            client.complete_batch("ref", ["prompt"])


def test_specs_without_a_key_variable_send_a_placeholder(echoing_provider):
    catalogue = ModelCatalogue((ModelSpec("ref", 0.0, 0.0, base_url=echoing_provider),))
    with LLMClient(catalogue, ["Yes", "No"]) as client:
        client.complete_batch("ref", ["prompt"])
    assert _EchoingAuthHandler.seen_keys[-1] == "not-needed"
