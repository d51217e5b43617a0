"""The warm-up job leaves Python workers that the apply phase's pandas UDF reuses, with its modules imported
and frozen for the garbage collector."""

from __future__ import annotations

import gc
import sys
from typing import Iterator, Tuple

import pandas as pd

from smart_spark.spark.warmup import APPLY_MODULES, MIN_ROWS, WARMUP_CONF, start_warmup


class _Conf(dict):
    def get(self, key, default=None):  # noqa: D102 - the two-argument form of RuntimeConfig.get
        return super().get(key, default)


class _ClassicSession:
    """Stands for a classic SparkSession whose conf is all the warm-up reads before starting its job."""

    def __init__(self, **conf: str) -> None:
        self.conf = _Conf(conf)


def test_no_warm_up_for_few_rows_or_when_switched_off():
    assert start_warmup(_ClassicSession(), MIN_ROWS - 1) is None
    assert start_warmup(_ClassicSession(**{WARMUP_CONF: "false"}), MIN_ROWS) is None
    assert start_warmup(_ClassicSession(**{"spark.python.worker.reuse": "false"}), MIN_ROWS) is None


def test_heap_is_frozen_once_per_process(monkeypatch):
    from smart_spark.spark import worker_heap

    monkeypatch.setattr(worker_heap, "_settled", False)
    try:
        worker_heap.settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        kept = [[] for _ in range(1000)]  # tracked by the collector: a second freeze would count them
        worker_heap.settle_heap()  # a second apply task in the same worker: nothing more is frozen
        assert gc.get_freeze_count() <= frozen and kept  # frozen objects may die meanwhile, none is added
    finally:
        gc.unfreeze()


def test_apply_udf_runs_in_the_warmed_workers(spark):
    from pyspark.sql import functions as F

    required = [m for m in APPLY_MODULES if m not in ("aiohttp", "httpcore2")]  # those two are optional
    thread = start_warmup(spark, MIN_ROWS)
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()

    @F.pandas_udf("string")
    def modules_at_start(batches: Iterator[Tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        # Checked before this UDF imports anything itself: only the warm-up job imported these here.
        warmed = "smart_spark.spark.warmup" in sys.modules and all(m in sys.modules for m in required) \
            and gc.get_freeze_count() > 0
        for ids, _ in batches:
            yield pd.Series([str(warmed)] * len(ids))

    df = spark.range(0, 20, numPartitions=2)
    rows = df.select(modules_at_start("id", F.col("id").cast("string")).alias("w")).collect()
    assert {r.w for r in rows} == {"True"}
