"""The Spark layer: the Estimator :class:`SmartLLMClassifier` and its fitted :class:`SmartLLMClassifierModel`.

Imported lazily: executors load only :mod:`smart_spark.spark.apply` and
:mod:`smart_spark.spark.calls`, so a fresh Python worker does not import pyspark.ml.
"""

__all__ = ["SmartLLMClassifier", "SmartLLMClassifierModel", "SmartRun"]


def __getattr__(name: str):
    if name == "SmartLLMClassifier":
        from smart_spark.spark.classifier import SmartLLMClassifier

        return SmartLLMClassifier
    if name == "SmartLLMClassifierModel":
        from smart_spark.spark.model import SmartLLMClassifierModel

        return SmartLLMClassifierModel
    if name == "SmartRun":
        from smart_spark.spark.run import SmartRun

        return SmartRun
    raise AttributeError(f"module 'smart_spark.spark' has no attribute {name!r}")
