"""The front door: classify a table with SMART and write the result.

    python -m jobs.classify                                  # embedded demo (stand-in server, 3,000 reviews)
    python -m jobs.classify --config conf/job_example.yaml   # a job config, with CLI overrides:
    python -m jobs.classify --config conf/job_example.yaml --input data/reviews.csv --target 0.95
    spark-submit jobs/classify.py --config conf/job_example.yaml

Reads Parquet / CSV / JSON (by extension or ``--input-format``; Delta when the
package is available), runs :class:`smart_spark.SmartLLMClassifier`, writes
Parquet (or Delta) with the configured mode and partitioning, logs to MLflow
(through the transformer) and prints a summary. Bad config or input ends with
exit code 2 and a one-line ``classify: error: ...`` message.

Config keys (YAML; every one optional, defaults = the embedded demo):

    input, input_format, input_options      where to read (or demo_rows: N to generate the demo set)
    output, output_format, mode, partition_by
    catalogue (YAML path) | models (list of entries), reference_model
    stand_in: {simulate: <yaml with a simulation: section>, latency_s}  start the local stand-in server
    labels, prompt_template, system_prompt, text_col, id_col, output_col
    target, confidence, method, seed, max_profile, spend_cap, concurrency, batch_size, timeout, max_retries
    mlflow: {experiment, tracking_uri, run_name, logging}
    spark: {master, app_name, conf: {key: value}}
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, "") and str(ROOT) not in sys.path:  # spark-submit jobs/classify.py
    sys.path.insert(0, str(ROOT))

DEFAULT_CONFIG: dict[str, Any] = {
    "input": None,
    "input_format": None,
    "input_options": {},
    "demo_rows": 3000,
    "demo_seed": 0,
    "output": "output/demo_classified",
    "output_format": "parquet",
    "mode": "overwrite",
    "partition_by": [],
    "catalogue": "conf/demo_catalogue.yaml",
    "models": None,
    "reference_model": "gpt-4.1",
    "stand_in": {"simulate": "conf/demo_catalogue.yaml", "latency_s": 0.0},
    "labels": ["positive", "negative", "neutral"],
    "prompt_template": (
        "What is the sentiment of this product review? Answer with exactly one of: {labels}.\n\n"
        "Review: {text}\n\nSentiment:"
    ),
    "system_prompt": None,
    "text_col": "review",
    "id_col": "id",
    "output_col": "sentiment_pred",
    "target": 0.9,
    "confidence": 0.95,
    "method": "mix",
    "seed": 0,
    "max_profile": 1000,
    "spend_cap": None,
    "concurrency": None,
    "batch_size": 512,
    "timeout": 30.0,
    "max_retries": 6,
    "mlflow": {"experiment": "smart_spark_jobs", "tracking_uri": "mlflow.db", "run_name": None, "logging": "always"},
    "spark": {"master": "local[2]", "app_name": "smart_spark-classify", "conf": {}},
}
_SECTIONS = {k for k, v in DEFAULT_CONFIG.items() if isinstance(v, dict) and v}
INPUT_FORMATS = ("parquet", "csv", "json", "delta")
OUTPUT_FORMATS = ("parquet", "delta")
MODES = ("overwrite", "append", "error", "errorifexists", "ignore")


class JobError(Exception):
    """Bad config or input: reported as one line, exit code 2."""


# ------------------------------------------------------------------ config
def _resolve(path: str | None) -> str | None:
    """Relative paths: as given when they exist from the cwd, else from the project root."""
    if path is None or "://" in str(path) or os.path.isabs(str(path)) or str(path).startswith("dbfs:"):
        return path
    if os.path.exists(path):
        return str(Path(path).resolve())
    candidate = ROOT / path
    return str(candidate) if candidate.exists() else str(Path(path).resolve())


def load_config(path: str | None) -> dict[str, Any]:
    config = copy.deepcopy(DEFAULT_CONFIG)
    if path is None:
        return config
    import yaml

    file = Path(_resolve(path))
    if not file.is_file():
        raise JobError(f"config file not found: {path}")
    try:
        document = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise JobError(f"config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict):
        raise JobError(f"config {path}: expected a mapping of keys, got {type(document).__name__}")
    unknown = sorted(set(document) - set(DEFAULT_CONFIG))
    if unknown:
        raise JobError(f"config {path}: unknown key(s) {unknown} (known: {sorted(DEFAULT_CONFIG)})")
    for key, value in document.items():
        if key in _SECTIONS and value is not None:
            if not isinstance(value, dict):
                raise JobError(f"config {path}: {key} must be a mapping, got {value!r}")
            bad = sorted(set(value) - set(DEFAULT_CONFIG[key]))
            if bad:
                raise JobError(f"config {path}: unknown key(s) {bad} in {key} (known: {sorted(DEFAULT_CONFIG[key])})")
            config[key].update(value)
        else:
            config[key] = value
    if document.get("input") is not None and "demo_rows" not in document:
        config["demo_rows"] = None
    if ("catalogue" in document or "models" in document) and "stand_in" not in document:
        config["stand_in"] = None  # a real catalogue: call its endpoints
    if "models" in document and "catalogue" not in document:
        config["catalogue"] = None
    return config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.classify", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="job config YAML (default: the embedded demo)")
    p.add_argument("--input", help="input path (Parquet/CSV/JSON/Delta)")
    p.add_argument("--input-format", choices=INPUT_FORMATS)
    p.add_argument("--rows", type=int, dest="demo_rows", help="generate N demo reviews instead of reading input")
    p.add_argument("--output", help="output path")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS)
    p.add_argument("--mode", help=f"write mode {list(MODES)}")
    p.add_argument("--partition-by", help="comma-separated output partition columns")
    p.add_argument("--catalogue", help="catalogue YAML path")
    p.add_argument("--reference-model")
    p.add_argument("--target", type=float, help="accuracy target in (0, 1]")
    p.add_argument("--confidence", type=float, help="confidence in (0, 1)")
    p.add_argument("--method", help="reference | single | single-early-stop | mix")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-profile", type=int)
    p.add_argument("--spend-cap", type=float)
    p.add_argument("--text-col")
    p.add_argument("--id-col")
    p.add_argument("--output-col")
    p.add_argument("--mlflow-tracking-uri")
    p.add_argument("--mlflow-experiment")
    p.add_argument("--no-stand-in", action="store_true", help="call the catalogue's endpoints, not a local stand-in")
    return p.parse_args(argv)


def apply_overrides(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    simple = ["input", "input_format", "output", "output_format", "mode", "catalogue", "reference_model", "target",
              "confidence", "method", "seed", "max_profile", "spend_cap", "text_col", "id_col", "output_col"]
    for key in simple:
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if args.input is not None:
        config["demo_rows"] = None
    if args.demo_rows is not None:
        config["demo_rows"] = args.demo_rows
        config["input"] = None
    if args.partition_by is not None:
        config["partition_by"] = [c.strip() for c in args.partition_by.split(",") if c.strip()]
    if args.mlflow_tracking_uri is not None:
        config["mlflow"]["tracking_uri"] = args.mlflow_tracking_uri
    if args.mlflow_experiment is not None:
        config["mlflow"]["experiment"] = args.mlflow_experiment
    if args.no_stand_in:
        config["stand_in"] = None
    return config


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate what Spark cannot check later; returns the config with paths resolved."""
    def number(key, low, high, low_open, high_open):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobError(f"{key} must be a number, got {value!r}")
        bad = (value <= low if low_open else value < low) or (value >= high if high_open else value > high)
        if bad:
            raise JobError(f"{key} must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}, "
                           f"got {value!r}")

    number("target", 0.0, 1.0, True, False)
    number("confidence", 0.0, 1.0, True, True)
    if config["mode"] not in MODES:
        raise JobError(f"mode must be one of {list(MODES)}, got {config['mode']!r}")
    if config["output_format"] not in OUTPUT_FORMATS:
        raise JobError(f"output_format must be one of {list(OUTPUT_FORMATS)}, got {config['output_format']!r}")
    if config["input_format"] is not None and config["input_format"] not in INPUT_FORMATS:
        raise JobError(f"input_format must be one of {list(INPUT_FORMATS)}, got {config['input_format']!r}")
    if isinstance(config["partition_by"], str):
        config["partition_by"] = [config["partition_by"]]
    if not isinstance(config["partition_by"], list):
        raise JobError(f"partition_by must be a list of column names, got {config['partition_by']!r}")
    if not config["output"]:
        raise JobError("output must be set")
    if config["input"] is None:
        rows = config["demo_rows"]
        if rows is None:
            raise JobError("set input (a Parquet/CSV/JSON path) or demo_rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise JobError(f"demo_rows must be a positive integer, got {rows!r}")
    else:
        config["input"] = _resolve(config["input"])
        local = "://" not in config["input"] and not config["input"].startswith("dbfs:")
        if local and not os.path.exists(config["input"]):
            raise JobError(f"input not found: {config['input']}")
        if config["input_format"] is None:
            config["input_format"] = _format_of(config["input"])
    if config["catalogue"] is None and not config["models"]:
        raise JobError("set catalogue (a YAML path) or models (a list of entries)")
    if config["catalogue"] is not None:
        config["catalogue"] = _resolve(config["catalogue"])
        if not os.path.isfile(config["catalogue"]):
            raise JobError(f"catalogue not found: {config['catalogue']}")
    if config["stand_in"]:
        sim = config["stand_in"].get("simulate")
        if not sim:
            raise JobError("stand_in needs simulate: <YAML with a simulation: section>")
        config["stand_in"]["simulate"] = _resolve(sim)
        if not os.path.isfile(config["stand_in"]["simulate"]):
            raise JobError(f"stand_in simulate file not found: {sim}")
    config["output"] = str(Path(config["output"]).resolve()) if "://" not in config["output"] and not str(
        config["output"]).startswith("dbfs:") else config["output"]
    uri = config["mlflow"].get("tracking_uri")
    if uri and ":" not in uri and uri != "databricks":  # a local path: a SQLite file (or a folder holding mlflow.db)
        path = Path(uri).resolve()
        if path.suffix != ".db":
            path = path / "mlflow.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        config["mlflow"]["tracking_uri"] = f"sqlite:///{path}"
    return config


def _format_of(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        if (p / "_delta_log").is_dir():
            return "delta"
        names = [f.name.lower() for f in p.rglob("*") if f.is_file() and not f.name.startswith(("_", "."))]
        for fmt, exts in (("parquet", (".parquet",)), ("csv", (".csv",)), ("json", (".json", ".jsonl"))):
            if any(n.endswith(exts) or any(e + "." in n for e in exts) for n in names):
                return fmt
        raise JobError(f"cannot tell the format of directory {path}: pass --input-format")
    lower = p.name.lower()
    for fmt, exts in (("parquet", (".parquet", ".pq")), ("csv", (".csv", ".tsv")), ("json", (".json", ".jsonl", ".ndjson"))):
        if lower.endswith(exts):
            return fmt
    raise JobError(f"cannot tell the format of {path} from its extension: pass --input-format")


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
    )
    try:
        clf = SmartLLMClassifier(**{k: v for k, v in kwargs.items() if v is not None})
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
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
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


def write_output(df, config: dict[str, Any]) -> None:
    missing = [c for c in config["partition_by"] if c not in df.columns]
    if missing:
        raise JobError(f"partition_by: no column(s) {missing} in the output (columns: {df.columns})")
    writer = df.write.format(config["output_format"]).mode(config["mode"])
    if config["partition_by"]:
        writer = writer.partitionBy(*config["partition_by"])
    try:
        writer.save(config["output"])
    except Exception as exc:
        if "PATH_ALREADY_EXISTS" in str(exc) or "already exists" in str(exc):
            raise JobError(f"output {config['output']} already exists (mode {config['mode']!r})") from None
        raise


def prepare_mlflow(config: dict[str, Any]) -> None:
    """With a local SQLite store, create the experiment with its artifacts next to the database
    (MLflow's default would be ./mlruns under whatever the cwd is)."""
    settings = config["mlflow"]
    uri = settings.get("tracking_uri") or ""
    if not uri.startswith("sqlite:///") or settings.get("logging") == "never":
        return
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    name = settings.get("experiment") or "smart_spark"
    if client.get_experiment_by_name(name) is None:
        artifacts = Path(uri[len("sqlite:///"):]).parent / "mlartifacts"
        client.create_experiment(name, artifact_location=artifacts.as_uri())


# ----------------------------------------------------------------- summary
def summarize(clf, written, config: dict[str, Any]) -> dict[str, Any]:
    run = clf.lastRun
    plan, profile = run.plan, run.profile
    figures = clf.summarize(written)
    expected = 0.0
    for m, f in plan.fractions.items():
        rate = 1.0 if m == plan.reference else getattr(profile.stats.get(m), "agreement_rate", float("nan"))
        expected += f * rate
    figures.update(
        remaining_target=plan.remaining_target,
        n_profiled=plan.n_total - plan.n_remaining,
        expected_agreement=expected,
        agreement_bound=plan.agreement_bound,
        accuracy_target=plan.accuracy_target,
        confidence=plan.confidence,
        fractions=dict(plan.fractions),
        mlflow_run_id=run.mlflow_run_id,
        mlflow_tracking_uri=run.mlflow_tracking_uri,
        output=config["output"],
    )
    return figures


def format_summary(s: dict[str, Any]) -> str:
    savings = s.get("savings", float("nan"))
    shares = ", ".join(f"{m} {f:.1%}" for m, f in sorted(s["fractions"].items(), key=lambda kv: -kv[1]) if f > 0)
    lines = [
        "=== SMART classify: summary ===",
        f"rows                 {s['rows']} ({s['null_predictions']} without a prediction)",
        f"realised spend       ${s['spend']:.4f} (sum of the cost column)",
        f"reference-only est.  ${s.get('reference_only_cost', float('nan')):.4f}",
        f"savings              {savings:.1f}x cheaper than the reference alone",
        f"plan                 {shares}",
        f"agreement            target {s['accuracy_target']:g} at confidence {s['confidence']:g}; "
        f"the {s['rows'] - s['n_profiled']} unprofiled rows must reach "
        f"{s['remaining_target']:.4f}; agreement bound {s['agreement_bound']:.4f} "
        f"(holds with probability >= {s['confidence']:g}); expected agreement {s['expected_agreement']:.4f}",
        "rows by model        " + ", ".join(f"{m}: {n}" for m, n in sorted(s["by_model"].items(), key=lambda kv: str(kv[0]))),
        f"output               {s['output']}",
    ]
    if s.get("mlflow_run_id"):
        lines.append(f"MLflow run           {s['mlflow_run_id']} at {s['mlflow_tracking_uri']}")
    else:
        lines.append("MLflow run           (not logged)")
    return "\n".join(lines)


# -------------------------------------------------------------------- main
def run(config: dict[str, Any]) -> dict[str, Any]:
    from smart_spark.catalogue import CatalogueError, ModelCatalogue, load_catalogue

    try:
        if config["catalogue"] is not None:
            catalogue = ModelCatalogue.from_yaml(config["catalogue"])
        else:
            catalogue = load_catalogue(config["models"])
    except (CatalogueError, TypeError, ValueError, KeyError) as exc:
        raise JobError(f"catalogue: {_one_line(exc)}") from None

    with contextlib.ExitStack() as stack:
        if config["stand_in"]:
            from smart_spark.testing import SimulatedBackend, StandInServer, with_base_url

            try:
                backend = SimulatedBackend.from_yaml(config["stand_in"]["simulate"])
            except (TypeError, ValueError, KeyError) as exc:
                raise JobError(f"stand_in: {_one_line(exc)}") from None
            server = stack.enter_context(
                StandInServer(backend, latency_s=float(config["stand_in"].get("latency_s") or 0.0))
            )
            catalogue = with_base_url(catalogue, server.base_url)
            print(f"stand-in LLM server (simulated) at {server.base_url}", flush=True)
        clf = make_classifier(config, catalogue)
        prepare_mlflow(config)
        spark = spark_session(config)
        df = read_input(spark, config)
        try:
            clf.validate(df.schema)
        except (TypeError, ValueError) as exc:
            raise JobError(_one_line(exc)) from None
        out = df.transform(clf)
        write_output(out, config)
        reader = spark.read.format(config["output_format"])
        written = reader.load(config["output"])
        summary = summarize(clf, written, config)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = check_config(apply_overrides(load_config(args.config), args))
        summary = run(config)
    except JobError as exc:
        print(f"classify: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
