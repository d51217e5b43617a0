"""What went wrong with an LLM call, named as what it is.

The SDK reports very different failures with the same few exception classes:
with the aiohttp transport a *refused connection* surfaces as
``APITimeoutError`` ("did not answer within 30 s"), and an unknown host as a
plain "Connection error.". A user debugging a job needs the real cause, and the
client must not retry what retrying cannot fix, so :func:`classify_failure`
walks the exception's cause chain and returns a :class:`Failure` with a
message naming the model, the endpoint and the cause, whether a retry can help,
and how many retries are worth it.

Shared by the client (every paid call) and the preflight (free checks before
the run), so both report a failure in the same words.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import openai

from smart_spark.llm.retry import is_retryable_status, retry_after_seconds

#: Retries after a refused connection: a server that is restarting comes back
#: within a second or two; one that is not running never does.
REFUSED_RETRIES = 2
#: Longest wait between those retries, seconds.
REFUSED_MAX_DELAY = 0.5

# Statuses whose bare provider message does not say what to fix.
_STATUS_CAUSES = {
    401: "unauthorized: {endpoint} rejected the API key",
    403: "forbidden: the key may not use this model at {endpoint}",
    404: "not found: {endpoint} does not know this model (or the base_url path is wrong)",
}


@dataclass(frozen=True)
class Failure:
    """One failed call. ``kind`` is a stable word for code and tests; ``message`` is for people.

    ``retry_limit`` caps the retries for this kind below the client's own
    ``max_retries`` (None: no extra cap); ``max_delay`` caps each backoff wait.
    """

    kind: str
    message: str
    retryable: bool
    retry_after: float | None = None
    retry_limit: int | None = None
    max_delay: float | None = None
    status: int | None = None


def classify_failure(exc: BaseException, model: str, endpoint: str | None, *, timeout: float) -> Failure:
    """The :class:`Failure` behind ``exc`` raised while calling ``model`` at ``endpoint``."""
    endpoint = endpoint or "the default OpenAI endpoint"
    where = f"{model} at {endpoint}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        kind = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}.get(
            status, "server_error" if status >= 500 else "http_error"
        )
        message = f"HTTP {status} from {model}: {_status_message(exc)}"
        if status in _STATUS_CAUSES:
            message += "; " + _STATUS_CAUSES[status].format(endpoint=endpoint)
        return Failure(
            kind,
            message,
            is_retryable_status(status),
            retry_after=retry_after_seconds(exc.response.headers),
            status=status,
        )
    root = _root_os_error(exc)
    if isinstance(root, socket.gaierror) or _is_dns_error(exc):
        detail = root.strerror if isinstance(root, socket.gaierror) and root.strerror else "name not resolved"
        # "Temporary failure in name resolution" may pass; an unknown name never does.
        transient = isinstance(root, socket.gaierror) and root.errno == socket.EAI_AGAIN
        return Failure(
            "dns",
            f"DNS lookup failed for the host of {where} ({detail})",
            transient,
            retry_limit=REFUSED_RETRIES if transient else None,
            max_delay=REFUSED_MAX_DELAY if transient else None,
        )
    if isinstance(root, ConnectionRefusedError):
        return Failure(
            "connection_refused",
            f"connection to {where} refused (nothing is listening there: is the server running, the port right?)",
            True,
            retry_limit=REFUSED_RETRIES,
            max_delay=REFUSED_MAX_DELAY,
        )
    if isinstance(root, ssl.SSLError) or any(isinstance(e, ssl.SSLError) for e in _chain(exc)):
        return Failure("tls", f"TLS handshake with {where} failed ({root or exc})", False)
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError)):
        return Failure("timeout", f"{model} did not answer within {timeout:g} s", True)
    if isinstance(exc, openai.APIConnectionError) or root is not None:
        detail = f"{type(root).__name__}: {root}" if root is not None else type(exc.__cause__ or exc).__name__
        return Failure("connection", f"connection to {where} failed ({detail})", True)
    return Failure("error", f"call to {where} failed ({type(exc).__name__}: {exc})", False)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, outermost first (cycle-safe)."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in out):
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _root_os_error(exc: BaseException) -> OSError | None:
    """The innermost OS-level error in the chain (refused, DNS, reset, ...), if any.

    aiohttp keeps it in ``os_error`` as well as in the chain; both are looked at.
    """
    found: OSError | None = None
    for error in _chain(exc):
        inner = getattr(error, "os_error", None)
        if isinstance(inner, OSError):
            found = inner
        elif isinstance(error, OSError) and not isinstance(error, (TimeoutError, asyncio.TimeoutError)):
            found = error
    return found


def _is_dns_error(exc: BaseException) -> bool:
    return any(type(e).__name__ == "ClientConnectorDNSError" for e in _chain(exc))


def _status_message(exc: openai.APIStatusError) -> str:
    """The provider's ``error.message`` when the body has one (shorter than the full body)."""
    body: Any = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str):
            return message
    return exc.message
