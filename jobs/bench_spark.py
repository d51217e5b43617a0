"""Apply-phase throughput of SmartLLMClassifier on local[2] against the stand-in server.

20,000 rows in 2 partitions (two tasks at a time), every simulated model
answering after 100 ms, concurrency 16 per task and model. method="single", so
the plan sends the remaining rows to one model and each task holds 16 requests
in flight: the ideal is 2 x 16 / 0.1 s = 320 rows/s. Prints the apply phase's
rows/s and its ratio to the ideal, the profiling time, and a row-by-row UDF
baseline (one blocking call per row, on a subset) beside it.

    python jobs/bench_spark.py [--rows 20000] [--latency 0.1] [--concurrency 16] [--baseline-rows 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--baseline-rows", type=int, default=400)
    parser.add_argument("--min-ratio", type=float, default=0.70)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import conftest as fixtures
    from smart_spark import SmartLLMClassifier
    from smart_spark.testing import StandInServer

    spark = (SparkSession.builder.master("local[2]").config("spark.sql.shuffle.partitions", "2")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    ideal = 2 * args.concurrency / args.latency
    with StandInServer(fixtures.simulated_backend(latency_s=args.latency)) as server:
        catalogue = fixtures.simulated_catalogue(server.base_url, api_key_env=None)
        rows = [(i, f"bench item {i:06d}: is this clause overruling?") for i in range(args.rows)]
        df = spark.createDataFrame(rows, "id long, text string").repartition(2, "id").localCheckpoint()
        clf = SmartLLMClassifier(
            idCol="id", labels=fixtures.SIM_LABELS, models=catalogue, referenceModel="gpt-4", accuracyTarget=0.85,
            method="single", concurrency=args.concurrency, mlflowLogging="never", batchSize=1024,
        )
        started = time.monotonic()
        out = df.transform(clf)
        profiling = time.monotonic() - started
        server.reset_counters()
        started = time.monotonic()
        out.write.format("noop").mode("overwrite").save()
        apply_s = time.monotonic() - started
        apply_rows = sum(c["answered"] for c in server.counters().values())
        rate = apply_rows / apply_s
        print(f"SMART profiling: {clf.lastProfile.n_profiled} items, {profiling:.1f}s "
              f"(count + sample + LLM calls at {args.latency * 1000:.0f} ms), plan {clf.lastPlan.fractions}")
        print(f"SMART apply: {apply_rows} rows called in {apply_s:.1f}s = {rate:.0f} rows/s; "
              f"ideal {ideal:.0f} rows/s; ratio {rate / ideal:.2f}")

        # Baseline: a plain row-at-a-time UDF, one blocking call per row.
        spec_yaml = catalogue.to_yaml()
        labels = fixtures.SIM_LABELS

        def one_call(text):
            from smart_spark.catalogue import ModelCatalogue
            from smart_spark.llm.client import LLMClient
            import yaml

            global _BASELINE_CLIENT
            try:
                client = _BASELINE_CLIENT
            except NameError:
                client = _BASELINE_CLIENT = LLMClient(ModelCatalogue.from_dicts(yaml.safe_load(spec_yaml)["models"]), labels)
            return client.complete_batch("gpt-3.5-turbo", [text])[0].label

        baseline_udf = F.udf(one_call, "string")
        small = df.limit(args.baseline_rows).repartition(2).localCheckpoint()
        started = time.monotonic()
        small.select(baseline_udf("text").alias("p")).write.format("noop").mode("overwrite").save()
        base_s = time.monotonic() - started
        base_rate = args.baseline_rows / base_s
        print(f"row-by-row UDF baseline: {args.baseline_rows} rows in {base_s:.1f}s = {base_rate:.1f} rows/s "
              f"(ideal {2 / args.latency:.0f} rows/s); SMART apply is {rate / base_rate:.0f}x faster")
    spark.stop()
    ok = rate / ideal >= args.min_ratio
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
