"""MLflow logging and charts for SMART runs."""

from smart_spark.tracking.charts import plan_figure
from smart_spark.tracking.mlflow_logging import log_summary, log_transform, metric_key

__all__ = ["log_summary", "log_transform", "metric_key", "plan_figure"]
