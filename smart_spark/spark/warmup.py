"""Warm the executors' Python workers while the driver profiles, so the apply tasks start at once.

Each apply task used to spend its first seconds starting a Python worker and
importing what the apply UDF needs (pandas, pyarrow, openai, aiohttp, the
apply modules: about 3 s per task on a 2-core machine, measured with
``jobs.apply_trace``), while profiling, which runs on the driver, left the
executors idle. Spark keeps idle Python workers for the next task
(``spark.python.worker.reuse``, on by default) and reuses them only for the same
kind of job: a worker started by an RDD job is not given to a pandas UDF, one
started by ``mapInPandas`` is. So a tiny ``mapInPandas`` job, one partition per
task slot, fired on a background thread when profiling starts, leaves warm
workers for the apply phase.

It never fails the job and never touches a key (it only imports modules). It does
nothing on Spark Connect (no SparkContext to ask for the task slots), when worker
reuse is off, or when ``spark.smart_spark.warmExecutors`` is ``false``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator

from smart_spark.spark.session import is_connect, job_description

logger = logging.getLogger("smart_spark")

#: Spark conf that switches the warm-up off ("false").
WARMUP_CONF = "spark.smart_spark.warmExecutors"

#: Fewer rows with text than this: no warm-up (the apply phase is over in seconds; the extra job costs what it saves).
MIN_ROWS = 2_000

#: What the apply UDF imports before its first call (the slow ones: openai alone takes ~1.3 s).
APPLY_MODULES = (
    "pandas",
    "pyarrow",
    "aiohttp",
    "openai",
    "httpcore2",  # the SDK's HTTP core, imported only when its first request is sent
    "smart_spark.llm.client",
    "smart_spark.spark.online_calls",
    "smart_spark.spark.calls",
    "smart_spark.spark.answers",
    "smart_spark.store",
    "smart_spark.engine.plan",
    "smart_spark.llm.spend",
)


def start_warmup(spark: Any, rows: int) -> threading.Thread | None:
    """Start warming every task slot's Python worker on a daemon thread; the thread, or None when skipped."""
    try:
        if rows < MIN_ROWS or is_connect(spark) or not _enabled(spark):
            return None
        slots = max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - a warm-up must never fail the job
        logger.debug("SMART warm-up skipped", exc_info=True)
        return None
    thread = threading.Thread(target=_warm, args=(spark, slots), name="smart-warmup", daemon=True)
    thread.start()
    return thread


def _enabled(spark: Any) -> bool:
    conf = spark.conf
    reuse = str(conf.get("spark.python.worker.reuse", "true")).strip().lower()
    wanted = str(conf.get(WARMUP_CONF, "true")).strip().lower()
    return reuse != "false" and wanted != "false"


def _warm(spark: Any, slots: int) -> None:
    started = time.monotonic()
    try:
        with job_description(spark, "SMART apply: warm the Python workers while profiling"):
            spark.range(0, slots, numPartitions=slots).mapInPandas(import_apply_modules, "id long") \
                .write.format("noop").mode("overwrite").save()
        logger.info("SMART warm-up: %d task slots' Python workers warmed in %.1fs", slots, time.monotonic() - started)
    except Exception:  # noqa: BLE001 - e.g. the session stopped meanwhile; the apply phase starts cold
        logger.debug("SMART warm-up did not finish", exc_info=True)


def import_apply_modules(batches: Iterator[Any]) -> Iterator[Any]:
    """The warm-up task: import what the apply UDF needs and freeze it for the collector, pass the (tiny) input through."""
    import importlib

    from smart_spark.spark.worker_heap import settle_heap

    for name in APPLY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # e.g. aiohttp not installed: the apply phase does without it too
            pass
    settle_heap(collect=True)
    yield from batches
