"""smart_spark: SMART (cost-minimising LLM selection with accuracy guarantees) for Spark.

Where things live:

- ``smart_spark.catalogue``  models, prices, endpoints (plain data, no secrets)
- ``smart_spark.engine``     the method: bounds, profiler, planner, plan, simulation (no Spark)
- ``smart_spark.llm``        the OpenAI-compatible async client and label normalisation
- ``smart_spark.spark``      the Spark ML Estimator ``SmartLLMClassifier``, its ``SmartLLMClassifierModel`` and UDFs
- ``smart_spark.tracking``   MLflow logging and charts
- ``smart_spark.testing``    the local OpenAI-compatible stand-in server (replay / simulate / faults)
"""

from smart_spark.catalogue import CatalogueError, ModelCatalogue, ModelSpec, load_catalogue

__version__ = "0.1.0"

__all__ = [
    "CatalogueError",
    "ModelCatalogue",
    "ModelSpec",
    "SmartLLMClassifier",
    "SmartLLMClassifierModel",
    "load_catalogue",
]


def __getattr__(name: str):
    # Import the Spark layer lazily: the engine and client work without a JVM.
    if name in ("SmartLLMClassifier", "SmartLLMClassifierModel"):
        import smart_spark.spark as spark_layer

        return getattr(spark_layer, name)
    raise AttributeError(f"module 'smart_spark' has no attribute {name!r}")
