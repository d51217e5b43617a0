"""A local OpenAI-compatible stand-in LLM server (real HTTP, stdlib only).

No machine running the tests reaches an LLM provider, so the client is tested
against this server: ``POST /v1/chat/completions`` answers from a replay or
simulated backend, optionally with injected faults; ``GET /v1/models`` lists
the backend's models. In-process use::

    with StandInServer(ReplayBackend.from_csv(path, catalogue)) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="not-needed")

CLI::

    python -m smart_spark.testing.server --port 8000 --simulate conf/simulated_models.yaml --rate-429 0.1
    python -m smart_spark.testing.server --port 8000 --simulate conf/simulated_models.yaml --rpm 6000 --tpm 2000000

``rpm`` / ``tpm`` enforce per-model account limits as OpenAI does (see
:mod:`smart_spark.testing.rate_limits`); ``/v1/files`` and ``/v1/batches`` are
OpenAI's Batch API (see :mod:`smart_spark.testing.batch_api`).

The stdlib threading server with HTTP/1.1 keep-alive sustains several hundred
requests/s with 100 ms latency on two cores (see jobs/bench_client.py), which
is what the client benchmark needs; it is a test fixture, not a production
server.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import replace
from typing import Any, Sequence

from smart_spark.catalogue import ModelCatalogue
from smart_spark.testing.batch_api import BatchAPI, BatchConfig
from smart_spark.testing.backends import (
    Answer,
    Backend,
    BackendError,
    ReplayBackend,
    SimulatedBackend,
    logprobs_content,
)
from smart_spark.testing.counters import RequestCounters
from smart_spark.testing.faults import Fault, FaultConfig, FaultInjector
from smart_spark.testing.rate_limits import AccountLimits, request_tokens

_COMPLETIONS_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"


class StandInServer:
    """The server on a background thread; a context manager exposing ``base_url``.

    ``latency_s`` delays every answered request (a simulated model's own
    ``latency_s`` takes precedence). A "timeout" fault is counted as a fault,
    not as an answer: it models a request the provider abandoned.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        faults: FaultConfig | None = None,
        latency_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        rpm: float | None = None,
        tpm: float | None = None,
        rate_window_s: float = 1.0,
        batch: BatchConfig | None = None,
    ) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s!r}")
        self.backend = backend
        self.faults = faults or FaultConfig()
        self.latency_s = latency_s
        self._address = (host, port)
        self._injector = FaultInjector(self.faults, seed)
        self.limits = AccountLimits(rpm, tpm, window_s=rate_window_s)
        self._counters = RequestCounters()
        self.batch_api = BatchAPI(backend, self._counters, self._completion_body, batch)
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "StandInServer":
        if self._httpd is not None:
            raise RuntimeError("the stand-in server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="stand-in-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency or a timeout fault
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._connections_lock:
            # Keep-alive connections would otherwise keep being served after stop().
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "StandInServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the stand-in server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}/v1"

    # ------------------------------------------------------------- counters
    def counters(self) -> dict[str, dict[str, int]]:
        """model -> {"requests", "answered", "distinct_prompts", "faults"}."""
        return self._counters.snapshot()

    def answered_count(self, model: str, prompt: str) -> int:
        """Successful 200 answers with a choice sent for (model, prompt)."""
        return self._counters.answered_count(model, prompt)

    def reset_counters(self) -> None:
        self._counters.reset()
        self.limits.reset_counts()

    def rate_limited(self) -> dict[str, int]:
        """model -> requests refused with a 429 for exceeding ``rpm`` / ``tpm`` (also counted as faults)."""
        return self.limits.refused()

    # ---------------------------------------------------- request handling
    def _track(self, connection: socket.socket, active: bool) -> None:
        with self._connections_lock:
            (self._connections.add if active else self._connections.discard)(connection)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _complete(self, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """(status, extra headers, body) for one chat completion request, within the account limits."""
        if not self.limits.enabled:
            return self._answer(request)
        model = str(request.get("model"))
        wait, limit_headers = self.limits.admit(model, request_tokens(request))
        if wait is not None:
            self._counters.request(model, _user_message(request.get("messages")) or "")
            self._counters.fault(model)
            status, _, body = _error(429, f"Rate limit reached for {model} (stand-in --rpm/--tpm)", "rate_limit_exceeded", "requests")
            return status, {**limit_headers, "Retry-After": _seconds(wait), "retry-after-ms": str(math.ceil(wait * 1000))}, body
        status, headers, body = self._answer(request)
        return status, {**limit_headers, **headers}, body

    def _answer(self, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        model = request.get("model")
        prompt = _user_message(request.get("messages"))
        if not isinstance(model, str) or prompt is None:
            return _error(400, "Request needs a 'model' string and a user message in 'messages'", "missing_field")
        self._counters.request(model, prompt)
        try:
            answer = self.backend.answer(model, prompt)
        except BackendError as exc:
            return _error(exc.status, str(exc), exc.code, exc.error_type)

        fault = self._injector.draw()
        if fault is Fault.RATE_LIMIT:
            self._counters.fault(model)
            retry_after = self.faults.retry_after_s
            headers = {"Retry-After": _seconds(retry_after), "retry-after-ms": str(int(retry_after * 1000))}
            status, _, body = _error(429, "Rate limit reached (injected by the stand-in server)", "rate_limit_exceeded", "requests")
            return status, headers, body
        if fault is Fault.SERVER_ERROR:
            self._counters.fault(model)
            return _error(500, "The server had an error (injected by the stand-in server)", None, "server_error")

        latency = self.backend.latency_s(model)
        self._sleep(self.latency_s if latency is None else latency)
        if fault is Fault.TIMEOUT:
            self._counters.fault(model)
            self._sleep(self.faults.timeout_sleep_s)
            return 200, {}, self._completion_body(model, answer)
        if fault is Fault.MALFORMED:
            self._counters.fault(model)
            return 200, {}, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess'
        if fault is Fault.EMPTY_CHOICES:
            self._counters.fault(model)
            return 200, {}, self._completion_body(model, None)
        self._counters.answered(model, prompt)
        return 200, {}, self._completion_body(model, answer, _top_logprobs_wanted(request))

    def _completion_body(self, model: str, answer: Answer | None, top_logprobs: int | None = None) -> bytes:
        """An OpenAI chat.completion; ``answer=None`` gives no choices and no usage.

        ``top_logprobs``: the request asked for log-probabilities (None: it did not).
        """
        body: dict[str, Any] = {
            "id": f"chatcmpl-standin-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": None,
        }
        if answer is not None:
            body["choices"] = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ]
            content = logprobs_content(answer, top_logprobs) if top_logprobs is not None else None
            if content is not None:
                body["choices"][0]["logprobs"] = {"content": content}
            body["usage"] = {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            }
        return json.dumps(body).encode("utf-8")

    def _models_body(self) -> bytes:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "stand-in"} for name in self.backend.model_names()]
        return json.dumps({"object": "list", "data": data}).encode("utf-8")


def with_base_url(catalogue: ModelCatalogue, base_url: str) -> ModelCatalogue:
    """``catalogue`` with every model pointed at ``base_url`` (e.g. a running stand-in server)."""
    return ModelCatalogue(tuple(replace(spec, base_url=base_url) for spec in catalogue))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512  # 32+ clients connect at once; the default backlog of 5 drops SYNs

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: StandInServer):
        self.owner = owner
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "StandInLLM/1"

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass  # the client went away (e.g. it timed out first)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: per-request logging would dominate the server's CPU."""

    def do_GET(self) -> None:
        if self.server.owner.batch_api.handles(self.path):
            self._send(*self.server.owner.batch_api.get(self.path))
        elif self.path.rstrip("/") == _MODELS_PATH:
            self._send(200, {}, self.server.owner._models_body())
        else:
            self._send(*_error(404, f"Unknown path {self.path}", "unknown_url"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.server.owner.batch_api.handles(self.path):
            self._send(*self.server.owner.batch_api.post(self.path, self.headers.get("Content-Type", ""), raw))
            return
        if self.path.rstrip("/") != _COMPLETIONS_PATH:
            self._send(*_error(404, f"Unknown path {self.path}", "unknown_url"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(*_error(400, "The request body is not valid JSON", "invalid_json"))
            return
        if not isinstance(request, dict):
            self._send(*_error(400, "The request body must be a JSON object", "invalid_json"))
            return
        self._send(*self.server.owner._complete(request))

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


def _top_logprobs_wanted(request: dict[str, Any]) -> int | None:
    """How many alternatives the request asked for (0 with bare ``logprobs``), or None."""
    if not request.get("logprobs"):
        return None
    top = request.get("top_logprobs")
    return int(top) if isinstance(top, int) and not isinstance(top, bool) else 0


def _user_message(messages: Any) -> str | None:
    """Text of the last user message (string content or a list of text parts)."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            return None
    return None


def _error(
    status: int, message: str, code: str | None, error_type: str = "invalid_request_error"
) -> tuple[int, dict[str, str], bytes]:
    """An error in OpenAI's JSON shape."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return status, {}, json.dumps(body).encode("utf-8")


def _seconds(value: float) -> str:
    return f"{value:g}"


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


# ------------------------------------------------------------------------ CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m smart_spark.testing.server",
        description="Local OpenAI-compatible stand-in LLM server (replay or simulate, with faults).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--replay", metavar="CSV", help="recorded answers, e.g. ../shared/data/overruling_12llm.csv")
    source.add_argument("--simulate", metavar="YAML", help="simulation config (its 'simulation:' section)")
    parser.add_argument(
        "--catalogue",
        metavar="YAML",
        help="with --replay: prices used to report usage that reproduces the recorded costs "
        "(e.g. conf/overruling_catalogue.yaml)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answered request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-timeout", type=float, default=0.0)
    parser.add_argument("--rate-malformed", type=float, default=0.0)
    parser.add_argument("--rate-empty-choices", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.05, help="Retry-After seconds sent with 429s")
    parser.add_argument("--timeout-sleep", type=float, default=2.0, help="stall of a 'timeout' fault, seconds")
    parser.add_argument("--rpm", type=_positive, default=None, help="requests per minute per model (429 above)")
    parser.add_argument("--tpm", type=_positive, default=None, help="tokens per minute per model (429 above)")
    parser.add_argument("--rate-window", type=_positive, default=1.0, help="seconds over which rpm/tpm are enforced")
    parser.add_argument("--batch-delay", type=float, default=0.5, help="seconds until a Batch API batch completes")
    parser.add_argument("--batch-fail-every", type=int, default=0, help="every n-th line of a batch fails (0: none)")
    parser.add_argument("--batch-outcome", choices=("completed", "failed", "expired"), default="completed")
    args = parser.parse_args(argv)
    if args.catalogue and not args.replay:
        parser.error("--catalogue only applies to --replay")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    backend: Backend
    if args.replay:
        backend = ReplayBackend.from_csv(args.replay, args.catalogue)
    else:
        backend = SimulatedBackend.from_yaml(args.simulate)
    faults = FaultConfig(
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_timeout=args.rate_timeout,
        rate_malformed=args.rate_malformed,
        rate_empty_choices=args.rate_empty_choices,
        retry_after_s=args.retry_after,
        timeout_sleep_s=args.timeout_sleep,
    )
    server = StandInServer(
        backend, faults=faults, latency_s=args.latency, host=args.host, port=args.port, seed=args.seed,
        rpm=args.rpm, tpm=args.tpm, rate_window_s=args.rate_window,
        batch=BatchConfig(args.batch_delay, args.batch_fail_every, args.batch_outcome),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(f"stand-in LLM server at {server.base_url} (models: {', '.join(backend.model_names())})", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        print(json.dumps(server.counters()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
