"""Pacing LLM calls under an account's requests- and tokens-per-minute limits.

A provider limits an account per model (``rpm``, ``tpm``), but a Spark job
calls from many tasks that do not talk to each other. Backing off on 429s
alone makes every task hammer the endpoint until it is told no, which with
100 executors is a 429 storm. Instead each task paces itself to its *share*
of the account's limit (``share = 1 / tasks running at once``), so the job as
a whole stays under the limit without coordination.

:class:`RateLimiter` is two token buckets (requests and tokens) refilled
continuously at ``limit * share / 60`` per second, holding at most
``burst_s`` seconds of refill. A call reserves its cost at once and sleeps
until the buckets can pay for it, so concurrent callers queue in order and
the emitted rate never exceeds the paced one. The bucket is kept small (a
fraction of a second of traffic): a provider that enforces its minute limit
over short windows (OpenAI quantises, e.g. 6,000 rpm as 100 per second)
then still sees a smooth stream, and the tasks' bursts together stay well
inside one window.

When the provider is tighter than declared, the limiter follows it for every
call of the process, not only the one that was refused (once a limit is known:
declared in the catalogue or learned from the headers, which OpenAI sends on
every response):

* ``x-ratelimit-limit-*`` below the declared limit: that limit is adopted;
* ``x-ratelimit-remaining-*`` at 0: nothing is sent until ``x-ratelimit-reset-*``
  (at most one interval of the account's rate);
* a 429's ``Retry-After``: nothing is sent for that long.

The operator computes the share on the driver (:func:`job_rate_share`) and
ships it to the tasks inside its ``ApplySpec`` (part of the cached client's
key, so a later job with another share never reuses a client paced for the
first). Code that builds its own clients in Spark tasks can instead set it as
a local property of the job (:func:`set_spark_rate_share` on the driver, in
the thread that runs the action; :func:`spark_task_share` in the task).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

#: Seconds of paced traffic a bucket may accumulate while idle.
DEFAULT_BURST_S = 0.1
#: Longest pause a ``remaining: 0`` header causes (the reset header may name a whole minute).
_MAX_HEADER_HOLD_S = 1.0

#: Spark local property carrying ``1 / tasks running at once`` to the tasks of a job.
RATE_SHARE_PROPERTY = "smart_spark.rateShare"
#: Spark conf stating how many apply tasks run at once (overrides what Spark reports; needed on some
#: Spark Connect services, whose conf names no cluster size).
TASKS_AT_ONCE_CONF = "spark.smart_spark.tasksAtOnce"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def estimate_request_tokens(prompt_chars: int, max_tokens: int) -> int:
    """Tokens a request counts against ``tpm`` before it is answered, as providers count it:
    the prompt (about four characters per token, rounded up) plus the completion it may use."""
    return -(-prompt_chars // 4) + max_tokens


def parse_duration(value: str | None) -> float | None:
    """Seconds in an OpenAI reset header (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"0.5"``), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def set_spark_rate_share(spark_context: Any, tasks_at_once: int) -> float:
    """Driver side: tasks of the jobs this thread starts next each pace to ``1 / tasks_at_once``."""
    if tasks_at_once < 1:
        raise ValueError(f"tasks_at_once must be >= 1, got {tasks_at_once!r}")
    share = 1.0 / tasks_at_once
    spark_context.setLocalProperty(RATE_SHARE_PROPERTY, repr(share))
    return share


def tasks_at_once(spark_context: Any, partitions: int) -> int:
    """How many of a stage's ``partitions`` tasks run at the same time: at most one per task slot."""
    cpus_per_task = int(spark_context.getConf().get("spark.task.cpus", "1"))
    slots = max(int(spark_context.defaultParallelism) // max(cpus_per_task, 1), 1)
    return max(min(partitions, slots), 1)


def job_rate_share(dataset: Any) -> float:
    """Driver side: the share of an account limit each task applying ``dataset`` may use.

    ``1 / tasks running at once``: the Spark conf :data:`TASKS_AT_ONCE_CONF` when set; on
    classic Spark, the dataset's partitions capped by the task slots; on Spark Connect (no
    SparkContext) the slots the session's conf names (``spark.default.parallelism``,
    ``local[N]``, executors x cores). When nothing tells, 1 with a warning: the tasks then
    rely on the provider's 429s and rate-limit headers.
    """
    spark = dataset.sparkSession
    stated = _conf(spark, TASKS_AT_ONCE_CONF)
    if stated is not None:
        try:
            tasks = int(stated)
        except ValueError:
            tasks = 0
        if tasks < 1:
            from smart_spark.errors import ConfigurationError

            raise ConfigurationError(f"{TASKS_AT_ONCE_CONF} must be an integer >= 1, got {stated!r}")
        return 1.0 / tasks
    if not type(dataset).__module__.startswith("pyspark.sql.connect"):
        return 1.0 / tasks_at_once(spark.sparkContext, dataset.rdd.getNumPartitions())
    slots = _slots_from_conf(spark)
    if slots is None:
        log.warning("rate limits: cannot tell how many tasks run at once on this Spark Connect session; each task "
                    "paces itself to the whole rpm / tpm (set %s to the cluster's task slots)", TASKS_AT_ONCE_CONF)
        return 1.0
    return 1.0 / slots


def _conf(spark: Any, key: str) -> str | None:
    try:
        value = spark.conf.get(key, None)
    except Exception:  # Spark Connect may refuse to read some confs
        return None
    return str(value) if value not in (None, "") else None


def _slots_from_conf(spark: Any) -> int | None:
    """Task slots from the session's conf alone (what Spark Connect can read)."""
    cpus_per_task = int(_conf(spark, "spark.task.cpus") or 1)
    parallelism = _conf(spark, "spark.default.parallelism")
    if parallelism and parallelism.isdigit():
        return max(int(parallelism) // max(cpus_per_task, 1), 1)
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", _conf(spark, "spark.master") or "")
    if match:
        cores = (os.cpu_count() or 1) if match.group(1) == "*" else int(match.group(1))
        return max(cores // max(cpus_per_task, 1), 1)
    executors, cores = _conf(spark, "spark.executor.instances"), _conf(spark, "spark.executor.cores")
    if executors and cores and executors.isdigit() and cores.isdigit():
        return max(int(executors) * int(cores) // max(cpus_per_task, 1), 1)
    return None


def spark_task_share() -> float | None:
    """Task side: the share the driver set for this job, or None (not in a Spark task, or not set)."""
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - pyspark is a dependency, but the client works without it
        return None
    context = TaskContext.get()
    value = context.getLocalProperty(RATE_SHARE_PROPERTY) if context is not None else None
    try:
        share = float(value) if value else None
    except ValueError:
        return None
    return share if share is not None and 0 < share <= 1 else None


class _Bucket:
    """One token bucket in units of requests or tokens; ``level`` may go negative (reserved debt)."""

    __slots__ = ("per_minute", "rate", "capacity", "level", "stamp", "_burst_s", "_share")

    def __init__(self, per_minute: float, share: float, burst_s: float, now: float) -> None:
        self._burst_s = burst_s
        self._share = share
        self.per_minute = per_minute
        self.rate = self.capacity = 0.0
        self.set_limit(per_minute)
        self.level = self.capacity
        self.stamp = now

    def set_limit(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute * self._share / 60.0
        self.capacity = max(1.0, self.rate * self._burst_s)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def hold(self, seconds: float, cost: float, now: float) -> None:
        """The next call of ``cost`` waits at least ``seconds`` (later ones stay paced behind it);
        a debt that already makes it wait that long is left alone, so holds and pacing do not add up."""
        self.refill(now)
        self.level = min(self.level, cost - seconds * self.rate)


class RateLimiter:
    """Paces one model's calls to ``share`` of the account's ``rpm`` / ``tpm``; see the module docstring.

    Thread-safe; :meth:`acquire` is awaited on the client's event loop.
    ``clock`` (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        *,
        share: float = 1.0,
        burst_s: float = DEFAULT_BURST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0 per minute, got {value!r}")
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        if burst_s <= 0:
            raise ValueError(f"burst_s must be > 0, got {burst_s!r}")
        self.share = share
        self._burst_s = burst_s
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._requests = _Bucket(rpm, share, burst_s, now) if rpm else None
        self._tokens = _Bucket(tpm, share, burst_s, now) if tpm else None
        self._seen_limits: dict[str, str] = {}
        self._held_until = now
        self._last_tokens = 0.0
        #: How often the provider made the limiter wait (remaining 0 or Retry-After), for reports.
        self.provider_holds = 0

    @property
    def rpm(self) -> float | None:
        return self._requests.per_minute if self._requests else None

    @property
    def tpm(self) -> float | None:
        return self._tokens.per_minute if self._tokens else None

    def reserve(self, tokens: int = 0) -> float:
        """Book one request of ``tokens`` now; seconds the caller must wait before sending it."""
        with self._lock:
            now = self._clock()
            self._last_tokens = float(tokens)
            wait = max(self._held_until - now, 0.0)
            for bucket, cost in ((self._requests, 1.0), (self._tokens, float(tokens))):
                if bucket is None:
                    continue
                bucket.refill(now)
                bucket.level -= cost
                if bucket.level < 0:
                    wait = max(wait, -bucket.level / bucket.rate)
            return wait

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of ``tokens`` may be sent (nothing to wait for without limits)."""
        if self._requests is None and self._tokens is None:
            return
        wait = self.reserve(tokens)
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self._held_until - self._clock()  # a hold that came while this call slept

    def hold(self, seconds: float) -> None:
        """The provider asked for a pause: no call of this limiter is sent for ``seconds``.

        Only once a limit is known (declared, or learned from ``x-ratelimit-limit-*``): the
        calls queued meanwhile then resume paced. Without one, releasing them all at once
        when the pause ends would be a burst of its own, so the refused call backs off alone.
        """
        if seconds <= 0:
            return
        with self._lock:
            self.provider_holds += 1
            if self._requests is None and self._tokens is None:
                return
            now = self._clock()
            self._held_until = max(self._held_until, now + seconds)
            for bucket, cost in ((self._requests, 1.0), (self._tokens, self._last_tokens)):
                if bucket is not None:  # no credit accrues while held, so the calls queued meanwhile stay paced
                    bucket.hold(self._held_until - now, cost, now)

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Follow a response's ``x-ratelimit-*`` headers when the provider is tighter than declared."""
        if not headers:
            return
        for kind in ("requests", "tokens"):
            limit = headers.get(f"x-ratelimit-limit-{kind}")
            if limit and self._seen_limits.get(kind) != limit:
                self._seen_limits[kind] = limit
                self._adopt_limit(kind, limit)
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
                if reset:
                    self.hold(min(reset, self._one_call_s(kind)))

    def _one_call_s(self, kind: str) -> float:
        """Seconds the whole account needs to earn one more call (requests) or its tokens."""
        bucket = self._requests if kind == "requests" else self._tokens
        if bucket is None:
            return _MAX_HEADER_HOLD_S
        cost = 1.0 if kind == "requests" else max(self._last_tokens, 1.0)
        return min(60.0 * cost / bucket.per_minute, _MAX_HEADER_HOLD_S)

    def _adopt_limit(self, kind: str, value: str) -> None:
        try:
            per_minute = float(value)
        except ValueError:
            return
        if not (math.isfinite(per_minute) and per_minute > 0):
            return
        with self._lock:
            now = self._clock()
            attribute = "_requests" if kind == "requests" else "_tokens"
            bucket: _Bucket | None = getattr(self, attribute)
            if bucket is None:
                setattr(self, attribute, _Bucket(per_minute, self.share, self._burst_s, now))
            elif per_minute < bucket.per_minute:
                bucket.refill(now)
                bucket.set_limit(per_minute)
                bucket.level = min(bucket.level, bucket.capacity)
