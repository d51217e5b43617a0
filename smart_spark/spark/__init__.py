"""The Spark layer: :class:`SmartLLMClassifier` and its apply-phase UDF."""

from smart_spark.spark.classifier import SmartLLMClassifier, SmartRun

__all__ = ["SmartLLMClassifier", "SmartRun"]
