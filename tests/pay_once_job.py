"""A small SMART job for the kill-and-rerun tests: fit, transform, write parquet (run as its own process).

    python tests/pay_once_job.py --master local[2] --base-url URL --answers DIR --output DIR [--rows 600]

Prints ``FIT DONE`` (flushed) when the fit is over, so the test knows the apply
phase has begun, and ``JOB DONE <rows>`` at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import conftest  # noqa: E402  (PYSPARK_PYTHON, PYTHONPATH, the fake key)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--answers", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    from smart_spark import SmartLLMClassifier

    spark = (SparkSession.builder.master(args.master).appName("smart_spark-pay-once-job")
             .config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false")
             .config("spark.cores.max", "2").config("spark.executor.cores", "1")
             .config("spark.executor.memory", "1g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = conftest.text_frame(spark, args.rows, prefix="killed job")
    clf = SmartLLMClassifier(
        idCol="id", labels=conftest.SIM_LABELS, models=conftest.simulated_catalogue(args.base_url),
        referenceModel="gpt-4", accuracyTarget=0.85, seed=5, concurrency=args.concurrency, batchSize=64,
        answersPath=args.answers, mlflowLogging="never",
    )
    model = clf.fit(df)
    print("FIT DONE", flush=True)
    model.transform(df).write.mode("overwrite").parquet(args.output)
    print("JOB DONE", spark.read.parquet(args.output).count(), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
