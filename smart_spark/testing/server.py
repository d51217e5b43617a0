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

The HTTP/1.1 keep-alive transport is a small asyncio server on one background
thread (stdlib only): a waiting answer costs a timer, not a thread, and the
server shares the benchmark machine's two cores with the client, so its CPU per
request is kept low (no per-request thread switch or ``email`` header parsing).
It is a test fixture, not a production server: it speaks only what OpenAI
clients send (Content-Length or chunked bodies, keep-alive).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from http import HTTPStatus
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
    ``latency_s`` takes precedence). ``count_prompts=False`` counts per model only
    (benchmarks: no per-prompt state in the process running the server). A "timeout" fault is counted as a fault,
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
        count_prompts: bool = True,
    ) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s!r}")
        self.backend = backend
        self.faults = faults or FaultConfig()
        self.latency_s = latency_s
        self._address = (host, port)
        self._injector = FaultInjector(self.faults, seed)
        self.limits = AccountLimits(rpm, tpm, window_s=rate_window_s)
        self._counters = RequestCounters(per_prompt=count_prompts)
        self.batch_api = BatchAPI(backend, self._counters, self._completion_body, batch)
        self._ids = itertools.count(1)
        self._transport: _AsyncHTTP | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "StandInServer":
        if self._transport is not None:
            raise RuntimeError("the stand-in server is already running")
        self._transport = _AsyncHTTP(self._address, self._dispatch).start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection (waiting answers are dropped)."""
        if self._transport is None:
            return
        self._transport.stop()
        self._transport = None

    def __enter__(self) -> "StandInServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._transport is None:
            raise RuntimeError("the stand-in server is not running")
        return self._transport.port

    @property
    def thread_id(self) -> int | None:
        """The OS id of the thread serving HTTP (benchmarks read its CPU time apart from the process's)."""
        if self._transport is None:
            raise RuntimeError("the stand-in server is not running")
        return self._transport.thread_id

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
    def _dispatch(self, method: str, path: str, content_type: str, raw: bytes) -> "_Reply":
        """The reply to one HTTP request (runs on the server's loop: must not block)."""
        if self.batch_api.handles(path):
            if method == "GET":
                return _Reply(*self.batch_api.get(path))
            if method == "POST":
                return _Reply(*self.batch_api.post(path, content_type, raw))
        elif method == "GET" and path.rstrip("/") == _MODELS_PATH:
            return _Reply(200, {}, self._models_body())
        elif method == "POST" and path.rstrip("/") == _COMPLETIONS_PATH:
            try:
                request = json.loads(raw)
            except ValueError:
                return _Reply(*_error(400, "The request body is not valid JSON", "invalid_json"))
            if not isinstance(request, dict):
                return _Reply(*_error(400, "The request body must be a JSON object", "invalid_json"))
            return self._complete(request)
        return _Reply(*_error(404, f"Unknown path {path}", "unknown_url"))

    def _complete(self, request: dict[str, Any]) -> "_Reply":
        """(status, extra headers, body) for one chat completion request, within the account limits."""
        if not self.limits.enabled:
            return self._answer(request)
        model = str(request.get("model"))
        wait, limit_headers = self.limits.admit(model, request_tokens(request))
        if wait is not None:
            self._counters.request(model, _user_message(request.get("messages")) or "")
            self._counters.fault(model)
            status, _, body = _error(429, f"Rate limit reached for {model} (stand-in --rpm/--tpm)", "rate_limit_exceeded", "requests")
            return _Reply(status, {**limit_headers, "Retry-After": _seconds(wait),
                                   "retry-after-ms": str(math.ceil(wait * 1000))}, body)
        reply = self._answer(request)
        reply.headers = {**limit_headers, **reply.headers}
        return reply

    def _answer(self, request: dict[str, Any]) -> "_Reply":
        """The reply and how long to wait before sending it (the model's latency)."""
        model = request.get("model")
        prompt = _user_message(request.get("messages"))
        if not isinstance(model, str) or prompt is None:
            return _Reply(*_error(400, "Request needs a 'model' string and a user message in 'messages'", "missing_field"))
        self._counters.request(model, prompt)
        try:
            answer = self.backend.answer(model, prompt)
        except BackendError as exc:
            return _Reply(*_error(exc.status, str(exc), exc.code, exc.error_type))

        fault = self._injector.draw()
        if fault is Fault.RATE_LIMIT:
            self._counters.fault(model)
            retry_after = self.faults.retry_after_s
            headers = {"Retry-After": _seconds(retry_after), "retry-after-ms": str(int(retry_after * 1000))}
            status, _, body = _error(429, "Rate limit reached (injected by the stand-in server)", "rate_limit_exceeded", "requests")
            return _Reply(status, headers, body)
        if fault is Fault.SERVER_ERROR:
            self._counters.fault(model)
            return _Reply(*_error(500, "The server had an error (injected by the stand-in server)", None, "server_error"))

        latency = self.backend.latency_s(model)
        delay = self.latency_s if latency is None else latency
        if fault is Fault.TIMEOUT:
            self._counters.fault(model)
            return _Reply(200, {}, self._completion_body(model, answer), delay + self.faults.timeout_sleep_s)
        if fault is Fault.MALFORMED:
            self._counters.fault(model)
            return _Reply(200, {}, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess', delay)
        if fault is Fault.EMPTY_CHOICES:
            self._counters.fault(model)
            return _Reply(200, {}, self._completion_body(model, None), delay)
        body = self._completion_body(model, answer, _top_logprobs_wanted(request))
        return _Reply(200, {}, body, delay, on_sent=lambda: self._counters.answered(model, prompt))

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


@dataclass
class _Reply:
    """One HTTP response: sent after ``delay_s``; ``on_sent`` runs as it is sent (answer counting)."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay_s: float = 0.0
    on_sent: Any = field(default=None, repr=False)


class _AsyncHTTP:
    """HTTP/1.1 keep-alive transport on an asyncio loop in one daemon thread.

    ``dispatch(method, path, content_type, body) -> _Reply`` runs on the loop.
    Each connection is an :class:`asyncio.Protocol` (:class:`_Connection`): a
    request is parsed from the bytes received and its reply is sent by a timer
    after its delay, so an answer waiting out its latency costs one timer handle,
    not a task, a coroutine or a thread (the stand-in shares the benchmark's two
    cores with the client it serves).
    """

    BACKLOG = 512  # 32+ clients connect at once; a small backlog drops SYNs

    def __init__(self, address: tuple[str, int], dispatch: Any) -> None:
        self._address = address
        self.dispatch = dispatch
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_Connection] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stand-in-llm", daemon=True)
        self.port = 0

    @property
    def thread_id(self) -> int | None:
        return self._thread.native_id

    def start(self) -> "_AsyncHTTP":
        self._thread.start()
        bound: Future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = bound.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for connection in list(self.connections):
                connection.close()  # also drops replies waiting out their latency

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()

    async def _listen(self) -> int:
        host, port = self._address
        self._server = await self._loop.create_server(lambda: _Connection(self), host, port, backlog=self.BACKLOG)
        return self._server.sockets[0].getsockname()[1]


class _BadRequest(Exception):
    """A request the transport cannot read; answered with a 400 and the connection closed."""


class _Connection(asyncio.Protocol):
    """One client connection: requests are served in order, one at a time (HTTP/1.1 without pipelining overlap).

    Bytes that arrive while a reply waits out its delay stay buffered and are
    parsed once it is sent.
    """

    MAX_HEAD = 64 * 1024

    def __init__(self, http: _AsyncHTTP) -> None:
        self._http = http
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiting: asyncio.TimerHandle | None = None  # the reply being delayed
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._http.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiting is None:
            self._serve_buffered()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._http.connections.discard(self)
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None

    def close(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def _serve_buffered(self) -> None:
        while not self._closed and self._waiting is None:
            try:
                request = _parse_request(self._buffer, self.MAX_HEAD)
            except _BadRequest as exc:
                self._send(_Reply(*_error(400, str(exc), "bad_request")), keep_alive=False)
                return
            if request is None:
                return  # incomplete: wait for more bytes
            method, path, content_type, body, keep_alive = request
            reply = self._http.dispatch(method, path, content_type, body)
            if reply.delay_s > 0:
                self._waiting = asyncio.get_running_loop().call_later(reply.delay_s, self._send_delayed, reply, keep_alive)
                return
            self._send(reply, keep_alive)

    def _send_delayed(self, reply: "_Reply", keep_alive: bool) -> None:
        self._waiting = None
        self._send(reply, keep_alive)
        self._serve_buffered()

    def _send(self, reply: "_Reply", keep_alive: bool) -> None:
        if self._closed or self._transport is None:
            return
        if reply.on_sent is not None:  # before the write: a client reading the counters after its answer sees it
            reply.on_sent()
        self._transport.write(_encode(reply, keep_alive))
        if not keep_alive:
            self._closed = True
            self._transport.close()


def _parse_request(buffer: bytearray, max_head: int) -> tuple[str, str, str, bytes, bool] | None:
    """(method, path, content type, body, keep-alive) of the first whole request in ``buffer``, removed from it.

    None while the request is incomplete. Reads only the headers it needs.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > max_head:
            raise _BadRequest("Request head too large")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _BadRequest("Malformed request line")
    length = content_type = transfer = connection = b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = value.strip()
        elif name == b"content-type":
            content_type = value.strip()
        elif name == b"transfer-encoding":
            transfer = value.strip().lower()
        elif name == b"connection":
            connection = value.strip().lower()
    start = end + 4
    if b"chunked" in transfer:
        chunked = _dechunk(buffer, start)
        if chunked is None:
            return None
        body, consumed = chunked
    else:
        try:
            size = int(length or 0)
        except ValueError:
            raise _BadRequest("Malformed Content-Length") from None
        if len(buffer) < start + size:
            return None
        body, consumed = bytes(buffer[start : start + size]), start + size
    del buffer[:consumed]
    method, path, version = (part.decode("latin-1") for part in parts)
    keep_alive = version == "HTTP/1.1" and connection != b"close"
    return method, path, content_type.decode("latin-1"), body, keep_alive


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, bytes used up to the end of the trailers) of a chunked body at ``start``; None when incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[at:line_end]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest("Malformed chunk size") from None
        at = line_end + 2
        if size == 0:
            while True:  # trailers up to an empty line
                line_end = buffer.find(b"\r\n", at)
                if line_end < 0:
                    return None
                blank = line_end == at
                at = line_end + 2
                if blank:
                    return bytes(body), at
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


def _encode(reply: "_Reply", keep_alive: bool) -> bytes:
    """The response's bytes; the status line and fixed headers are encoded once per status."""
    head = _HEADS.get(reply.status)
    if head is None:
        head = _HEADS[reply.status] = (f"HTTP/1.1 {reply.status} {_phrase(reply.status)}\r\nServer: StandInLLM/1\r\n"
                                       "Content-Type: application/json\r\nContent-Length: ").encode("latin-1")
    extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items()) if reply.headers else ""
    if not keep_alive:
        extra += "Connection: close\r\n"
    return b"".join((head, str(len(reply.body)).encode(), b"\r\n", extra.encode("latin-1"), b"\r\n", reply.body))


_HEADS: dict[int, bytes] = {}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


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
