"""Shared fixtures: ONE local[2] SparkSession per test run, stand-in LLM servers, catalogues.

The session uses this interpreter for pandas UDF workers (PYSPARK_PYTHON) and
puts the repository root on their PYTHONPATH, so executors import the working
tree's ``smart_spark``. A fake API key lives in the environment (before the JVM
starts, so Python workers inherit it) for the no-secret-leaks tests.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
OVERRULING_CSV = SHARED_DATA / "overruling_12llm.csv"

FAKE_KEY_ENV = "SMART_SPARK_TEST_API_KEY"
FAKE_KEY = "sk-fake-SMARTSPARK-0123456789abcdef"

os.environ[FAKE_KEY_ENV] = FAKE_KEY
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
_paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(_paths))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIM_LABELS = ["Yes", "No"]
#: Agreement rates of the OVERRULING models with gpt-4 (shared/data/README.md).
SIM_MODELS = {
    "gpt-4": dict(agreement=1.0, odd_answer_rate=0.002),
    "text-davinci-002": dict(agreement=0.969),
    "gpt-3.5-turbo": dict(agreement=0.942, odd_answer_rate=0.01),
    "text-curie-001": dict(agreement=0.726),
    "gptj_6B": dict(agreement=0.473),
}
SIM_PRICES = {  # USD per 1M tokens (input, output)
    "gpt-4": (30.0, 60.0),
    "text-davinci-002": (20.0, 20.0),
    "gpt-3.5-turbo": (2.0, 2.0),
    "text-curie-001": (2.0, 2.0),
    "gptj_6B": (0.2, 5.0),
}


def make_spark_session():
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName("smart_spark-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.execution.pyspark.udf.faulthandler.enabled", "true")
        .getOrCreate()
    )


@pytest.fixture(scope="session")
def spark():
    session = make_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def standalone_master(tmp_path_factory):
    """One standalone cluster (master + two 1-core workers from pyspark's scripts) for every test that needs
    one: starting it costs half a minute, so the end-to-end and the kill-and-rerun tests share it."""
    from remote_e2e import standalone_cluster

    workdir = tmp_path_factory.mktemp("standalone")
    previous = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # the drivers the tests start must bind where the master is
    try:
        with standalone_cluster(workdir) as master:
            yield master
    finally:
        if previous is None:
            os.environ.pop("SPARK_LOCAL_IP", None)
        else:
            os.environ["SPARK_LOCAL_IP"] = previous


def simulated_backend(latency_s: float = 0.0, seed: int = 0):
    from smart_spark.testing import SimulatedBackend, SimulatedModel

    return SimulatedBackend(
        labels=SIM_LABELS,
        models={m: SimulatedModel(latency_s=latency_s, **kw) for m, kw in SIM_MODELS.items()},
        reference="gpt-4",
        correlation=0.5,
        seed=seed,
    )


def simulated_catalogue(base_url: str, *, api_key_env: str | None = FAKE_KEY_ENV, models=None):
    from smart_spark import ModelCatalogue, ModelSpec

    names = models or list(SIM_MODELS)
    return ModelCatalogue(
        tuple(
            ModelSpec(
                name=m,
                input_price_per_token=SIM_PRICES[m][0] / 1e6,
                output_price_per_token=SIM_PRICES[m][1] / 1e6,
                base_url=base_url,
                api_key_env=api_key_env,
                max_concurrency=16,
            )
            for m in names
        )
    )


@pytest.fixture(scope="session")
def sim_server():
    from smart_spark.testing import StandInServer

    with StandInServer(simulated_backend(latency_s=0.0)) as server:
        yield server


@pytest.fixture()
def sim_catalogue(sim_server):
    sim_server.reset_counters()
    return simulated_catalogue(sim_server.base_url)


def overruling_catalogue(base_url: str):
    from smart_spark import ModelCatalogue

    catalogue = ModelCatalogue.from_yaml(ROOT / "conf" / "overruling_catalogue.yaml")
    return ModelCatalogue(tuple(dataclasses.replace(s, base_url=base_url) for s in catalogue))


@pytest.fixture(scope="session")
def overruling_server():
    if not OVERRULING_CSV.exists():
        pytest.skip(f"shared data not available: {OVERRULING_CSV} (run inside the project workspace)")
    from smart_spark.testing import ReplayBackend, StandInServer

    backend = ReplayBackend.from_csv(OVERRULING_CSV, ROOT / "conf" / "overruling_catalogue.yaml")
    with StandInServer(backend) as server:
        yield server


@pytest.fixture(scope="session")
def overruling_rows() -> list[dict[str, str]]:
    """The OVERRULING recording as raw CSV rows (answers exactly as recorded)."""
    if not OVERRULING_CSV.exists():
        pytest.skip(f"shared data not available: {OVERRULING_CSV} (the recording lives outside the repo)")
    import csv

    with open(OVERRULING_CSV, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def overruling_frame():
    if not OVERRULING_CSV.exists():
        pytest.skip(f"shared data not available: {OVERRULING_CSV}")
    import pandas as pd

    return pd.read_csv(OVERRULING_CSV)


def text_frame(spark, n: int, *, partitions: int = 2, prefix: str = "item", with_id: bool = True):
    """``n`` distinct texts (sorted, so "the first rows" would be a biased sample)."""
    rows = [(i, f"{prefix} {i:05d}: is this clause overruling the precedent?") for i in range(n)]
    df = spark.createDataFrame(rows, "id long, text string").repartition(partitions, "id").sortWithinPartitions("id")
    return df if with_id else df.drop("id")
