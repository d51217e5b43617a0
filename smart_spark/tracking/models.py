"""The fitted model as an MLflow artifact, so a scheduled job can load it by run id.

:func:`log_fitted_model` saves the model (params + fitted state, never a key)
under the run's artifacts at ``smart/model``; :func:`load_model` downloads it
and returns a :class:`~smart_spark.spark.model.SmartLLMClassifierModel`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("smart_spark")

ARTIFACT_PATH = "smart/model"


def log_fitted_model(model: Any, run_id: str, tracking_uri: str | None = None) -> None:
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="smart-model-") as tmp:
        path = str(Path(tmp) / "model")
        model.write().save(path)
        MlflowClient(tracking_uri=tracking_uri).log_artifacts(run_id, path, ARTIFACT_PATH)
    logger.info("SMART fitted model logged to MLflow run %s (%s)", run_id, ARTIFACT_PATH)


def load_model(run_id: str, tracking_uri: str | None = None):
    """The :class:`SmartLLMClassifierModel` logged by the fit of MLflow run ``run_id``.

    ``run_id`` may also be written ``runs:/<run_id>`` (with or without ``/smart/model``).
    """
    import mlflow.artifacts

    from smart_spark.spark.model import SmartLLMClassifierModel

    if run_id.startswith("runs:/"):
        run_id = run_id[len("runs:/"):].split("/", 1)[0]
    target = tempfile.mkdtemp(prefix="smart-model-")
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_PATH, dst_path=target,
                                                tracking_uri=tracking_uri)
    return SmartLLMClassifierModel.load(local)
