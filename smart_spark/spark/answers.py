"""Where paid answers are kept: ``answersPath``, or an application-scoped default.

Every process (the driver for profiling, each Python worker for the apply
phase) opens the store once per path and keeps it, so its lookups refresh
incrementally and see what every other writer has committed.

Without ``answersPath`` the answers go to
:func:`smart_spark.store.default_store_path` of the Spark application id (a
directory under the local temp dir, logged at INFO): nothing is paid twice
within one application on one machine. Executors on other machines have their
own temp dir, so clusters should set ``answersPath`` to shared storage. Clean up
by deleting the directory (any time no job is using it: the only cost is paying
again).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger("smart_spark")

_STORES: dict[str, Any] = {}
_LOCK = threading.Lock()


def open_store(path: str):
    """The process's :class:`~smart_spark.store.AnswerStore` for ``path``."""
    from smart_spark.store import AnswerStore

    with _LOCK:
        store = _STORES.get(path)
        if store is None:
            store = _STORES[path] = AnswerStore(path)
    return store


def resolve_answers_path(configured: str | None, spark: Any) -> str:
    """``answersPath``, or the application-scoped default (logged at INFO)."""
    if configured:
        return configured
    from smart_spark.store import default_store_path

    path = default_store_path(_application_id(spark))
    logger.info("SMART answers: answersPath not set; this application's answers are kept in %s "
                "(set answersPath to keep them across jobs and share them across machines)", path)
    return path


def checked_store(configured: str | None, spark: Any):
    """Resolve, open and check the store is writable (PreflightError naming the path) before anything is paid."""
    path = resolve_answers_path(configured, spark)
    store = open_store(path)
    store.check_writable()
    return path, store


def _application_id(spark: Any) -> str:
    try:
        return spark.sparkContext.applicationId
    except Exception:  # Spark Connect: no SparkContext
        try:
            return spark.conf.get("spark.app.id")
        except Exception:
            return f"connect-{spark.session_id}"
