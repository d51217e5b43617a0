"""OVERRULING replay (12 real LLMs, recorded answers and prices) through SmartLLMClassifier.

A lean version of ``jobs/bench_overruling.py`` (which runs 10 seeds per target):
two seeds per target keep the suite fast; the benchmark prints the full table.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "jobs"))
bench = pytest.importorskip("bench_overruling")


@pytest.fixture(scope="module")
def replay(spark, overruling_server):
    df, base, reference_cost = bench.setup(spark)
    from smart_spark import ModelCatalogue

    catalogue = ModelCatalogue(tuple(dataclasses.replace(s, base_url=overruling_server.base_url) for s in base))
    return df, catalogue, reference_cost


@pytest.mark.parametrize("target", [0.90, 0.95])
@pytest.mark.parametrize("seed", [0, 1])
def test_overruling_replay(spark, overruling_server, replay, target, seed):
    df, catalogue, reference_cost = replay
    result = bench.run_once(spark, overruling_server, df, catalogue, target, seed)
    assert result["rows"] == 2160
    assert result["paid_twice"] == 0
    assert result["agreement"] >= target, result
    if target == 0.90:
        assert result["spend"] <= reference_cost / 2, result
    assert result["spend"] >= result["profile_spend"] > 0
