"""Where the classify job writes, checked before the first paid call, and the write itself.

Spark finds out that ``mode=error`` meets an existing output, or that a
partition column is missing, only when it writes -- after profiling and the
apply phase have paid for every row. :func:`check_output_location` and
:func:`check_output_columns` ask the same questions first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smart_spark.cli.config import JobError
from smart_spark.errors import PreflightError

SKIP = "skip"  # check_output_location's answer when mode=ignore meets an existing output


def check_output_location(config: dict[str, Any], spark=None) -> str | None:
    """Raise unless the output path can be written with the configured mode; :data:`SKIP` when
    ``mode=ignore`` meets an existing output. Without ``spark`` only local paths are looked at
    (so this runs before Spark starts); call again with the session for remote ones."""
    path, mode = config["output"], config["mode"]
    if config["input"] is not None and mode == "overwrite" and _same_path(config["input"], path):
        raise PreflightError(f"output {path} is also the input: overwriting it would destroy the rows being read")
    exists = output_exists(spark, path)
    if exists and mode in ("error", "errorifexists"):
        raise PreflightError(
            f"output {path} already exists and mode is {mode!r}: choose another --output, or --mode overwrite/append"
        )
    if exists and mode == "ignore":
        return SKIP
    if not _is_remote(path):
        _check_local_writable(Path(path))
    if spark is not None and config["output_format"] == "delta" and not _delta_available(spark):
        raise PreflightError("output_format delta needs the Delta Lake package (delta-spark) on this Spark session")
    return None


def check_output_columns(config: dict[str, Any], output_columns: list[str]) -> None:
    missing = [c for c in config["partition_by"] if c not in output_columns]
    if missing:
        raise JobError(f"partition_by: no column(s) {missing} in the output (columns: {output_columns})")


def output_exists(spark, path: str) -> bool | None:
    """Whether ``path`` exists (local, or any Hadoop file system); None when it cannot be told
    (a remote path without a session, or Spark Connect)."""
    if not _is_remote(path):
        return os.path.exists(path)
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        return None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return bool(hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(hadoop_path))


def write_output(df, config: dict[str, Any]) -> None:
    writer = df.write.format(config["output_format"]).mode(config["mode"])
    if config["partition_by"]:
        writer = writer.partitionBy(*config["partition_by"])
    writer.save(config["output"])


def _is_remote(path: str) -> bool:
    return "://" in path or path.startswith("dbfs:")


def _check_local_writable(path: Path) -> None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_file() and existing != path:
        raise PreflightError(f"output {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise PreflightError(f"output {path}: {existing} is not writable")


def _same_path(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def _delta_available(spark) -> bool:
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        return True  # Spark Connect: the server decides; cannot be checked from here
    try:
        jvm.java.lang.Thread.currentThread().getContextClassLoader().loadClass("io.delta.tables.DeltaTable")
    except Exception:
        return False
    return True
