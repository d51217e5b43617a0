"""Turn a user's MLflow tracking setting into a URI MLflow will accept, before anything is paid.

MLflow 3 no longer writes to file stores (``./mlruns``, ``file:...``, or a
plain folder path): it raises only when the first run is created, which in a
SMART job is after profiling has paid for hundreds of requests. So a plain path
is read as "keep my runs here" and becomes a SQLite store:

* ``runs/mlflow.db`` (``.db``/``.sqlite``/``.sqlite3``, or an existing SQLite
  file) -> ``sqlite:///<absolute path>``;
* any other path (an existing or new folder) -> ``sqlite:///<folder>/mlflow.db``;
* ``file:`` URIs are read as the path they name;
* a folder that already is an MLflow file store, a path that is an existing
  non-SQLite file, or a place that cannot be written -> a
  :class:`~smart_spark.errors.ConfigurationError` saying what to do;
* every URI with another scheme (``databricks``, ``http(s)://``,
  ``sqlite:///``, ``postgresql://``, ...) is returned unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from smart_spark.errors import ConfigurationError

DATABASE_NAME = "mlflow.db"
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQLITE_HEADER = b"SQLite format 3\x00"
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def resolve_tracking_uri(uri: str | None) -> str | None:
    """The tracking URI to give MLflow for ``uri`` (None stays None: MLflow's default).

    With ``uri`` None, a plain path in ``MLFLOW_TRACKING_URI`` is refused with
    a clear error rather than rewritten, since MLflow itself reads that variable.
    """
    if uri is None or not str(uri).strip():
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env and _is_path(env):
            raise ConfigurationError(
                f"MLFLOW_TRACKING_URI={env!r} is a file store, which MLflow 3 no longer writes to; "
                "set it to a database URI such as 'sqlite:///<folder>/mlflow.db' (or pass the path as the "
                "tracking URI param, which is turned into one)"
            )
        return None
    uri = str(uri).strip()
    if not _is_path(uri):
        return uri
    path = Path(unquote(urlparse(uri).path) if uri.startswith("file:") else uri).expanduser().resolve()
    if path.is_file():
        if not _is_sqlite(path):
            raise ConfigurationError(
                f"MLflow tracking URI {uri!r}: {path} is a file but not a SQLite database; "
                f"give a folder (its {DATABASE_NAME} is used) or a path ending in .db"
            )
        database = path
    elif path.suffix.lower() in _SQLITE_SUFFIXES:
        database = path
    else:
        if _is_file_store(path):
            raise ConfigurationError(
                f"MLflow tracking URI {uri!r}: {path} is an MLflow file store, which MLflow 3 no longer "
                f"writes to; migrate it (`mlflow migrate-filestore`) and pass sqlite:///..., or choose another folder"
            )
        database = path / DATABASE_NAME
    _check_writable(uri, database)
    return f"sqlite:///{database}"


def _is_path(uri: str) -> bool:
    """A plain path or ``file:`` URI (anything without another ``scheme:``)."""
    if uri.startswith("file:") or _WINDOWS_DRIVE.match(uri):
        return True
    return ":" not in uri and uri != "databricks"


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError:
        return False
    return header == _SQLITE_HEADER or header == b""  # an empty file is a new database to SQLite


def _is_file_store(path: Path) -> bool:
    """MLflow file stores hold ``<experiment id>/meta.yaml`` (and often ``.trash``)."""
    if not path.is_dir():
        return False
    return (path / ".trash").is_dir() or any(child.is_dir() and (child / "meta.yaml").is_file() for child in path.iterdir())


def _check_writable(uri: str, database: Path) -> None:
    """Create the database's folder now and make sure it can be written."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"MLflow tracking URI {uri!r}: cannot create {database.parent} ({exc.strerror})") from None
    target = database if database.exists() else database.parent
    if not os.access(target, os.W_OK):
        raise ConfigurationError(f"MLflow tracking URI {uri!r}: {target} is not writable")
