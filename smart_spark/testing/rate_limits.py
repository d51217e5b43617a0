"""The stand-in server's account limits, enforced the way OpenAI does.

Each model has its own requests- and tokens-per-minute limit. A request
counts ``prompt tokens (about 4 characters each) + max_tokens`` against the
token limit when it arrives, as OpenAI counts it. Like OpenAI, the minute
limit is enforced over short windows: the buckets refill continuously and
hold ``window_s`` seconds of refill (6,000 rpm with the default 1 s window
admits at most 100 requests in any second), so a client cannot burst a whole
minute's allowance at once.

A refused request gets a 429 with ``Retry-After`` / ``retry-after-ms`` (the
time until the buckets can pay for it); every response carries
``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` and
``x-ratelimit-reset-*`` (reset formatted like OpenAI's, e.g. ``"0.25s"``,
``"1m3s"``). A refused request is not debited, so a client that keeps
retrying does not lock itself out.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any, Callable


def request_tokens(request: dict[str, Any]) -> int:
    """Tokens a chat request counts against ``tpm``: every message's text plus ``max_tokens``."""
    chars = 0
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    max_tokens = request.get("max_tokens") or request.get("max_completion_tokens") or 0
    return -(-chars // 4) + (int(max_tokens) if isinstance(max_tokens, (int, float)) else 0)


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``"20ms"``, ``"1.5s"``, ``"6m0s"``."""
    if seconds < 1.0:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}m{rest:.3g}s" if minutes else f"{rest:.3g}s"


class _Bucket:
    def __init__(self, per_minute: float, window_s: float, now: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * window_s)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until the bucket holds ``cost`` (a cost above capacity waits for a full bucket)."""
        return max(min(cost, self.capacity) - self.level, 0.0) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": f"{self.per_minute:g}",
            f"x-ratelimit-remaining-{kind}": str(max(int(self.level), 0)),
            f"x-ratelimit-reset-{kind}": format_duration((self.capacity - self.level) / self.rate),
        }


class AccountLimits:
    """Per-model requests/tokens-per-minute buckets (thread-safe); None limits are not enforced."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0 per minute, got {value!r}")
        if not window_s > 0:
            raise ValueError(f"the rate-limit window must be > 0 s, got {window_s!r}")
        self.rpm, self.tpm, self.window_s = rpm, tpm, window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[_Bucket | None, _Bucket | None]] = {}
        self._refused: Counter[str] = Counter()

    @property
    def enabled(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def admit(self, model: str, tokens: int) -> tuple[float | None, dict[str, str]]:
        """(None if admitted else seconds to wait, the x-ratelimit headers to send)."""
        with self._lock:
            now = self._clock()
            buckets = self._buckets.get(model)
            if buckets is None:
                buckets = self._buckets[model] = (
                    _Bucket(self.rpm, self.window_s, now) if self.rpm else None,
                    _Bucket(self.tpm, self.window_s, now) if self.tpm else None,
                )
            costs = (1.0, float(tokens))
            wait = 0.0
            for bucket, cost in zip(buckets, costs):
                if bucket is not None:
                    bucket.refill(now)
                    wait = max(wait, bucket.wait_for(cost))
            if wait == 0.0:
                for bucket, cost in zip(buckets, costs):
                    if bucket is not None:
                        bucket.level -= cost
            else:
                self._refused[model] += 1
            headers: dict[str, str] = {}
            for bucket, kind in zip(buckets, ("requests", "tokens")):
                if bucket is not None:
                    headers.update(bucket.headers(kind))
            return (wait or None), headers

    def refused(self) -> dict[str, int]:
        """model -> requests refused with a 429 for exceeding a limit."""
        with self._lock:
            return dict(self._refused)

    def reset_counts(self) -> None:
        with self._lock:
            self._refused.clear()
