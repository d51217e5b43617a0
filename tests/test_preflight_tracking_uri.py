"""The MLflow tracking URI rule (smart_spark.tracking.uri), checked before anything is paid.

MLflow 3 refuses file stores only when the first run is created -- in a SMART
job, after profiling has paid -- so plain paths become SQLite stores up front.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from smart_spark.errors import ConfigurationError
from smart_spark.tracking.uri import resolve_tracking_uri


@pytest.mark.parametrize("uri", ["databricks", "databricks://profile", "http://mlflow:5000", "https://x/y",
                                 "sqlite:///tmp/x.db", "postgresql://u@h/db"])
def test_uris_with_a_scheme_pass_unchanged(uri):
    assert resolve_tracking_uri(uri) == uri


def test_none_stays_none(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) is None


def test_folder_becomes_sqlite_store_inside_it(tmp_path):
    assert resolve_tracking_uri(str(tmp_path / "runs")) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs").is_dir()  # created now, so a bad place fails before paying


def test_db_path_and_file_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sub/track.sqlite") == f"sqlite:///{tmp_path / 'sub' / 'track.sqlite'}"
    assert resolve_tracking_uri((tmp_path / "fs").as_uri()) == f"sqlite:///{tmp_path / 'fs' / 'mlflow.db'}"


def test_existing_sqlite_file_without_suffix_is_used(tmp_path):
    database = tmp_path / "store"
    sqlite3.connect(database).execute("create table t (x)").connection.close()
    assert resolve_tracking_uri(str(database)) == f"sqlite:///{database}"


def test_other_existing_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigurationError, match="is a file but not a SQLite database"):
        resolve_tracking_uri(str(tmp_path / "notes.txt"))


def test_existing_file_store_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    with pytest.raises(ConfigurationError, match="is an MLflow file store.*mlflow migrate-filestore"):
        resolve_tracking_uri(str(tmp_path / "mlruns"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_place_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigurationError, match="cannot create|not writable"):
            resolve_tracking_uri(str(locked / "runs"))
    finally:
        locked.chmod(0o700)


def test_plain_path_in_environment_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    with pytest.raises(ConfigurationError, match="MLFLOW_TRACKING_URI=.*file store"):
        resolve_tracking_uri(None)


def test_resolved_uri_is_one_mlflow_accepts(tmp_path):
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(str(tmp_path / "runs"))
    experiment = MlflowClient(tracking_uri=uri).create_experiment("x", artifact_location=(tmp_path / "a").as_uri())
    assert experiment
    assert (tmp_path / "runs" / "mlflow.db").is_file()
