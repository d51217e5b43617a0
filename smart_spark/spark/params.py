"""Params of :class:`SmartLLMClassifier`, with converters that fail fast and name the param.

pyspark wraps a converter's ``TypeError`` as ``Invalid param value given for
param "<name>"``; converters here raise ``ValueError`` / ``TypeError`` whose
message starts with the param name as well, so a bad value is reported at
``set*`` / construction time, not deep inside a Spark job.
"""

from __future__ import annotations

import math
import os
from typing import Any

from pyspark.ml.param import Param, Params

from smart_spark.catalogue import CatalogueError, ModelCatalogue, load_catalogue
from smart_spark.errors import ConfigurationError

METHODS = ("reference", "single", "single-early-stop", "mix")
MLFLOW_MODES = ("auto", "always", "never")
OVERSIZE_POLICIES = ("truncate", "error", "fail")
DRIFT_POLICIES = ("refit", "fail")
#: Columns added next to ``outputCol``.
OUTPUT_SUFFIXES = ("_model", "_cost", "_error", "_paid", "_escalated")

DEFAULT_PROMPT = (
    "Classify the text below. Answer with exactly one of: {labels}.\n\n"
    "Text: {text}\n\nAnswer:"
)


# ------------------------------------------------------------------ converters
def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def _any_int(name: str):
    def convert(value: Any) -> int:
        return _integer(name, value)

    return convert


def _int_at_least(name: str, minimum: int):
    def convert(value: Any) -> int:
        value = _integer(name, value)
        if value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    return convert


def _positive_int(name: str):
    return _int_at_least(name, 1)


def _non_negative_int(name: str):
    return _int_at_least(name, 0)


def _in_interval(name: str, low: float, high: float, *, low_open: bool, high_open: bool):
    def convert(value: Any) -> float:
        value = _number(name, value)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise ValueError(f"{name} must be in {interval}, got {value!r}")
        return value

    return convert


def _positive_number(name: str, allow_zero: bool = False):
    def convert(value: Any) -> float:
        value = _number(name, value)
        if value < 0 or (value == 0 and not allow_zero):
            raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
        return value

    return convert


def _choice(name: str, choices: tuple[str, ...]):
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    return convert


def _string(name: str, *, non_empty: bool = True):
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        if non_empty and not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
        return value

    return convert


def _labels(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"labels must be a list of strings, got {value!r}")
    labels = list(value)
    if len(labels) < 2:
        raise ConfigurationError(f"labels must name at least two labels (one label leaves nothing to decide), got {labels}")
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels must be non-empty strings, got {label!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    from smart_spark.llm.labels import normalise_label

    try:
        normalise_label("", labels)
    except ValueError as exc:
        raise ValueError(f"labels: {exc}") from None
    return labels


def _prompt(value: Any) -> str:
    value = _string("promptTemplate")(value)
    if "{text}" not in value:
        raise ValueError("promptTemplate must contain the placeholder {text}")
    return value


def _models(value: Any) -> str:
    """A catalogue, a list of ModelSpec/dict entries, a YAML path or YAML text -> YAML text."""
    try:
        if isinstance(value, str) and ("\n" in value or value.lstrip().startswith("models:")):
            import yaml

            document = yaml.safe_load(value)
            if not isinstance(document, dict) or not isinstance(document.get("models"), list):
                raise CatalogueError("expected a top-level 'models:' list")
            catalogue = ModelCatalogue.from_dicts(document["models"])
        elif isinstance(value, (str, os.PathLike, ModelCatalogue, list, tuple)):
            catalogue = load_catalogue(value)
        else:
            raise TypeError(
                f"models must be a ModelCatalogue, a list of entries or a YAML path, got {type(value).__name__}"
            )
    except CatalogueError as exc:
        raise ValueError(f"models: {exc}") from None
    return catalogue_yaml(catalogue)


def catalogue_yaml(catalogue: ModelCatalogue) -> str:
    """Exact YAML form (prices per token): ``ModelCatalogue.to_yaml`` rescales to per-1M,
    which drifts by an ulp on every save/load round trip (30.0 -> 29.999999999999996)."""
    import yaml

    entries = []
    for spec in catalogue:
        entry = {
            "name": spec.name,
            "input_price_per_token": spec.input_price_per_token,
            "output_price_per_token": spec.output_price_per_token,
            "request_fee": spec.request_fee,
            "base_url": spec.base_url,
            "api_key_env": spec.api_key_env,
            "max_concurrency": spec.max_concurrency,
            "top_logprobs": spec.top_logprobs or None,  # confidence cascades need the log-probabilities
        }
        entries.append({k: v for k, v in entry.items() if v is not None})
    return yaml.safe_dump({"models": entries}, sort_keys=False)


def _optional(convert):
    def wrapped(value: Any):
        return None if value is None else convert(value)

    return wrapped


# ---------------------------------------------------------------------- params
class SmartParams(Params):
    """All params of the classifier (pyspark.ml style: ``getX`` / ``setX``)."""

    textCol = Param(Params._dummy(), "textCol", "input column with the text to classify",
                    typeConverter=_string("textCol"))
    idCol = Param(Params._dummy(), "idCol",
                  "optional column with a unique row id; routes rows and recognises profiled rows "
                  "(default: a SHA-256 of the text, so duplicate texts share one answer)",
                  typeConverter=_optional(_string("idCol")))
    outputCol = Param(Params._dummy(), "outputCol",
                      "output column (label or null); <outputCol>_model, _cost, _error are added too",
                      typeConverter=_string("outputCol"))
    labels = Param(Params._dummy(), "labels", "the allowed labels", typeConverter=_labels)
    promptTemplate = Param(Params._dummy(), "promptTemplate",
                           "user prompt; {text} is replaced by the row's text, {labels} by the labels",
                           typeConverter=_prompt)
    models = Param(Params._dummy(), "models",
                   "model catalogue (YAML text; set it from a ModelCatalogue, entries or a YAML path)",
                   typeConverter=_models)
    referenceModel = Param(Params._dummy(), "referenceModel",
                           "the model whose answers define agreement (must be in the catalogue)",
                           typeConverter=_string("referenceModel"))
    accuracyTarget = Param(Params._dummy(), "accuracyTarget",
                           "share of rows whose answer must equal the reference's, in (0, 1]",
                           typeConverter=_in_interval("accuracyTarget", 0.0, 1.0, low_open=True, high_open=False))
    confidence = Param(Params._dummy(), "confidence", "probability the target holds, in (0, 1)",
                       typeConverter=_in_interval("confidence", 0.0, 1.0, low_open=True, high_open=True))
    method = Param(Params._dummy(), "method", f"one of {list(METHODS)}", typeConverter=_choice("method", METHODS))
    seed = Param(Params._dummy(), "seed", "seed of sampling, profiling order and routing",
                 typeConverter=_any_int("seed"))
    pilotSize = Param(Params._dummy(), "pilotSize", "items in the profiling pilot (None: chosen from N)",
                      typeConverter=_optional(_positive_int("pilotSize")))
    maxProfile = Param(Params._dummy(), "maxProfile",
                       "upper limit on profiled items; also the size of the random sample collected to the driver",
                       typeConverter=_positive_int("maxProfile"))
    profileBatchSize = Param(Params._dummy(), "profileBatchSize", "items per profiling batch",
                             typeConverter=_positive_int("profileBatchSize"))
    batchSize = Param(Params._dummy(), "batchSize",
                      "rows the apply phase answers together (an Arrow batch is answered in pieces of this size)",
                      typeConverter=_positive_int("batchSize"))
    concurrency = Param(Params._dummy(), "concurrency",
                        "concurrent requests per model per task (None: each model's max_concurrency)",
                        typeConverter=_optional(_positive_int("concurrency")))
    maxTokens = Param(Params._dummy(), "maxTokens", "max completion tokens per call",
                      typeConverter=_positive_int("maxTokens"))
    timeout = Param(Params._dummy(), "timeout", "seconds per request", typeConverter=_positive_number("timeout"))
    maxRetries = Param(Params._dummy(), "maxRetries", "retries per prompt and model",
                       typeConverter=_non_negative_int("maxRetries"))
    spendCap = Param(Params._dummy(), "spendCap",
                     "USD cap for one transform (profiling + apply); None: no cap",
                     typeConverter=_optional(_positive_number("spendCap", allow_zero=True)))
    systemPrompt = Param(Params._dummy(), "systemPrompt", "optional system message",
                         typeConverter=_optional(_string("systemPrompt")))
    mlflowLogging = Param(Params._dummy(), "mlflowLogging",
                          "'auto' (log when an MLflow run is active or a tracking URI is configured), "
                          "'always' or 'never'", typeConverter=_choice("mlflowLogging", MLFLOW_MODES))
    mlflowExperiment = Param(Params._dummy(), "mlflowExperiment",
                             "experiment for a new run when no run is active",
                             typeConverter=_string("mlflowExperiment"))
    mlflowTrackingUri = Param(Params._dummy(), "mlflowTrackingUri",
                              "tracking URI (None: MLflow's own default / MLFLOW_TRACKING_URI)",
                              typeConverter=_optional(_string("mlflowTrackingUri")))
    mlflowRunName = Param(Params._dummy(), "mlflowRunName", "name of a new run",
                          typeConverter=_optional(_string("mlflowRunName")))

    answersPath = Param(Params._dummy(), "answersPath",
                        "directory of the durable answer store (local, dbfs:/, s3a://, abfss://, ...); every "
                        "paid answer is recorded there and never paid again (None: an application-scoped "
                        "store under the local temp dir)",
                        typeConverter=_optional(_string("answersPath")))

    maxErrorRate = Param(Params._dummy(), "maxErrorRate",
                         "share of a task's rows with text allowed to end in the error column (calls that "
                         "failed after retries and escalation); above it the action fails with "
                         "ErrorRateExceeded, and the answers already paid stay in the answer store",
                         typeConverter=_in_interval("maxErrorRate", 0.0, 1.0, low_open=False, high_open=False))
    maxPromptChars = Param(Params._dummy(), "maxPromptChars",
                           "longest prompt accepted, in characters (None: no limit); see oversizePolicy",
                           typeConverter=_optional(_positive_int("maxPromptChars")))
    oversizePolicy = Param(Params._dummy(), "oversizePolicy",
                           "what a row whose prompt exceeds maxPromptChars gets: 'truncate' (its text is cut "
                           "to fit), 'error' (no call; null prediction and an error, and it is not counted in N) "
                           "or 'fail' (the fit or action fails)",
                           typeConverter=_choice("oversizePolicy", OVERSIZE_POLICIES))
    onDrift = Param(Params._dummy(), "onDrift",
                    "a fitted model applied to new data confirms its plan on a sample first; when the "
                    "confirmation fails: 'refit' (profile the new data and plan again) or 'fail' (DriftError)",
                    typeConverter=_choice("onDrift", DRIFT_POLICIES))

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            textCol="text",
            idCol=None,
            outputCol="prediction",
            promptTemplate=DEFAULT_PROMPT,
            accuracyTarget=0.9,
            confidence=0.95,
            method="mix",
            seed=0,
            pilotSize=None,
            maxProfile=5000,
            profileBatchSize=64,
            batchSize=512,
            concurrency=None,
            maxTokens=16,
            timeout=30.0,
            maxRetries=6,
            spendCap=None,
            systemPrompt=None,
            mlflowLogging="auto",
            mlflowExperiment="smart_spark",
            mlflowTrackingUri=None,
            mlflowRunName=None,
            answersPath=None,
            maxErrorRate=0.05,
            maxPromptChars=None,
            oversizePolicy="truncate",
            onDrift="refit",
        )


    # ------------------------------------------------------------ accessors
    def getTextCol(self) -> str:
        """Gets the value of textCol or its default."""
        return self.getOrDefault(self.textCol)

    def setTextCol(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`textCol`."""
        return self._set(textCol=value)

    def getIdCol(self) -> str | None:
        """Gets the value of idCol or its default."""
        return self.getOrDefault(self.idCol)

    def setIdCol(self, value: str | None) -> "SmartParams":
        """Sets the value of :py:attr:`idCol`."""
        return self._set(idCol=value)

    def getOutputCol(self) -> str:
        """Gets the value of outputCol or its default."""
        return self.getOrDefault(self.outputCol)

    def setOutputCol(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`outputCol`."""
        return self._set(outputCol=value)

    def getLabels(self) -> list[str]:
        """Gets the value of labels or its default."""
        return self.getOrDefault(self.labels)

    def setLabels(self, value: list[str]) -> "SmartParams":
        """Sets the value of :py:attr:`labels`."""
        return self._set(labels=value)

    def getPromptTemplate(self) -> str:
        """Gets the value of promptTemplate or its default."""
        return self.getOrDefault(self.promptTemplate)

    def setPromptTemplate(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`promptTemplate`."""
        return self._set(promptTemplate=value)

    def getModels(self) -> str:
        """Gets the value of models or its default."""
        return self.getOrDefault(self.models)

    def setModels(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`models`."""
        return self._set(models=value)

    def getReferenceModel(self) -> str:
        """Gets the value of referenceModel or its default."""
        return self.getOrDefault(self.referenceModel)

    def setReferenceModel(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`referenceModel`."""
        return self._set(referenceModel=value)

    def getAccuracyTarget(self) -> float:
        """Gets the value of accuracyTarget or its default."""
        return self.getOrDefault(self.accuracyTarget)

    def setAccuracyTarget(self, value: float) -> "SmartParams":
        """Sets the value of :py:attr:`accuracyTarget`."""
        return self._set(accuracyTarget=value)

    def getConfidence(self) -> float:
        """Gets the value of confidence or its default."""
        return self.getOrDefault(self.confidence)

    def setConfidence(self, value: float) -> "SmartParams":
        """Sets the value of :py:attr:`confidence`."""
        return self._set(confidence=value)

    def getMethod(self) -> str:
        """Gets the value of method or its default."""
        return self.getOrDefault(self.method)

    def setMethod(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`method`."""
        return self._set(method=value)

    def getSeed(self) -> int:
        """Gets the value of seed or its default."""
        return self.getOrDefault(self.seed)

    def setSeed(self, value: int) -> "SmartParams":
        """Sets the value of :py:attr:`seed`."""
        return self._set(seed=value)

    def getPilotSize(self) -> int | None:
        """Gets the value of pilotSize or its default."""
        return self.getOrDefault(self.pilotSize)

    def setPilotSize(self, value: int | None) -> "SmartParams":
        """Sets the value of :py:attr:`pilotSize`."""
        return self._set(pilotSize=value)

    def getMaxProfile(self) -> int:
        """Gets the value of maxProfile or its default."""
        return self.getOrDefault(self.maxProfile)

    def setMaxProfile(self, value: int) -> "SmartParams":
        """Sets the value of :py:attr:`maxProfile`."""
        return self._set(maxProfile=value)

    def getProfileBatchSize(self) -> int:
        """Gets the value of profileBatchSize or its default."""
        return self.getOrDefault(self.profileBatchSize)

    def setProfileBatchSize(self, value: int) -> "SmartParams":
        """Sets the value of :py:attr:`profileBatchSize`."""
        return self._set(profileBatchSize=value)

    def getBatchSize(self) -> int:
        """Gets the value of batchSize or its default."""
        return self.getOrDefault(self.batchSize)

    def setBatchSize(self, value: int) -> "SmartParams":
        """Sets the value of :py:attr:`batchSize`."""
        return self._set(batchSize=value)

    def getConcurrency(self) -> int | None:
        """Gets the value of concurrency or its default."""
        return self.getOrDefault(self.concurrency)

    def setConcurrency(self, value: int | None) -> "SmartParams":
        """Sets the value of :py:attr:`concurrency`."""
        return self._set(concurrency=value)

    def getMaxTokens(self) -> int:
        """Gets the value of maxTokens or its default."""
        return self.getOrDefault(self.maxTokens)

    def setMaxTokens(self, value: int) -> "SmartParams":
        """Sets the value of :py:attr:`maxTokens`."""
        return self._set(maxTokens=value)

    def getTimeout(self) -> float:
        """Gets the value of timeout or its default."""
        return self.getOrDefault(self.timeout)

    def setTimeout(self, value: float) -> "SmartParams":
        """Sets the value of :py:attr:`timeout`."""
        return self._set(timeout=value)

    def getMaxRetries(self) -> int:
        """Gets the value of maxRetries or its default."""
        return self.getOrDefault(self.maxRetries)

    def setMaxRetries(self, value: int) -> "SmartParams":
        """Sets the value of :py:attr:`maxRetries`."""
        return self._set(maxRetries=value)

    def getSpendCap(self) -> float | None:
        """Gets the value of spendCap or its default."""
        return self.getOrDefault(self.spendCap)

    def setSpendCap(self, value: float | None) -> "SmartParams":
        """Sets the value of :py:attr:`spendCap`."""
        return self._set(spendCap=value)

    def getSystemPrompt(self) -> str | None:
        """Gets the value of systemPrompt or its default."""
        return self.getOrDefault(self.systemPrompt)

    def setSystemPrompt(self, value: str | None) -> "SmartParams":
        """Sets the value of :py:attr:`systemPrompt`."""
        return self._set(systemPrompt=value)

    def getMlflowLogging(self) -> str:
        """Gets the value of mlflowLogging or its default."""
        return self.getOrDefault(self.mlflowLogging)

    def setMlflowLogging(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`mlflowLogging`."""
        return self._set(mlflowLogging=value)

    def getMlflowExperiment(self) -> str:
        """Gets the value of mlflowExperiment or its default."""
        return self.getOrDefault(self.mlflowExperiment)

    def setMlflowExperiment(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`mlflowExperiment`."""
        return self._set(mlflowExperiment=value)

    def getMlflowTrackingUri(self) -> str | None:
        """Gets the value of mlflowTrackingUri or its default."""
        return self.getOrDefault(self.mlflowTrackingUri)

    def setMlflowTrackingUri(self, value: str | None) -> "SmartParams":
        """Sets the value of :py:attr:`mlflowTrackingUri`."""
        return self._set(mlflowTrackingUri=value)

    def getMlflowRunName(self) -> str | None:
        """Gets the value of mlflowRunName or its default."""
        return self.getOrDefault(self.mlflowRunName)

    def setMlflowRunName(self, value: str | None) -> "SmartParams":
        """Sets the value of :py:attr:`mlflowRunName`."""
        return self._set(mlflowRunName=value)

    def getAnswersPath(self) -> str | None:
        """Gets the value of answersPath or its default."""
        return self.getOrDefault(self.answersPath)

    def setAnswersPath(self, value: str | None) -> "SmartParams":
        """Sets the value of :py:attr:`answersPath`."""
        return self._set(answersPath=value)


    def getMaxErrorRate(self) -> float:
        """Gets the value of maxErrorRate or its default."""
        return self.getOrDefault(self.maxErrorRate)

    def setMaxErrorRate(self, value: float) -> "SmartParams":
        """Sets the value of :py:attr:`maxErrorRate`."""
        return self._set(maxErrorRate=value)

    def getMaxPromptChars(self) -> int | None:
        """Gets the value of maxPromptChars or its default."""
        return self.getOrDefault(self.maxPromptChars)

    def setMaxPromptChars(self, value: int | None) -> "SmartParams":
        """Sets the value of :py:attr:`maxPromptChars`."""
        return self._set(maxPromptChars=value)

    def getOversizePolicy(self) -> str:
        """Gets the value of oversizePolicy or its default."""
        return self.getOrDefault(self.oversizePolicy)

    def setOversizePolicy(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`oversizePolicy`."""
        return self._set(oversizePolicy=value)

    def getOnDrift(self) -> str:
        """Gets the value of onDrift or its default."""
        return self.getOrDefault(self.onDrift)

    def setOnDrift(self, value: str) -> "SmartParams":
        """Sets the value of :py:attr:`onDrift`."""
        return self._set(onDrift=value)

    # ------------------------------------------------------ derived views
    def catalogue(self) -> ModelCatalogue:
        import yaml

        if not self.isDefined(self.models) or self.getModels() is None:
            raise ConfigurationError("models must be set (a ModelCatalogue, a list of entries or a YAML path)")
        return ModelCatalogue.from_dicts(yaml.safe_load(self.getModels())["models"])

    def validate(self, schema: Any = None) -> ModelCatalogue:
        """Check params (and the input schema when given); returns the catalogue.

        Errors are :class:`~smart_spark.errors.ConfigurationError` naming the param or column.
        """
        if not self.isDefined(self.labels) or self.getOrDefault(self.labels) is None:
            raise ConfigurationError("labels must be set to a list of at least two labels")
        catalogue = self.catalogue()
        if not self.isDefined(self.referenceModel) or self.getReferenceModel() is None:
            raise ConfigurationError(f"referenceModel must be set to one of the catalogue's models {catalogue.names}")
        reference = self.getReferenceModel()
        if reference not in catalogue:
            raise ConfigurationError(
                f"referenceModel {reference!r} is not in the catalogue (models: {catalogue.names})")
        if schema is not None:
            self._validate_schema(schema)
        return catalogue

    def _validate_schema(self, schema: Any) -> None:
        from pyspark.sql.types import StringType

        from smart_spark.spark.sampling import KEY_COL, RESULT_COL

        names = schema.names
        text_col = self.getTextCol()
        if text_col not in names:
            raise ConfigurationError(f"textCol {text_col!r} is not a column of the input (columns: {names})")
        if not isinstance(schema[text_col].dataType, StringType):
            raise ConfigurationError(
                f"textCol {text_col!r} must be a string column, got {schema[text_col].dataType.simpleString()}")
        id_col = self.getIdCol()
        if id_col and id_col not in names:
            raise ConfigurationError(f"idCol {id_col!r} is not a column of the input (columns: {names})")
        output = self.getOutputCol()
        for name in [output, *(output + s for s in OUTPUT_SUFFIXES)]:
            if name in names:
                raise ConfigurationError(f"outputCol: column {name!r} already exists in the input")
        for internal in (KEY_COL, RESULT_COL):
            if internal in names:
                raise ConfigurationError(f"the input must not have a column named {internal!r} (used internally)")

    def oversizeColumn(self):
        """A Spark column: True where the row's prompt exceeds ``maxPromptChars``."""
        from smart_spark.spark.apply import render_prompt
        from smart_spark.spark.sampling import oversized

        overhead = len(render_prompt(self.getPromptTemplate(), "", self.getLabels()))
        return oversized(self.getTextCol(), self.getMaxPromptChars(), overhead)

    def keyed(self, dataset: Any):
        """``dataset`` with the row key column (null for rows that are not classified)."""
        from smart_spark.spark.sampling import with_keys

        excluded = self.oversizeColumn() if self.getOversizePolicy() == "error" else None
        return with_keys(dataset, self.getTextCol(), self.getIdCol(), excluded)

    def engineConfig(self):
        """The engine's :class:`~smart_spark.engine.SmartConfig` from these params."""
        from smart_spark.engine import SmartConfig

        return SmartConfig(
            accuracy_target=self.getAccuracyTarget(), confidence=self.getConfidence(), method=self.getMethod(),
            seed=self.getSeed(), pilot_size=self.getPilotSize(), max_profile=self.getMaxProfile(),
            batch_size=self.getProfileBatchSize(),
        )

    def fittedWith(self) -> dict[str, Any]:
        """The params that decide what a prompt and its answer mean: a model applies only with the same."""
        return {
            "textCol": self.getTextCol(),
            "labels": list(self.getLabels()),
            "promptTemplate": self.getPromptTemplate(),
            "systemPrompt": self.getSystemPrompt(),
            "referenceModel": self.getReferenceModel(),
            "maxTokens": self.getMaxTokens(),
            "maxPromptChars": self.getMaxPromptChars(),
            "oversizePolicy": self.getOversizePolicy(),
        }

    def applySpec(self, catalogue: ModelCatalogue, plan_json: str, profiled=None, row_budget=None,
                  answers_path: str | None = None):
        """The executors' :class:`~smart_spark.spark.apply.ApplySpec` for these params."""
        from smart_spark.spark.apply import ApplySpec

        return ApplySpec(
            plan_json=plan_json, catalogue_yaml=catalogue_yaml(catalogue), labels=tuple(self.getLabels()),
            prompt_template=self.getPromptTemplate(), profiled=profiled or {}, system_prompt=self.getSystemPrompt(),
            max_tokens=self.getMaxTokens(), timeout=self.getTimeout(), max_retries=self.getMaxRetries(),
            concurrency=self.getConcurrency(), row_budget=row_budget, answers_path=answers_path,
            max_error_rate=self.getMaxErrorRate(), max_prompt_chars=self.getMaxPromptChars(),
            oversize_policy=self.getOversizePolicy(),
        )
