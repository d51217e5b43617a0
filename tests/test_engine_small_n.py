"""Small N: a few cells of jobs.bench_small_n (12 OVERRULING-like models); the full grid is the job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs.bench_small_n import overruling_like
from smart_spark.paper.simulation import run_trial

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "overruling_12llm.csv"


@pytest.mark.parametrize("n_items, target, confidence", [(300, 0.90, 0.80), (1000, 0.95, 0.99)])
def test_small_n_costs_no_more_than_the_reference(n_items, target, confidence):
    if not CSV.exists():
        pytest.skip(f"shared data not available: {CSV}")
    dataset = overruling_like(CSV, n_items)
    runs = [run_trial(dataset, target, "mix", confidence, seed, solver="enumerate") for seed in range(4)]
    assert np.mean([r["savings"] for r in runs]) >= 1.0
    # At confidence 0.99 a miss among 4 runs would be a 4 % event; at 0.80 up to 1 run in 5 may miss by the
    # promise itself, so there the rate is measured by jobs.bench_small_n and the guarantee suites, not here.
    if confidence >= 0.99:
        assert all(r["satisfied"] for r in runs)
