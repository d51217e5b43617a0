"""MLflow logging and charts for SMART runs, and the fitted model as an MLflow artifact."""

from smart_spark.tracking.charts import plan_figure
from smart_spark.tracking.mlflow_logging import log_confirmation, log_summary, log_transform, metric_key
from smart_spark.tracking.models import load_model, log_fitted_model

__all__ = ["load_model", "log_confirmation", "log_fitted_model", "log_summary", "log_transform", "metric_key", "plan_figure"]
