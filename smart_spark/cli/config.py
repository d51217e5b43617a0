"""The classify job's configuration: defaults, YAML file, command-line flags, validation.

Precedence: built-in defaults (the embedded demo) < the ``--config`` YAML file
< command-line flags. :func:`check_config` validates everything that needs no
Spark and no network; what needs them (output path, endpoints) is checked by
the job before anything is paid.

Where answers come from (:func:`choose_stand_in`) is never guessed for the
user's own data: the embedded demo uses the simulated stand-in server, but with
an input of their own the user (flag or config file) must say whether answers
come from real endpoints or the stand-in.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

from smart_spark.errors import ConfigurationError

#: Files of the embedded demo, shipped inside the package so the job runs from anywhere.
DEMO_CATALOGUE = str(Path(__file__).resolve().parents[1] / "testing" / "demo_catalogue.yaml")

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
    "catalogue": DEMO_CATALOGUE,
    "models": None,
    "reference_model": "gpt-4.1",
    "stand_in": {"simulate": DEMO_CATALOGUE, "latency_s": 0.0},
    "labels": ["positive", "negative", "neutral"],
    "prompt_template": (
        "What is the sentiment of this product review? Answer with exactly one of: {labels}.\n\n"
        "Review: {text}\n\nSentiment:"
    ),
    "prompt_file": None,
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
    "max_error_rate": 0.01,
    "answers_path": None,
    "execution_mode": "online",
    "save_model": None,
    "load_model": None,
    "concurrency": None,
    "batch_size": 512,
    "timeout": 30.0,
    "max_retries": 6,
    "preflight_timeout": 10.0,
    "mlflow": {"experiment": "smart_spark_jobs", "tracking_uri": "mlflow.db", "run_name": None, "logging": "always"},
    "spark": {"master": "local[2]", "app_name": "smart_spark-classify", "conf": {}},
}
_SECTIONS = {k for k, v in DEFAULT_CONFIG.items() if isinstance(v, dict) and v}
INPUT_FORMATS = ("parquet", "csv", "json", "delta")
OUTPUT_FORMATS = ("parquet", "delta")
MODES = ("overwrite", "append", "error", "errorifexists", "ignore")

STAND_IN_CHOICE = (
    "say where the answers come from: --no-stand-in to call the catalogue's real endpoints "
    "(--catalogue YAML, keys in the environment), or --stand-in to label with the local simulated "
    "stand-in server (fake answers, for trying the job out); a config file can choose with "
    "'catalogue:' (real endpoints) or a 'stand_in:' section"
)


class JobError(ConfigurationError):
    """Bad config or input: reported as one line, exit code 2."""


def _is_remote(path: str) -> bool:
    return "://" in path or path.startswith("dbfs:")


def resolve_path(path: str | None, base: Path | None = None) -> str | None:
    """Relative paths: from the cwd when they exist there, else from ``base`` (the config's folder)."""
    if path is None or _is_remote(str(path)) or os.path.isabs(str(path)):
        return path
    if os.path.exists(path) or base is None:
        return str(Path(path).resolve())
    candidate = base / path
    return str(candidate.resolve()) if candidate.exists() else str(Path(path).resolve())


def load_config(path: str | None) -> tuple[dict[str, Any], set[str]]:
    """(config, keys the file set): the defaults updated from the YAML file at ``path``."""
    config = copy.deepcopy(DEFAULT_CONFIG)
    if path is None:
        return config, set()
    import yaml

    file = Path(path)
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
    base = file.resolve().parent
    for key, value in document.items():
        if key in _SECTIONS and isinstance(value, dict):
            bad = sorted(set(value) - set(DEFAULT_CONFIG[key]))
            if bad:
                raise JobError(f"config {path}: unknown key(s) {bad} in {key} (known: {sorted(DEFAULT_CONFIG[key])})")
            config[key].update(value)
        elif key in _SECTIONS and key != "stand_in" and value is not None:
            raise JobError(f"config {path}: {key} must be a mapping, got {value!r}")
        else:
            config[key] = value
    # Paths in a config file are relative to the cwd, or else to the file's own folder.
    for key in ("input", "catalogue", "prompt_file"):
        if isinstance(document.get(key), str):
            config[key] = resolve_path(document[key], base)
    if isinstance(document.get("stand_in"), dict) and document["stand_in"].get("simulate"):
        config["stand_in"]["simulate"] = resolve_path(document["stand_in"]["simulate"], base)
    if document.get("input") is not None and "demo_rows" not in document:
        config["demo_rows"] = None
    if "models" in document and "catalogue" not in document:
        config["catalogue"] = None
    return config, set(document)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="smart-spark-classify",
        description="Classify a table with SMART (cheapest LLM mix meeting an accuracy target) and write it. "
        "Without arguments: the embedded demo (3,000 generated reviews, simulated stand-in LLM server).",
    )
    p.add_argument("--config", help="job config YAML (default: the embedded demo)")
    p.add_argument("--input", help="input path (Parquet/CSV/JSON/Delta)")
    p.add_argument("--input-format", choices=INPUT_FORMATS)
    p.add_argument("--rows", type=int, dest="demo_rows", help="generate N demo reviews instead of reading input")
    p.add_argument("--output", help="output path")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS)
    p.add_argument("--mode", help=f"write mode {list(MODES)}")
    p.add_argument("--partition-by", help="comma-separated output partition columns")
    p.add_argument("--catalogue", help="catalogue YAML path (its endpoints answer unless --stand-in)")
    p.add_argument("--reference-model")
    p.add_argument("--labels", help="comma-separated allowed labels, e.g. positive,negative")
    template = p.add_mutually_exclusive_group()
    template.add_argument("--prompt-template", help="prompt with {text} (the row's text) and optionally {labels}")
    template.add_argument("--prompt-file", help="file holding the prompt template")
    p.add_argument("--system-prompt")
    p.add_argument("--target", type=float, help="accuracy target in (0, 1]")
    p.add_argument("--confidence", type=float, help="confidence in (0, 1)")
    p.add_argument("--method", help="reference | single | single-early-stop | mix")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-profile", type=int)
    p.add_argument("--spend-cap", type=float, help="USD for the whole run")
    p.add_argument("--max-error-rate", type=float,
                   help="share of rows with text allowed to end without an answer before the job fails (exit 5)")
    p.add_argument("--answers-path", help="answer store folder (local, dbfs:/, s3a://, abfss://...): "
                   "every answer paid once, across reruns")
    p.add_argument("--execution-mode", choices=("online", "batch"),
                   help="apply phase: online calls, or the provider's Batch API (batch_discount; answers within "
                   "24 h; a rerun resumes waiting for the recorded batches)")
    fitted = p.add_mutually_exclusive_group()
    fitted.add_argument("--save-model", help="fit, save the fitted model here, then apply it")
    fitted.add_argument("--load-model", help="apply a saved model (a path, or runs:/<MLflow run id>) instead of "
                        "fitting; its plan is confirmed on the new rows first")
    p.add_argument("--text-col")
    p.add_argument("--id-col")
    p.add_argument("--output-col")
    p.add_argument("--mlflow-tracking-uri", help="URI, or a folder / .db path (a SQLite store there)")
    p.add_argument("--mlflow-experiment")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--stand-in", action="store_true", dest="stand_in",
                        help="answer with the local SIMULATED stand-in server (fake labels; for trying the job)")
    source.add_argument("--no-stand-in", action="store_true", dest="no_stand_in",
                        help="call the catalogue's real endpoints")
    return p.parse_args(argv)


def apply_overrides(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    simple = ["input", "input_format", "output", "output_format", "mode", "catalogue", "reference_model", "target",
              "confidence", "method", "seed", "max_profile", "spend_cap", "max_error_rate", "text_col", "id_col",
              "output_col", "prompt_template", "system_prompt", "answers_path", "execution_mode", "save_model", "load_model"]
    for key in simple:
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if args.input is not None:
        config["demo_rows"] = None
    if args.demo_rows is not None:
        config["demo_rows"] = args.demo_rows
        config["input"] = None
    if args.labels is not None:
        config["labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
    if args.prompt_file is not None:
        config["prompt_file"] = args.prompt_file
    elif args.prompt_template is not None:
        config["prompt_file"] = None  # the flag beats a prompt_file in the config file
    if args.partition_by is not None:
        config["partition_by"] = [c.strip() for c in args.partition_by.split(",") if c.strip()]
    if args.mlflow_tracking_uri is not None:
        config["mlflow"]["tracking_uri"] = args.mlflow_tracking_uri
    if args.mlflow_experiment is not None:
        config["mlflow"]["experiment"] = args.mlflow_experiment
    return config


def read_prompt_file(path: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise JobError(f"prompt file {path}: {exc.strerror or exc}") from None
    return text.rstrip("\n")


def choose_stand_in(config: dict[str, Any], file_keys: set[str], args: argparse.Namespace) -> dict[str, Any]:
    """Decide whether the stand-in server answers; refuse to guess for the user's own input.

    Chosen by, in order: ``--stand-in`` / ``--no-stand-in``; a ``stand_in`` key
    in the config file (a section: yes; null/false: no); naming a catalogue
    (``--catalogue`` or the file's ``catalogue``/``models``: its endpoints).
    Without any of these the embedded demo uses the stand-in, and an input of
    the user's own is an error that says how to choose.
    """
    if args.stand_in:
        if not config.get("stand_in"):
            config["stand_in"] = copy.deepcopy(DEFAULT_CONFIG["stand_in"])
        return config
    if args.no_stand_in:
        config["stand_in"] = None
        return config
    if "stand_in" in file_keys:
        if config["stand_in"] is False:
            config["stand_in"] = None
        return config
    if args.catalogue is not None or {"catalogue", "models"} & file_keys:
        config["stand_in"] = None
        return config
    if config["input"] is not None:
        raise JobError(f"--input is your own data, so no answers are simulated unless you ask: {STAND_IN_CHOICE}")
    return config


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate what needs neither Spark nor the network; returns the config with paths resolved."""
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
    number("max_error_rate", 0.0, 1.0, False, False)
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
    if config["prompt_file"]:
        config["prompt_template"] = read_prompt_file(config["prompt_file"])
    if not isinstance(config["labels"], list) or not config["labels"]:
        raise JobError(f"labels must be a non-empty list, got {config['labels']!r}")
    if not config["output"]:
        raise JobError("output must be set")
    if config["input"] is None:
        rows = config["demo_rows"]
        if rows is None:
            raise JobError("set input (a Parquet/CSV/JSON path) or demo_rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise JobError(f"demo_rows must be a positive integer, got {rows!r}")
    else:
        config["input"] = resolve_path(config["input"])
        if not _is_remote(config["input"]) and not os.path.exists(config["input"]):
            raise JobError(f"input not found: {config['input']}")
        if config["input_format"] is None:
            config["input_format"] = _format_of(config["input"])
    if config["catalogue"] is None and not config["models"]:
        raise JobError("set catalogue (a YAML path) or models (a list of entries)")
    if config["catalogue"] is not None:
        config["catalogue"] = resolve_path(config["catalogue"])
        if not os.path.isfile(config["catalogue"]):
            raise JobError(f"catalogue not found: {config['catalogue']}")
    if config["stand_in"]:
        if not isinstance(config["stand_in"], dict) or not config["stand_in"].get("simulate"):
            raise JobError("stand_in needs simulate: <YAML with a simulation: section>")
        sim = config["stand_in"]["simulate"]
        config["stand_in"]["simulate"] = resolve_path(sim)
        if not os.path.isfile(config["stand_in"]["simulate"]):
            raise JobError(f"stand_in simulate file not found: {sim}")
    if not _is_remote(str(config["output"])):
        config["output"] = str(Path(config["output"]).resolve())
    from smart_spark.tracking.uri import resolve_tracking_uri

    config["mlflow"]["tracking_uri"] = resolve_tracking_uri(config["mlflow"].get("tracking_uri"))
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
