"""Which failure, if any, the stand-in server injects into a request.

The faults are the ones a production client must survive: rate limiting with
``Retry-After``, server errors, a response slower than the client's timeout,
a 200 whose body is not JSON, and a 200 with no choices.
"""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass


class Fault(enum.Enum):
    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    EMPTY_CHOICES = "empty_choices"


@dataclass(frozen=True)
class FaultConfig:
    """Probability of each fault per request (they are exclusive; the sum must be <= 1).

    ``timeout_sleep_s`` is how long a "timeout" response stalls before it is
    sent; make it longer than the client's timeout.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    rate_empty_choices: float = 0.0
    retry_after_s: float = 0.05
    timeout_sleep_s: float = 2.0

    def __post_init__(self) -> None:
        for fault, rate in self.rates():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {fault.value} must be in [0, 1], got {rate!r}")
        total = sum(rate for _, rate in self.rates())
        if total > 1.0 + 1e-12:
            raise ValueError(f"fault rates sum to {total:.3f} > 1")
        if self.retry_after_s < 0 or self.timeout_sleep_s < 0:
            raise ValueError("retry_after_s and timeout_sleep_s must be >= 0")

    def rates(self) -> tuple[tuple[Fault, float], ...]:
        return (
            (Fault.RATE_LIMIT, self.rate_429),
            (Fault.SERVER_ERROR, self.rate_500),
            (Fault.TIMEOUT, self.rate_timeout),
            (Fault.MALFORMED, self.rate_malformed),
            (Fault.EMPTY_CHOICES, self.rate_empty_choices),
        )


class FaultInjector:
    """Draws a fault per request from a seeded generator (thread-safe)."""

    def __init__(self, config: FaultConfig, seed: int = 0) -> None:
        self.config = config
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> Fault | None:
        with self._lock:
            u = self._random.random()
        for fault, rate in self.config.rates():
            if u < rate:
                return fault
            u -= rate
        return None
