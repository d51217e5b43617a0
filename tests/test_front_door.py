"""The front door: ``python -m jobs.classify`` (default demo, config file, bad input) and the quickstart notebook.

Every run has its cwd in ``tmp_path`` (outputs, MLflow store and artifacts
land there; the repository stays clean). The default run and bad input run as
subprocesses (the console script as a user starts it); the runs that only need
a working job call its ``main`` in this process on the tests' Spark session
(``run_in_process``: the same code, as under spark-submit, without a JVM start
per test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_job(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.classify", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
    )


def run_in_process(tmp_path: Path, monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    """The job's ``main(args)`` in this process, on the active Spark session, cwd ``tmp_path``."""
    from smart_spark.cli.classify import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["classify", *args], code, captured.out, captured.err)


def _summary_ok(proc: subprocess.CompletedProcess, rows: int) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "=== SMART classify: summary ===" in out
    assert f"rows                 {rows} " in out
    for field in ("realised spend", "reference-only est.", "savings", "agreement", "MLflow run"):
        assert field in out
    assert "(not logged)" not in out
    return out


def test_default_run_no_arguments(tmp_path):
    proc = run_job(tmp_path)
    out = _summary_ok(proc, 3000)
    assert "answers              SIMULATED" in out  # the embedded demo says what answered
    assert "sqlite:///" + str(tmp_path / "mlflow.db") in out
    assert (tmp_path / "output" / "demo_classified").is_dir()
    assert (tmp_path / "mlartifacts").is_dir()
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "output" / "demo_classified")
    assert len(frame) == 3000
    assert {"sentiment_pred", "sentiment_pred_model", "sentiment_pred_cost", "sentiment_pred_error"} <= set(frame.columns)
    assert frame["sentiment_pred"].notna().all()
    spend = float(frame["sentiment_pred_cost"].sum())
    assert f"${spend:.4f}" in out


def test_run_from_config_file_with_overrides(spark, tmp_path, monkeypatch, capsys):
    from smart_spark.testing.demo_data import write_demo

    data = write_demo(str(tmp_path / "reviews.csv"), n=300, seed=3)
    out_dir = tmp_path / "out"
    proc = run_in_process(
        tmp_path, monkeypatch, capsys, "--config", str(ROOT / "conf" / "job_example.yaml"), "--input", data,
        "--output", str(out_dir), "--mlflow-tracking-uri", str(tmp_path / "tracking"), "--target", "0.85",
    )
    out = _summary_ok(proc, 300)
    assert "target 0.85" in out
    assert "answers              SIMULATED" in out  # the config's stand_in section chose the stand-in
    # partition_by: [category] from the config file
    assert sorted(p.name for p in out_dir.iterdir() if p.name.startswith("category=")) == [
        "category=electronics", "category=home", "category=kitchen", "category=outdoors", "category=toys"]
    assert (tmp_path / "tracking" / "mlflow.db").is_file()


@pytest.mark.parametrize(
    "config_text, args, needle",
    [
        ("demo_rows: 10\ncolour: blue\n", (), "unknown key(s) ['colour']"),
        ("target: 1.5\n", (), "target must be in (0, 1], got 1.5"),
        ("demo_rows: 10\n", ("--confidence", "1.0"), "confidence must be in (0, 1)"),
        ("mode: sideways\n", (), "mode must be one of"),
        ("demo_rows: 10\n", ("--input", "no/such/file.parquet"), "input not found"),
        ("input: missing.csv\n", (), "input not found"),
        ("demo_rows: 10\n", ("--input", "{tmp}/data.txt"), "cannot tell the format"),
    ],
)
def test_bad_config_or_input_fails_with_one_line(tmp_path, config_text, args, needle):
    (tmp_path / "data.txt").write_text("x\n")
    config = tmp_path / "job.yaml"
    config.write_text(config_text)
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
    proc = run_job(tmp_path, "--config", str(config), *args, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("classify: error: "), proc.stderr
    assert needle in lines[0], lines[0]


def test_missing_config_file(tmp_path):
    proc = run_job(tmp_path, "--config", "nope.yaml", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "classify: error: config file not found: nope.yaml"


def test_quickstart_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    old = dict(os.environ)
    os.environ.update(_env())
    os.environ["SMART_QUICKSTART_DIR"] = str(tmp_path)
    try:
        client = nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    outputs = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    assert "SMART plan" in outputs
    assert "MLflow run" in outputs
    assert any("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))
