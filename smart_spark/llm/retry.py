"""When to retry a failed LLM call, and how long to wait first.

Exponential backoff with jitter spreads the retries of many concurrent calls
so they do not hit a rate-limited endpoint in lockstep; a server's
``Retry-After`` (or OpenAI's ``retry-after-ms``) is obeyed instead when given.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Mapping

# Statuses worth retrying: timeouts, conflicts, rate limits and server errors.
RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, then ``Retry-After``), if any."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # an HTTP date
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def backoff_delay(
    retry: int,
    *,
    base: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to sleep before retry number ``retry`` (1 for the first retry).

    Without ``retry_after``: "equal jitter", uniform in [cap/2, cap] with
    ``cap = min(maximum, base * 2**(retry-1))``. With it: the requested wait
    plus up to 20 % jitter. ``maximum`` bounds every wait, so a hostile
    ``Retry-After: 3600`` cannot stall a Spark task for an hour.
    """
    draw = (rng or random).random()
    if retry_after is not None:
        return min(retry_after * (1.0 + 0.2 * draw), maximum)
    cap = min(maximum, base * 2.0 ** (retry - 1))
    return cap / 2.0 + cap / 2.0 * draw
