"""Day 2 of a scheduled job, in its own process: load a saved model, transform new rows, print a JSON verdict.

    python tests/reuse_day2_job.py MODEL_PATH BASE_URL ANSWERS_DIR FIRST_ID ROWS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import conftest  # noqa: E402


def main(model_path: str, base_url: str, answers: str, first: int, rows: int) -> int:
    from pyspark.sql import SparkSession

    from smart_spark import SmartLLMClassifierModel

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    model = SmartLLMClassifierModel.load(model_path)
    model.setModels(conftest.simulated_catalogue(base_url)).setAnswersPath(answers)
    df = conftest.text_frame(spark, first + rows, prefix="daily").where(f"id >= {first}")
    out = model.transform(df).cache()
    summary = model.summarize(out, log=False)
    frame = out.select("id", "text", "prediction", "prediction_model").toPandas()
    print(json.dumps({
        "decision": (model.lastConfirmation or {}).get("decision"),
        "confirmation": model.lastConfirmation,
        "paid_before_apply": model.appliedRun.fit_paid,
        "apply_spend": summary["spend"],
        "rows": summary["rows"],
        "promise_kept": summary["promise_kept"],
        "fractions": model.appliedRun.plan.fractions,
        "texts": frame["text"].tolist(),
        "models": frame["prediction_model"].tolist(),
    }))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
