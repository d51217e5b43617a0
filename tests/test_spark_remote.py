"""The same end-to-end run through Spark Connect and on a standalone cluster.

Each runs ``tests/remote_e2e.py`` in a subprocess (one classic SparkSession per
process: the shared local[2] fixture stays untouched) and checks its verdict.
Marked ``slow`` but part of the default run; bounded by a timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("remote_e2e.py")


def run_remote(mode: str, timeout: float, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), mode, *extra], capture_output=True, text=True, timeout=timeout,
        cwd=str(SCRIPT.parent.parent),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1])


def check_verdict(result: dict) -> None:
    assert result["rows_out"] == result["rows_in"]
    assert result["ids_unique"]
    assert all(v == 0 for v in result["paid_twice"].values()), result["paid_twice"]
    # every gpt-4 call shows up as a gpt-4 row: profiled rows were never called again
    assert result["reference_requests"] == result["reference_rows"]
    assert result["spend_column"] >= result["profile_spent"] > 0
    assert result["null_predictions"] == 0
    assert result["realised_agreement"] >= result["target"]
    assert abs(sum(result["fractions"].values()) - 1) < 1e-9


@pytest.mark.slow
def test_spark_connect_end_to_end():
    result = run_remote("connect", timeout=240)
    assert result["is_connect"]
    check_verdict(result)


@pytest.mark.slow
def test_standalone_cluster_end_to_end(standalone_master):
    result = run_remote("standalone", 300, standalone_master)
    assert not result["is_connect"]
    assert result["executors"] == 2
    check_verdict(result)
