"""The classify job with the user's own data (issue 13), through the command line.

No fake answers unless asked for, every free check before the first paid call,
failures named as what they are with their exit codes, and a summary that
claims nothing it did not get. Endpoints are stand-in servers run by the test
(so their request counters prove what was, and was not, paid for), a closed
port, or a server that rejects every key.

Quick checks stop before Spark starts; the runs that need Spark use 60-100 rows and call the
job's ``main`` in this process on the tests' Spark session (no JVM start per run).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from smart_spark.testing import BackendError, FaultConfig, SimulatedBackend, StandInServer
from smart_spark.testing.demo_data import write_demo
from test_front_door import ROOT, _env, run_in_process, run_job
from test_preflight import closed_port, rejecting_server  # noqa: F401 - a fixture

DEMO_CATALOGUE = ROOT / "conf" / "demo_catalogue.yaml"
LABELS = ["positive", "negative", "neutral"]


def _data(tmp_path: Path, n: int = 100, seed: int = 5) -> str:
    return write_demo(str(tmp_path / "reviews.csv"), n=n, seed=seed)


def _catalogue_at(tmp_path: Path, base_url: str, extra: tuple[str, ...] = (), **fields) -> str:
    """The demo lineup's prices, every model at ``base_url`` (plus ``extra`` unknown models)."""
    entries = yaml.safe_load(DEMO_CATALOGUE.read_text())["models"]
    for name in extra:
        entries.append({**entries[-1], "name": name})
    for entry in entries:
        entry.update(base_url=base_url, **fields)
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump({"models": entries}))
    return str(path)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("classify: error")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _completions(server: StandInServer) -> int:
    return sum(c["requests"] for c in server.counters().values())


# ------------------------------------------------------- (a) no silent fakes
def test_own_input_without_a_choice_is_refused(tmp_path):
    proc = run_job(tmp_path, "--input", _data(tmp_path), "--output", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = _one_error_line(proc)
    assert "--stand-in" in line and "--no-stand-in" in line and "simulated" in line
    assert not (tmp_path / "out").exists()


def test_stand_in_flag_is_what_turns_simulation_on(tmp_path):
    # --stand-in with labels the simulation cannot answer: refused before Spark starts.
    proc = run_job(tmp_path, "--input", _data(tmp_path), "--stand-in", "--labels", "spam,ham", timeout=120)
    assert proc.returncode == 2
    assert "differ from the stand-in simulation's" in _one_error_line(proc)


# ------------------------------------------------ (b) endpoint down: refused
def test_closed_port_fails_fast_naming_the_refused_connection(tmp_path):
    catalogue = _catalogue_at(tmp_path, f"http://127.0.0.1:{closed_port()}/v1")
    start = time.perf_counter()
    proc = run_job(tmp_path, "--input", _data(tmp_path), "--catalogue", catalogue, "--no-stand-in",
                   "--output", str(tmp_path / "out"), timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = _one_error_line(proc)
    assert "PreflightError" in line and "refused" in line and "nothing was paid" in line
    assert "did not answer" not in line
    assert elapsed < 120
    assert "=== SMART classify: summary ===" not in proc.stdout
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [line]  # nothing but the cause


# --------------------------------------------- (c) unknown model, bad key
def test_model_unknown_to_the_endpoint_fails_before_any_paid_call(tmp_path):
    with StandInServer(SimulatedBackend.from_yaml(DEMO_CATALOGUE)) as server:
        catalogue = _catalogue_at(tmp_path, server.base_url, extra=("gpt-imaginary",))
        proc = run_job(tmp_path, "--input", _data(tmp_path), "--catalogue", catalogue, "--no-stand-in",
                       "--output", str(tmp_path / "out"), timeout=120)
        assert _completions(server) == 0
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = _one_error_line(proc)
    assert "model 'gpt-imaginary' is not known to its endpoint" in line


def test_rejected_key_fails_before_any_paid_call(tmp_path, rejecting_server):  # noqa: F811
    catalogue = _catalogue_at(tmp_path, rejecting_server, api_key_env="SMART_SPARK_TEST_API_KEY")
    proc = run_job(tmp_path, "--input", _data(tmp_path), "--catalogue", catalogue, "--no-stand-in", timeout=120)
    assert proc.returncode == 3
    line = _one_error_line(proc)
    assert "HTTP 401" in line and "rejected the API key" in line
    assert os.environ["SMART_SPARK_TEST_API_KEY"] not in proc.stdout + proc.stderr


def test_missing_key_variable_is_named(tmp_path):
    catalogue = _catalogue_at(tmp_path, f"http://127.0.0.1:{closed_port()}/v1", api_key_env="SMART_NO_SUCH_KEY")
    proc = run_job(tmp_path, "--input", _data(tmp_path), "--catalogue", catalogue, "--no-stand-in", timeout=120)
    assert proc.returncode == 3
    assert "environment variable SMART_NO_SUCH_KEY" in _one_error_line(proc)


def test_plain_file_as_tracking_uri_fails_before_paying(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database")
    proc = run_job(tmp_path, "--rows", "20", "--mlflow-tracking-uri", str(tmp_path / "notes.txt"), timeout=120)
    assert proc.returncode == 2
    assert "not a SQLite database" in _one_error_line(proc)


# ------------------------------ real endpoints, flags, write mode (needs Spark)
def test_own_catalogue_flags_and_write_mode_checked_before_paying(spark, tmp_path, monkeypatch, capsys):
    prompt = "Sentiment of this review, one of {labels}, nothing else.\nREVIEW >>> {text}\nANSWER:"
    (tmp_path / "prompt.txt").write_text(prompt + "\n")
    data = _data(tmp_path, n=60)
    out = tmp_path / "out"
    with StandInServer(SimulatedBackend.from_yaml(DEMO_CATALOGUE)) as server:
        catalogue = _catalogue_at(tmp_path, server.base_url)
        args = ("--input", data, "--catalogue", catalogue, "--no-stand-in", "--labels", ",".join(LABELS),
                "--prompt-file", str(tmp_path / "prompt.txt"), "--output", str(out), "--max-profile", "30")
        proc = run_in_process(tmp_path, monkeypatch, capsys, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "SIMULATED" not in proc.stdout  # the catalogue's endpoints answered, not the job's stand-in
        import pandas as pd

        written = pd.read_parquet(out)
        assert len(written) == 60 and set(written["sentiment_pred"].dropna()) <= set(LABELS)
        first = written.sort_values("id").iloc[0]
        sent = prompt.replace("{labels}", ", ".join(LABELS)).replace("{text}", first["review"])
        assert server.answered_count(first["sentiment_pred_model"], sent) >= 1  # the prompt file was used
        paid = _completions(server)

        again = run_in_process(tmp_path, monkeypatch, capsys, *args, "--mode", "error")
        assert again.returncode == 3, again.stdout + again.stderr
        assert "already exists and mode is 'error'" in _one_error_line(again)
        ignored = run_in_process(tmp_path, monkeypatch, capsys, *args, "--mode", "ignore")
        assert ignored.returncode == 0 and "nothing to do, nothing paid" in ignored.stdout
        assert _completions(server) == paid  # neither run called a model


# ------------------------------------ the run cannot keep its promise (Spark)
class _Outage(BackendError):
    status = 503
    error_type = "server_error"


class _GoesDownAfter:
    """The demo simulation, but it answers only the first ``limit`` distinct prompts it sees; every
    later new prompt gets a 503, like a provider that goes down in the middle of a run."""

    def __init__(self, limit: int) -> None:
        self.backend = SimulatedBackend.from_yaml(DEMO_CATALOGUE)
        self.limit = limit
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def model_names(self) -> list[str]:
        return self.backend.model_names()

    def latency_s(self, model: str) -> float | None:
        return self.backend.latency_s(model)

    def answer(self, model: str, prompt: str):
        with self.lock:
            if prompt not in self.seen and len(self.seen) >= self.limit:
                raise _Outage("The provider is down (stand-in outage)")
            self.seen.add(prompt)
        return self.backend.answer(model, prompt)


def _run_against(spark, tmp_path: Path, server: StandInServer, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """The job's ``main`` in this process, on the tests' Spark session (the job takes an active session, as
    under spark-submit): the same code as the console script without a JVM start per test."""
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "input": _data(tmp_path, n=80), "catalogue": _catalogue_at(tmp_path, server.base_url),
        "output": str(tmp_path / "out"), "max_retries": 0, "max_profile": 40, "max_error_rate": 0.01,
    }))
    return run_in_process(tmp_path, monkeypatch, capsys, "--config", str(config))


def test_no_reference_answers_is_a_profiling_error(spark, tmp_path, monkeypatch, capsys):
    with StandInServer(SimulatedBackend.from_yaml(DEMO_CATALOGUE), faults=FaultConfig(rate_500=1.0)) as server:
        proc = _run_against(spark, tmp_path, server, monkeypatch, capsys)
    assert proc.returncode == 4, proc.stdout + proc.stderr[-3000:]
    line = _one_error_line(proc)
    assert "ProfilingError" in line and "gpt-4.1" in line and "HTTP 500" in line
    assert "=== SMART classify: summary ===" not in proc.stdout
    assert not (tmp_path / "out").exists()  # stopped before the apply phase paid


def test_provider_down_mid_run_fails_the_job_and_claims_nothing(spark, tmp_path, monkeypatch, capsys):
    # Profiling (at most 40 distinct prompts) is fully answered; the other rows' calls all fail.
    with StandInServer(_GoesDownAfter(limit=40)) as server:
        proc = _run_against(spark, tmp_path, server, monkeypatch, capsys)
    assert proc.returncode == 5, proc.stdout + proc.stderr[-3000:]
    # Spark's own log of the failed task carries the executor's traceback; the job adds exactly one line.
    lines = [line for line in proc.stderr.splitlines() if line.startswith("classify: error")]
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert "ErrorRateExceeded" in line and "without an answer" in line
    if "=== SMART classify: summary ===" in proc.stdout:  # when the write finished before the check
        assert re.search(r"savings +not reported: \d+ rows have no answer", proc.stdout)
        assert "NOT claimed" in proc.stdout and "agreement bound" not in proc.stdout


# ------------------------------------------------ (d) the console script
def test_console_script_answers_help(tmp_path):
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    scripts = dict(
        line.split("=", 1) for line in parser["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    target = {k.strip(): v.strip() for k, v in scripts.items()}["smart-spark-classify"]
    assert target == "smart_spark.cli.classify:main"
    installed = shutil.which("smart-spark-classify", path=str(Path(sys.executable).parent))
    if installed:  # the installed entry point (CI installs the package)
        command = [installed, "--help"]
    else:  # this venv's editable install predates the script: run its target the way the script does
        module, function = target.split(":")
        command = [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())", "--help"]
    proc = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: smart-spark-classify" in proc.stdout
    for flag in ("--stand-in", "--no-stand-in", "--labels", "--prompt-template", "--prompt-file", "--input"):
        assert flag in proc.stdout


# ----------------------------------------------------- (e) Databricks spec
# Databricks Runtime -> Apache Spark version (Databricks release notes, "Databricks Runtime
# release notes versions and compatibility"): 15.4 LTS = 3.5.0, 16.4 LTS = 3.5.2, 17.3 LTS = 4.0.0.
DBR_SPARK = {"15.4": (3, 5), "16.4": (3, 5), "17.3": (4, 0)}
LTS = {"15.4", "16.4", "17.3"}


def _requirement(name: str) -> tuple[int, ...]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    for line in parser["options"]["install_requires"].splitlines():
        match = re.match(rf"\s*{re.escape(name)}(\[[^\]]*\])?\s*>=\s*([\d.]+)", line)
        if match:
            return tuple(int(p) for p in match.group(2).split("."))
    raise AssertionError(f"{name} not in install_requires")


def test_databricks_job_runtime_matches_the_package():
    spec = json.loads((ROOT / "conf" / "databricks_job.json").read_text())
    clusters = [c["new_cluster"] for c in spec.get("job_clusters", [])]
    clusters += [t["new_cluster"] for t in spec["tasks"] if "new_cluster" in t]
    assert clusters
    minimum = _requirement("pyspark")
    for cluster in clusters:
        version = cluster["spark_version"]
        dbr = ".".join(version.split(".")[:2])
        assert dbr in LTS, f"{version} is not an LTS runtime"
        assert DBR_SPARK[dbr] >= minimum[:2], f"{version} runs Spark {DBR_SPARK[dbr]}, setup.cfg needs pyspark>={minimum}"
        assert version.endswith("scala2.13")  # Spark 4 is built for Scala 2.13 only
    for task in spec["tasks"]:
        for library in task.get("libraries", []):
            if "pypi" in library:
                name, _, floor = library["pypi"]["package"].partition(">=")
                assert tuple(int(p) for p in floor.split(".")) >= _requirement(name)


def test_databricks_job_flags_are_the_cli_flags():
    from smart_spark.cli.config import parse_args

    spec = json.loads((ROOT / "conf" / "databricks_job.json").read_text())
    known = set(vars(parse_args([])))
    for task in spec["tasks"]:
        wheel = task.get("python_wheel_task")
        if wheel is None:
            continue
        assert wheel["entry_point"] == "smart-spark-classify" and wheel["package_name"] == "smart_spark"
        flags = [p for p in wheel["parameters"] if p.startswith("--")]
        missing = [f for f in flags if f.lstrip("-").replace("-", "_") not in known]
        assert not missing, f"{task['task_key']}: unknown flags {missing}"


# ------------------------------------------- the daily job: save, load, reuse
def test_saved_model_is_loaded_by_the_next_run_and_nothing_is_paid_twice(spark, tmp_path, monkeypatch, capsys):
    data = _data(tmp_path, n=80)
    store, model = tmp_path / "answers", tmp_path / "model"
    with StandInServer(SimulatedBackend.from_yaml(DEMO_CATALOGUE)) as server:
        catalogue = _catalogue_at(tmp_path, server.base_url)
        common = ("--input", data, "--catalogue", catalogue, "--no-stand-in", "--max-profile", "40",
                  "--answers-path", str(store))
        first = run_in_process(tmp_path, monkeypatch, capsys, *common, "--output", str(tmp_path / "day1"),
                               "--save-model", str(model))
        assert first.returncode == 0, first.stderr[-3000:]
        assert "fitted model saved" in first.stdout and (model / "metadata").exists()
        paid = _completions(server)

        second = run_in_process(tmp_path, monkeypatch, capsys, *common, "--output", str(tmp_path / "day2"),
                                "--load-model", str(model))
        assert second.returncode == 0, second.stderr[-3000:]
        assert "fitted model loaded" in second.stdout
        assert _completions(server) == paid  # same rows, same store: every answer reused
        import pandas as pd

        day1, day2 = pd.read_parquet(tmp_path / "day1"), pd.read_parquet(tmp_path / "day2")
        merged = day1.merge(day2, on="id", suffixes=("_1", "_2"))
        assert len(merged) == 80 and (merged["sentiment_pred_1"] == merged["sentiment_pred_2"]).all()
