"""The Spark layer: the Estimator :class:`SmartLLMClassifier` and its fitted :class:`SmartLLMClassifierModel`."""

from smart_spark.spark.classifier import SmartLLMClassifier
from smart_spark.spark.model import SmartLLMClassifierModel
from smart_spark.spark.run import SmartRun

__all__ = ["SmartLLMClassifier", "SmartLLMClassifierModel", "SmartRun"]
