"""End-to-end SMART run on Spark Connect or a standalone cluster, in its own process.

Only one classic SparkSession can live in a Python process, so the tests run
this script with ``sys.executable`` and check its JSON verdict (last stdout line):

    python tests/remote_e2e.py connect      # SparkSession.builder.remote("local[2]")
    python tests/remote_e2e.py standalone   # master + 2 workers from pyspark's spark-class
    python tests/remote_e2e.py standalone spark://127.0.0.1:PORT   # a cluster that is already up

Standalone: the master and workers are started from pyspark's own
``bin/spark-class`` on 127.0.0.1 with free ports, in their own process groups,
and killed (by those group ids only) in a ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import conftest  # noqa: E402  (sets PYSPARK_PYTHON, PYTHONPATH and the fake key)

N_ROWS = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def start_daemon(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    handle = open(log, "wb")
    return subprocess.Popen(
        [str(spark_class()), *args], stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_daemons(procs: list[subprocess.Popen]) -> None:
    import signal

    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


@contextlib.contextmanager
def standalone_cluster(workdir: Path, env: dict | None = None):
    """A master and two 1-core workers from pyspark's spark-class on 127.0.0.1; yields the master URL.

    The daemons run in their own process groups and are stopped (by those group ids) on exit.
    """
    env = env or dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_WORKER_DIR=str(workdir / "work"))
    procs: list[subprocess.Popen] = []
    try:
        port, ui = free_port(), free_port()
        procs.append(start_daemon(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui)], workdir / "master.log", env))
        master = f"spark://127.0.0.1:{port}"

        def master_up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(master_up, 60, "the master")
        note("master up")
        for k in range(2):
            procs.append(start_daemon(
                ["org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1", "--cores", "1",
                 "--memory", "1g", "--webui-port", str(free_port()), "--work-dir", str(workdir / f"w{k}")],
                workdir / f"worker{k}.log", env))
        wait_for(lambda: all("Successfully registered with master" in (workdir / f"worker{k}.log").read_text(errors="ignore")
                             for k in range(2)), 90, "two workers to register")
        note("workers registered")
        yield master
    finally:
        stop_daemons(procs)


def check(spark, server, mode: str) -> dict:
    import pandas as pd

    from smart_spark import SmartLLMClassifier
    from smart_spark.spark.params import DEFAULT_PROMPT

    catalogue = conftest.simulated_catalogue(server.base_url)
    rows = [(i, f"{mode} item {i:05d}: is this clause overruling?") for i in range(N_ROWS)]
    df = spark.createDataFrame(pd.DataFrame(rows, columns=["id", "text"])).repartition(3, "id").sortWithinPartitions("id")
    clf = SmartLLMClassifier(
        idCol="id", labels=conftest.SIM_LABELS, models=catalogue, referenceModel="gpt-4",
        accuracyTarget=0.85, seed=3, mlflowLogging="never",
    )
    started = time.monotonic()
    out = df.transform(clf).toPandas()
    elapsed = time.monotonic() - started
    counters = server.counters()
    plan = clf.lastPlan
    backend = server.backend
    agree = 0
    for text, model in zip(out["text"], out["prediction_model"]):
        prompt = DEFAULT_PROMPT.replace("{labels}", ", ".join(conftest.SIM_LABELS)).replace("{text}", text)
        agree += model is not None and backend.label_for(model, prompt) == backend.reference_label(prompt)
    max_models = {}
    for text, model in zip(out["text"], out["prediction_model"]):
        prompt = DEFAULT_PROMPT.replace("{labels}", ", ".join(conftest.SIM_LABELS)).replace("{text}", text)
        called = sum(server.answered_count(m, prompt) > 0 for m in counters)
        max_models[called] = max_models.get(called, 0) + 1
    return {
        "mode": mode,
        "rows_in": N_ROWS,
        "rows_out": int(len(out)),
        "ids_unique": bool(out["id"].is_unique),
        "spend_column": float(out["prediction_cost"].sum()) + clf.lastRun.fit_paid,
        "profile_spent": float(clf.lastProfile.spent),
        "paid_twice": {m: c["requests"] - c["distinct_prompts"] for m, c in counters.items()},
        "reference_requests": counters.get("gpt-4", {}).get("requests", 0),
        "reference_rows": int((out["prediction_model"] == "gpt-4").sum()),
        "null_predictions": int(out["prediction"].isna().sum()),
        "realised_agreement": agree / N_ROWS,
        "target": 0.85,
        "fractions": plan.fractions,
        "models_per_row": {str(k): v for k, v in sorted(max_models.items())},
        "seconds": round(elapsed, 1),
    }


def note(message: str, started: float = time.monotonic()) -> None:
    print(f"[remote_e2e {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def main(mode: str, master: str | None = None) -> int:
    from pyspark.sql import SparkSession

    from smart_spark.testing import StandInServer

    stack = contextlib.ExitStack()
    spark = None
    workdir = Path(tempfile.mkdtemp(prefix=f"smart-{mode}-"))
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_WORKER_DIR=str(workdir / "work"))
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    try:
        with stack, StandInServer(conftest.simulated_backend()) as server:
            if mode == "connect":
                spark = SparkSession.builder.remote("local[2]").config("spark.sql.shuffle.partitions", "2").getOrCreate()
            elif mode == "standalone":
                master = master or stack.enter_context(standalone_cluster(workdir, env))
                spark = (
                    SparkSession.builder.master(master)
                    .appName("smart_spark-standalone-e2e")
                    .config("spark.sql.shuffle.partitions", "2")
                    .config("spark.ui.enabled", "false")
                    .config("spark.executor.cores", "1")
                    .config("spark.executor.memory", "1g")
                    .config("spark.cores.max", "2")
                    .getOrCreate()
                )
                spark.sparkContext.setLogLevel("ERROR")
                wait_for(lambda: spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() >= 3, 90,
                         "two executors")
                note("executors up")
            else:
                raise SystemExit(f"unknown mode {mode!r}: use connect or standalone")
            note("session ready")
            result = check(spark, server, mode)
            note("check done")
            if mode == "standalone":
                result["executors"] = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
            result["is_connect"] = type(spark).__module__.startswith("pyspark.sql.connect")
    finally:
        if spark is not None:
            try:
                spark.stop()
            except Exception:
                pass
        stack.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:3] or ["connect"])))
