"""The front door: classify a table with SMART and write the result.

    smart-spark-classify                                       # embedded demo (stand-in server, 3,000 reviews)
    smart-spark-classify --input my.csv --catalogue conf/openai_catalogue.yaml --no-stand-in \\
        --labels positive,negative --prompt-file prompt.txt --output out/
    smart-spark-classify --input my.csv --stand-in             # try the job on your data with SIMULATED answers
    smart-spark-classify --config conf/job_example.yaml --target 0.95
    smart-spark-classify ... --answers-path store/ --save-model model/      # weekly: fit, save, apply
    smart-spark-classify ... --answers-path store/ --load-model model/      # daily: confirm the saved plan, apply
    python -m jobs.classify ...  /  spark-submit jobs/classify.py ...   (same job)

Reads Parquet / CSV / JSON (by extension or ``--input-format``; Delta when the
package is available), runs :class:`smart_spark.SmartLLMClassifier`, writes
Parquet (or Delta) with the configured mode and partitioning, logs to MLflow
and prints a summary.

Order of a run: everything that can fail without paying is checked first --
config, input schema, output path and write mode, MLflow tracking URI, and
every catalogue model's key, endpoint and name
(:func:`smart_spark.llm.preflight.check_models`) -- then profiling and the
apply phase pay. Exit codes (``smart_spark.errors``): 0 done; 2 bad config or
input; 3 a preflight check failed (nothing paid); 4 profiling got no reference
answers; 5 more rows than ``max_error_rate`` left without an answer (output
written); 6 drift; 1 anything else.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from smart_spark.cli.config import (
    JobError,
    apply_overrides,
    check_config,
    choose_stand_in,
    load_config,
    parse_args,
)
from smart_spark.cli.output import SKIP, check_output_columns, check_output_location, write_output
from smart_spark.cli.summary import check_error_rate, check_profiling, format_summary, summarize
from smart_spark.errors import ConfigurationError, SmartSparkError, find_smart_error

#: Folder holding the smart_spark package: put on the Spark workers' PYTHONPATH.
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def make_classifier(config: dict[str, Any], catalogue):
    from smart_spark import SmartLLMClassifier

    kwargs = dict(
        textCol=config["text_col"], idCol=config["id_col"], outputCol=config["output_col"],
        labels=config["labels"], promptTemplate=config["prompt_template"], models=catalogue,
        referenceModel=config["reference_model"], accuracyTarget=config["target"], confidence=config["confidence"],
        method=config["method"], seed=config["seed"], maxProfile=config["max_profile"], spendCap=config["spend_cap"],
        concurrency=config["concurrency"], batchSize=config["batch_size"], timeout=config["timeout"],
        maxRetries=config["max_retries"], systemPrompt=config["system_prompt"],
        mlflowLogging=config["mlflow"].get("logging") or "auto",
        mlflowExperiment=config["mlflow"].get("experiment") or "smart_spark",
        mlflowTrackingUri=config["mlflow"].get("tracking_uri"), mlflowRunName=config["mlflow"].get("run_name"),
        answersPath=config["answers_path"], executionMode=config["execution_mode"],
    )
    try:
        clf = SmartLLMClassifier(**{k: v for k, v in kwargs.items() if v is not None})
        if clf.hasParam("maxErrorRate"):  # the classifier's own check (spark helper), same limit
            clf._set(maxErrorRate=config["max_error_rate"])
        clf.validate()
    except (TypeError, ValueError) as exc:
        raise JobError(_one_line(exc)) from None
    return clf


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ------------------------------------------------------------------- spark
def spark_session(config: dict[str, Any]):
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # spark-submit / Databricks
        return active
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):  # a wheel task: the cluster's session, its own settings
        return SparkSession.builder.getOrCreate()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    paths = [PACKAGE_PARENT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # workers import this smart_spark
    settings = config["spark"]
    builder = SparkSession.builder.appName(settings.get("app_name") or "smart_spark-classify")
    if settings.get("master"):
        builder = builder.master(settings["master"])
    defaults = {"spark.sql.shuffle.partitions": "2", "spark.ui.showConsoleProgress": "false",
                "spark.ui.enabled": "false"}
    for key, value in {**defaults, **(settings.get("conf") or {})}.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_input(spark, config: dict[str, Any]):
    if config["input"] is None:
        from smart_spark.testing.demo_data import demo_frame

        frame = demo_frame(config["demo_rows"], config["demo_seed"])
        return spark.createDataFrame(frame, "id long, review string, category string, sentiment string").repartition(2)
    fmt = config["input_format"]
    reader = spark.read.format(fmt)
    options = dict(config["input_options"] or {})
    if fmt == "csv":
        options = {"header": "true", "inferSchema": "true", "multiLine": "true", "escape": '"', **options}
    try:
        return reader.options(**{k: str(v) for k, v in options.items()}).load(config["input"])
    except Exception as exc:  # AnalysisException, missing Delta package, ...
        raise JobError(f"cannot read input {config['input']} as {fmt}: {_one_line(exc)}") from None


def prepare_mlflow(config: dict[str, Any]) -> None:
    """With a local SQLite store, create the experiment with its artifacts next to the database
    (MLflow's default would be ./mlruns under whatever the cwd is). Also proves the store opens."""
    settings = config["mlflow"]
    uri = settings.get("tracking_uri") or ""
    if not uri.startswith("sqlite:///") or settings.get("logging") == "never":
        return
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    name = settings.get("experiment") or "smart_spark"
    try:
        if client.get_experiment_by_name(name) is None:
            artifacts = Path(uri[len("sqlite:///"):]).parent / "mlartifacts"
            client.create_experiment(name, artifact_location=artifacts.as_uri())
    except Exception as exc:
        raise JobError(f"MLflow tracking URI {uri}: cannot open the store ({_one_line(exc)})") from None


def load_models(config: dict[str, Any]):
    from smart_spark.catalogue import CatalogueError, ModelCatalogue, load_catalogue

    try:
        if config["catalogue"] is not None:
            return ModelCatalogue.from_yaml(config["catalogue"])
        return load_catalogue(config["models"])
    except (CatalogueError, TypeError, ValueError, KeyError) as exc:
        raise JobError(f"catalogue: {_one_line(exc)}") from None


def start_stand_in(stack: contextlib.ExitStack, config: dict[str, Any], catalogue):
    """Start the simulated stand-in server and point every model at it; returns the new catalogue."""
    from smart_spark.testing import SimulatedBackend, StandInServer, with_base_url

    try:
        backend = SimulatedBackend.from_yaml(config["stand_in"]["simulate"])
    except (TypeError, ValueError, KeyError) as exc:
        raise JobError(f"stand_in: {_one_line(exc)}") from None
    if set(config["labels"]) != set(backend.labels):
        raise JobError(
            f"labels {config['labels']} differ from the stand-in simulation's {list(backend.labels)} "
            f"({config['stand_in']['simulate']}): its answers would match none of them"
        )
    server = stack.enter_context(StandInServer(backend, latency_s=float(config["stand_in"].get("latency_s") or 0.0)))
    print(f"stand-in LLM server (SIMULATED answers, not a real LLM) at {server.base_url}", flush=True)
    return with_base_url(catalogue, server.base_url)


# -------------------------------------------------------------------- main
def run(config: dict[str, Any]) -> dict[str, Any] | None:
    """One job run; returns the summary figures (None when ``mode=ignore`` met an existing output)."""
    from smart_spark.llm.preflight import check_models

    catalogue = load_models(config)
    with contextlib.ExitStack() as stack:
        if config["stand_in"]:
            catalogue = start_stand_in(stack, config, catalogue)
        clf = make_classifier(config, catalogue)
        if check_output_location(config) == SKIP:
            return _nothing_to_do(config)
        check_models(catalogue, catalogue.names, timeout=float(config["preflight_timeout"]))
        prepare_mlflow(config)
        spark = spark_session(config)
        if check_output_location(config, spark) == SKIP:  # remote outputs: now that Spark can look
            return _nothing_to_do(config)
        df = read_input(spark, config)
        try:
            clf.validate(df.schema)
        except (TypeError, ValueError) as exc:
            raise JobError(_one_line(exc)) from None
        out_col = config["output_col"]
        check_output_columns(config, [*df.columns, out_col, out_col + "_model", out_col + "_cost", out_col + "_error"])
        fitted = fitted_model(clf, df, catalogue, config)  # profiling (or the confirmation) pays here
        out = fitted.transform(df)
        check_profiling(fitted.appliedRun)
        write_output(out, config)  # the apply phase pays here
        written = spark.read.format(config["output_format"]).load(config["output"])
        summary = summarize(fitted, written, config)
    print(format_summary(summary), flush=True)
    check_error_rate(summary["rows_with_text"], summary["failed"], config["max_error_rate"], config["output"])
    return summary


def fitted_model(clf, df, catalogue, config: dict[str, Any]):
    """Fit on ``df`` (and save when asked), or load the saved model to apply to ``df``.

    A loaded model keeps its plan, labels and prompt (a mismatch with today's
    config is a ConfigurationError) but calls today's catalogue endpoints and
    answer store, so a daily job can move providers' URLs and keys freely.
    """
    from smart_spark.spark.model import SmartLLMClassifierModel
    from smart_spark.tracking.models import load_model

    source = config["load_model"]
    if source is None:
        model = clf.fit(df)
        if config["save_model"]:
            model.write().overwrite().save(config["save_model"])
            print(f"fitted model saved to {config['save_model']}", flush=True)
        return model
    if source.startswith("runs:/"):
        model = load_model(source, tracking_uri=config["mlflow"].get("tracking_uri"))
    else:
        model = SmartLLMClassifierModel.load(source)
    model._set(models=catalogue)
    for name in ("answersPath", "maxErrorRate", "executionMode"):
        if clf.isSet(clf.getParam(name)):
            model._set(**{name: clf.getOrDefault(name)})
    print(f"fitted model loaded from {source}", flush=True)
    return model


def _nothing_to_do(config: dict[str, Any]) -> None:
    print(f"output {config['output']} exists and mode is 'ignore': nothing to do, nothing paid", flush=True)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the job; the return value is the process exit code (see the module docstring)."""
    args = parse_args(argv)
    try:
        config, file_keys = load_config(args.config)
        config = apply_overrides(config, args)
        config = choose_stand_in(check_config(config), file_keys, args)
        run(config)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        error = find_smart_error(exc)
        if error is None:
            raise
        print(f"classify: error: {_describe(error)}", file=sys.stderr, flush=True)
        return error.exit_code
    return 0


def _describe(error: SmartSparkError) -> str:
    text = str(error)
    if text.startswith(error.marker()):
        text = text[len(error.marker()):].strip()
    if isinstance(error, ConfigurationError):  # the user's own input: the message says it all
        return text
    return f"{type(error).__name__} (exit {error.exit_code}): {text}"


if __name__ == "__main__":
    sys.exit(main())
