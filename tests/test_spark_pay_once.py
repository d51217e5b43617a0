"""Pay once: every answer is paid at most once, across actions, reruns after a crash and corrupt store files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SIM_LABELS, simulated_backend, text_frame
from smart_spark import SmartLLMClassifier
from smart_spark.errors import PreflightError

pytest.importorskip("smart_spark.store")

JOB = Path(__file__).with_name("pay_once_job.py")


def classifier(catalogue, answers, **kw):
    base = dict(labels=SIM_LABELS, models=catalogue, referenceModel="gpt-4", accuracyTarget=0.85, idCol="id",
                answersPath=str(answers), mlflowLogging="never")
    base.update(kw)
    return SmartLLMClassifier(**base)


def paid_twice(server) -> dict[str, int]:
    return {m: c["answered"] - c["distinct_prompts"] for m, c in server.counters().items()}


def test_three_actions_pay_each_prompt_once(spark, sim_server, sim_catalogue, tmp_path):
    out = text_frame(spark, 300, prefix="three actions").transform(classifier(sim_catalogue, tmp_path / "answers"))
    first = out.toPandas()
    assert out.count() == 300
    out.write.parquet(str(tmp_path / "written"))
    assert all(v == 0 for v in paid_twice(sim_server).values()), sim_server.counters()
    written = out.sparkSession.read.parquet(str(tmp_path / "written")).toPandas().sort_values("id")
    assert not written["prediction_paid"].any() and written["prediction_cost"].sum() == 0
    assert list(written["prediction"]) == list(first.sort_values("id")["prediction"])


def test_unwritable_answers_path_fails_before_anything_is_paid(spark, sim_server, sim_catalogue, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PreflightError, match=str(blocker)):
        text_frame(spark, 50, prefix="unwritable").transform(classifier(sim_catalogue, blocker / "answers"))
    assert sum(c["requests"] for c in sim_server.counters().values()) == 0


def test_corrupt_store_files_are_survived(spark, sim_server, sim_catalogue, tmp_path):
    answers = tmp_path / "answers"
    df = text_frame(spark, 200, prefix="corrupt")
    first = df.transform(classifier(sim_catalogue, answers, seed=1)).toPandas().sort_values("id")
    files = [p for p in answers.rglob("*") if p.is_file()]
    assert files
    for path in files:  # a half-written record at the end of every file, as a killed task leaves it
        with open(path, "ab") as handle:
            handle.write(b'{"key": "deadbeef", "model": "gpt-4", "lab')
    (answers / "garbage.jsonl").write_bytes(b"\x00\xff not json\n{]\n")
    before = sim_server.counters()
    again = df.transform(classifier(sim_catalogue, answers, seed=1)).toPandas().sort_values("id")
    assert list(again["prediction"]) == list(first["prediction"])
    assert sim_server.counters() == before and not again["prediction_paid"].any()


def kill_and_rerun(tmp_path, master: str, rows: int, timeout: float) -> dict:
    """Run the job, SIGKILL its process group during the apply phase, rerun it; returns the evidence."""
    from smart_spark.testing import StandInServer

    concurrency = 4
    answers, output = tmp_path / "answers", tmp_path / "out"
    with StandInServer(simulated_backend(latency_s=0.03)) as server:
        command = [sys.executable, str(JOB), "--master", master, "--base-url", server.base_url,
                   "--answers", str(answers), "--output", str(output), "--rows", str(rows),
                   "--concurrency", str(concurrency)]
        log = open(tmp_path / "killed.log", "w+")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            for line in proc.stdout:
                if line.startswith("FIT DONE") or time.monotonic() > deadline:
                    break
            after_fit = sum(c["answered"] for c in server.counters().values())
            while sum(c["answered"] for c in server.counters().values()) < after_fit + rows // 4:
                assert proc.poll() is None and time.monotonic() < deadline, "the job ended before the kill"
                time.sleep(0.05)
        finally:
            kill_session(proc.pid)
            proc.wait(timeout=30)
        at_kill = server.counters()
        wait_until_quiet(server)
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert rerun.returncode == 0, rerun.stderr[-4000:]
        import pandas as pd

        out = pd.read_parquet(output)
        return {
            "rows_out": len(out), "ids_unique": bool(out["id"].is_unique), "ids": set(out["id"]),
            "paid_twice": paid_twice(server), "answered_at_kill": sum(c["answered"] for c in at_kill.values()),
            "answered": sum(c["answered"] for c in server.counters().values()),
            "bound": 2 * concurrency, "rows": rows, "paid_in_rerun": int(out["prediction_paid"].sum()),
        }


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the job's session, as when its machine dies.

    The job's own process group is not enough: pyspark's worker daemon moves its
    Python workers into a process group of their own, and those would go on
    calling (and recording) for a while after the JVM is gone.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id:  # fields after "(comm)": state ppid pgrp session ...
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.parent.name), signal.SIGKILL)


def wait_until_quiet(server, quiet_s: float = 1.0, timeout: float = 60.0) -> None:
    """Until the stand-in server has answered nothing for ``quiet_s``: on a standalone cluster the
    executors of a killed driver are stopped by their workers, a moment after the kill."""
    deadline = time.monotonic() + timeout
    answered = lambda: sum(c["answered"] for c in server.counters().values())  # noqa: E731
    last, since = answered(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = answered()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def check_kill_and_rerun(result: dict) -> None:
    assert result["rows_out"] == result["rows"] and result["ids_unique"]
    assert result["ids"] == set(range(result["rows"]))
    # nothing paid twice apart from the calls in flight at the kill: tasks x concurrency per model
    assert all(v <= result["bound"] for v in result["paid_twice"].values()), result["paid_twice"]
    assert 0 < result["paid_in_rerun"] < result["rows"]  # the rerun paid only for the rest
    assert result["answered"] > result["answered_at_kill"]


@pytest.mark.slow
def test_killed_job_rerun_on_a_standalone_cluster(tmp_path, standalone_master):
    """Master + 2 workers from pyspark's scripts: tasks on two executors share the store across the kill.

    The same job in local mode (``--master local[2]``) is what ``python jobs/check_pay_once.py --only 2``
    kills and reruns on the OVERRULING replay; in the suite the cluster run stands for both: its driver
    dies with the kill while executors on their own JVMs are stopped by their workers.
    """
    check_kill_and_rerun(kill_and_rerun(tmp_path, standalone_master, rows=600, timeout=600))
