"""Small helpers that behave the same in classic Spark and Spark Connect.

Spark Connect has no ``SparkContext``: no broadcast, no ``setJobDescription``.
The fitted state is shipped inside the UDF closure there (broadcast on classic), and
job descriptions become Spark Connect *tags* (visible on the operation) there.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Iterator

from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger("smart_spark")


def is_connect(obj: DataFrame | SparkSession) -> bool:
    """True when ``obj`` is a Spark Connect DataFrame or session."""
    module = type(obj).__module__
    return module.startswith("pyspark.sql.connect")


@contextlib.contextmanager
def job_description(spark: SparkSession, description: str) -> Iterator[None]:
    """Label the Spark jobs started inside the block (Spark UI "Description" column).

    Classic Spark: ``SparkContext.setJobDescription`` (restored afterwards).
    Spark Connect: an operation tag derived from the description (restored
    afterwards); it never fails the caller.
    """
    if is_connect(spark):
        tag = re.sub(r"[^A-Za-z0-9_-]+", "-", description).strip("-") or "smart"
        added = False
        try:
            spark.addTag(tag)
            added = True
        except Exception:  # pragma: no cover - tags are best effort
            logger.debug("could not add Spark Connect tag %r", tag, exc_info=True)
        try:
            yield
        finally:
            if added:
                with contextlib.suppress(Exception):
                    spark.removeTag(tag)
        return
    sc = spark.sparkContext
    previous = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(description)
    try:
        yield
    finally:
        sc.setJobDescription(previous)  # type: ignore[arg-type]
