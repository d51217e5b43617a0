"""Account rate limits: the catalogue fields, the client's pacing, the stand-in server's enforcement."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlparse

import pytest

from smart_spark.catalogue import CatalogueError, ModelCatalogue, ModelSpec
from smart_spark.llm import LLMClient
from smart_spark.llm.ratelimit import RateLimiter, parse_duration
from smart_spark.testing import FaultConfig, SimulatedBackend, SimulatedModel, StandInServer
from smart_spark.testing.rate_limits import AccountLimits, format_duration

MODEL = "ref"
BACKEND = SimulatedBackend(["Yes", "No"], {MODEL: SimulatedModel(1.0)}, reference=MODEL)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _catalogue(base_url: str, **limits) -> ModelCatalogue:
    return ModelCatalogue((ModelSpec(MODEL, 1e-6, 2e-6, base_url=base_url, max_concurrency=16, **limits),))


# ------------------------------------------------------------------ catalogue
@pytest.mark.parametrize("field, value", [("rpm", 0), ("rpm", -10), ("tpm", 0), ("tpm", -1.5), ("rpm", True)])
def test_non_positive_limits_are_refused_naming_model_and_field(field, value):
    with pytest.raises(CatalogueError, match=rf"model 'm': {field} must be a number > 0"):
        ModelSpec.from_dict({"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1, field: value})


@pytest.mark.parametrize("discount", [0, -0.5, 1.01])
def test_batch_discount_outside_zero_one_is_refused(discount):
    with pytest.raises(CatalogueError, match="model 'm': batch_discount must be in"):
        ModelSpec.from_dict({"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 1, "batch_discount": discount})


def test_limits_round_trip_through_yaml():
    spec = ModelSpec.from_dict(
        {"name": "m", "input_price_per_1m": 1, "output_price_per_1m": 2, "rpm": 500, "tpm": 2e5, "batch_discount": 0.5}
    )
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.batch_cost(1000, 10) == pytest.approx(spec.cost(1000, 10) / 2)


# -------------------------------------------------------------- the limiter
def test_limiter_paces_to_its_share_of_the_account():
    clock = FakeClock()
    limiter = RateLimiter(600, None, share=0.5, burst_s=0.1, clock=clock)  # 5 requests/s for this task
    waits = [limiter.reserve() for _ in range(11)]
    assert waits[0] == 0.0  # the one-request bucket
    assert waits[1:] == pytest.approx([0.2 * k for k in range(1, 11)])


def test_limiter_paces_tokens_and_waits_for_the_scarcer_bucket():
    clock = FakeClock()
    limiter = RateLimiter(6000, 600, clock=clock)  # 10 tokens/s, 100 requests/s
    assert limiter.reserve(tokens=1) == 0.0
    assert limiter.reserve(tokens=20) == pytest.approx(2.0)


def test_provider_headers_tighten_the_limiter():
    clock = FakeClock()
    limiter = RateLimiter(6000, None, clock=clock)
    limiter.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "5"})
    assert limiter.rpm == 60
    limiter.observe({"x-ratelimit-limit-requests": "600"})  # never loosened above the declared limit
    assert limiter.rpm == 60
    limiter.reserve()
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"})
    assert limiter.provider_holds == 1
    assert limiter.reserve() == pytest.approx(1.0)  # pacing already waits longer than the hold: they do not add up
    limiter.hold(3.0)
    assert limiter.reserve() == pytest.approx(3.0)
    assert limiter.reserve() == pytest.approx(4.0)  # paced behind it


def test_retry_after_hold_applies_to_every_call_once_a_limit_is_known():
    clock = FakeClock()
    unknown = RateLimiter(None, None, clock=clock)
    unknown.hold(1.5)  # nothing to pace the queued calls by: the refused call backs off alone
    assert unknown.reserve() == 0.0 and unknown.provider_holds == 1
    unknown.observe({"x-ratelimit-limit-requests": "6000"})  # learned: now holds are shared
    assert unknown.rpm == 6000
    unknown.hold(1.5)
    assert unknown.reserve() == pytest.approx(1.5)
    clock.now += 2
    assert unknown.reserve() == 0.0


@pytest.mark.parametrize(
    "text, seconds", [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("0.5", 0.5), ("soon", None)]
)
def test_reset_durations_parse_like_openai_sends_them(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)
    if seconds is not None and seconds > 0:
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-2)


# ------------------------------------------------------------ the server side
def _post(server: StandInServer, prompt: str):
    url = urlparse(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4})
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_server_refuses_above_rpm_with_openai_headers():
    with StandInServer(BACKEND, rpm=120, rate_window_s=1.0) as server:  # 2 requests per 1 s window
        replies = [_post(server, f"q{i}") for i in range(3)]
        assert [status for status, _, _ in replies] == [200, 200, 429]
        for _, headers, _ in replies:
            assert headers["x-ratelimit-limit-requests"] == "120"
            assert {"x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"} <= set(headers)
        status, headers, body = replies[2]
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert 0 < float(headers["retry-after"]) <= 0.5 + 1e-6
        assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
        assert server.rate_limited() == {MODEL: 1}
        assert server.counters()[MODEL]["requests"] == 3 and server.counters()[MODEL]["answered"] == 2


def test_server_counts_tokens_like_openai():
    clock = FakeClock()
    limits = AccountLimits(None, 600, window_s=1.0, clock=clock)  # 10 tokens per window
    assert limits.admit(MODEL, 8)[0] is None
    wait, headers = limits.admit(MODEL, 8)
    assert wait == pytest.approx(0.6) and headers["x-ratelimit-remaining-tokens"] == "2"
    with pytest.raises(ValueError, match="rpm must be > 0"):
        AccountLimits(0, None)


# --------------------------------------------------- clients against the server
def test_several_paced_clients_stay_under_the_servers_limit():
    """Three clients (three tasks at once), each at a third of 1,800 rpm: the server refuses
    (almost) nothing, and without the declared limit the same load is refused often."""
    rpm, tasks, per_task = 1800, 3, 30  # 30 requests/s for the account; 90 requests in all
    with StandInServer(BACKEND, rpm=rpm, rate_window_s=1.0) as server:

        def run(catalogue: ModelCatalogue, share: float) -> tuple[float, list]:
            results: list = []
            lock = threading.Lock()

            def task(k: int) -> None:
                with LLMClient(catalogue, ["Yes", "No"], rate_share=share, concurrency=16) as client:
                    out = client.complete_batch(MODEL, [f"task {k} item {i}" for i in range(per_task)])
                with lock:
                    results.extend(out)

            threads = [threading.Thread(target=task, args=(k,)) for k in range(tasks)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return time.perf_counter() - started, results

        time.sleep(1.1)  # full server buckets
        elapsed, results = run(_catalogue(server.base_url, rpm=rpm), 1 / tasks)
        refused = sum(server.rate_limited().values())
        assert all(r.ok for r in results) and len(results) == tasks * per_task
        assert refused <= 2
        # 90 requests at 30/s, with the server's 1 s window as the only burst: at least 2 s.
        assert elapsed >= (tasks * per_task - rpm / 60) / (rpm / 60) * 0.95

        server.reset_counters()
        time.sleep(1.1)
        run(_catalogue(server.base_url), 1.0)  # each client thinks it has the whole account
        assert sum(server.rate_limited().values()) > 10 * max(refused, 1)


def test_retry_after_from_the_provider_slows_every_call():
    """The account allows 60 rpm but the catalogue declares none: the first 429's Retry-After
    holds the whole model, the limit header is adopted, and the rest is paced, not a storm."""
    with StandInServer(BACKEND, rpm=60, rate_window_s=1.0) as server:
        with LLMClient(_catalogue(server.base_url), ["Yes", "No"], concurrency=4, backoff_max=5.0) as client:
            started = time.perf_counter()
            results = client.complete_batch(MODEL, [f"item {i}" for i in range(4)])
            elapsed = time.perf_counter() - started
            limiter = client.limiter(MODEL)
    assert all(r.ok for r in results)
    assert limiter.rpm == 60 and limiter.provider_holds >= 1
    assert elapsed >= 2.9  # one request per second after the first
    assert sum(server.rate_limited().values()) <= 4  # the first concurrent wave only


def test_an_answered_calls_headers_teach_the_client_the_account_limit():
    """No 429 needed: the x-ratelimit-* headers of a 200 name the account's limit, and the client adopts it."""
    with StandInServer(BACKEND, rpm=600) as server:
        with LLMClient(_catalogue(server.base_url), ["Yes", "No"]) as client:
            assert client.complete_batch(MODEL, ["one item"])[0].ok
            assert client.limiter(MODEL).rpm == 600 and server.rate_limited() == {}


def test_injected_retry_after_holds_the_shared_limiter():
    faults = FaultConfig(rate_429=0.5, retry_after_s=0.3)
    with StandInServer(BACKEND, faults=faults, seed=3) as server:
        with LLMClient(_catalogue(server.base_url, rpm=60_000), ["Yes", "No"], concurrency=8) as client:
            started = time.perf_counter()
            results = client.complete_batch(MODEL, [f"item {i}" for i in range(8)])
            elapsed = time.perf_counter() - started
            holds = client.limiter(MODEL).provider_holds
    assert all(r.ok for r in results)
    assert holds >= 1 and elapsed >= 0.3


def test_spark_tasks_pace_to_the_share_the_driver_sets(spark):
    """The driver sets 1 / tasks at once as a job property; a client built inside each task reads it."""
    from smart_spark.llm.ratelimit import job_rate_share, set_spark_rate_share, tasks_at_once

    catalogue_yaml = _catalogue("http://127.0.0.1:9/v1", rpm=600).to_yaml()
    df = spark.range(0, 4, numPartitions=2)

    def shares(frames):
        import pandas as pd

        from smart_spark.catalogue import load_catalogue
        from smart_spark.llm import LLMClient
        import yaml

        catalogue = load_catalogue(yaml.safe_load(catalogue_yaml)["models"])
        with LLMClient(catalogue, ["Yes", "No"]) as client:
            share = client.limiter(MODEL).share
        for frame in frames:
            yield pd.DataFrame({"share": [share] * len(frame)})

    sc = spark.sparkContext
    n = tasks_at_once(sc, df.rdd.getNumPartitions())
    assert n == 2
    assert job_rate_share(df) == 0.5  # what the operator ships to its tasks in the ApplySpec
    assert set_spark_rate_share(sc, n) == 0.5
    try:
        assert {row.share for row in df.mapInPandas(shares, "share double").collect()} == {0.5}
    finally:
        sc.setLocalProperty("smart_spark.rateShare", None)
    assert {row.share for row in df.mapInPandas(shares, "share double").collect()} == {1.0}


def test_server_cli_refuses_non_positive_limits_and_passes_them_on(capsys):
    from smart_spark.testing.server import _parse_args

    for flag in ("--rpm", "--tpm"):
        with pytest.raises(SystemExit):
            _parse_args(["--simulate", "x.yaml", flag, "0"])
        assert "must be a number > 0" in capsys.readouterr().err
    args = _parse_args(["--simulate", "x.yaml", "--rpm", "6000", "--tpm", "1e6", "--batch-fail-every", "3"])
    assert (args.rpm, args.tpm, args.rate_window, args.batch_fail_every) == (6000, 1e6, 1.0, 3)


def test_declared_tpm_paces_by_the_tokens_the_server_counts():
    """Each call counts its prompt plus max_tokens (16) against 1,200 tokens/min = 20/s: the client
    sends about one call per second and the server refuses none (its 1 s window holds one call)."""
    with StandInServer(BACKEND, tpm=1200, rate_window_s=1.0) as server:
        catalogue = _catalogue(server.base_url, tpm=1200)
        with LLMClient(catalogue, ["Yes", "No"], concurrency=4) as client:
            started = time.perf_counter()
            results = client.complete_batch(MODEL, [f"q{i}" for i in range(4)])
            elapsed = time.perf_counter() - started
    assert all(r.ok for r in results) and server.rate_limited() == {}
    assert elapsed >= 2.5  # 4 calls of 17 tokens at 20 tokens/s, after a small initial bucket


class _ConnectConf:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


def _connect_frame(conf):
    """A stand-in for a Spark Connect DataFrame: no SparkContext, only the session's conf."""
    session = type("SparkSession", (), {"conf": _ConnectConf(conf)})()
    frame_class = type("DataFrame", (), {"__module__": "pyspark.sql.connect.dataframe"})
    frame = frame_class()
    frame.sparkSession = session
    return frame


@pytest.mark.parametrize("conf, share", [
    ({"spark.default.parallelism": "8"}, 1 / 8),
    ({"spark.master": "local[4]", "spark.task.cpus": "2"}, 1 / 2),
    ({"spark.executor.instances": "3", "spark.executor.cores": "4"}, 1 / 12),
    ({"spark.smart_spark.tasksAtOnce": "5", "spark.default.parallelism": "8"}, 1 / 5),
    ({}, 1.0),
])
def test_the_share_under_spark_connect_comes_from_the_sessions_conf(conf, share):
    from smart_spark.llm.ratelimit import job_rate_share

    assert job_rate_share(_connect_frame(conf)) == pytest.approx(share)


def test_a_bad_tasks_at_once_conf_is_a_configuration_error():
    from smart_spark.errors import ConfigurationError
    from smart_spark.llm.ratelimit import job_rate_share

    with pytest.raises(ConfigurationError, match="spark.smart_spark.tasksAtOnce"):
        job_rate_share(_connect_frame({"spark.smart_spark.tasksAtOnce": "0"}))


def test_the_apply_phase_client_paces_to_the_shipped_share_and_is_not_reused_across_shares():
    from smart_spark.spark.apply import ApplySpec, client_for
    from smart_spark.spark.params import catalogue_yaml

    catalogue = _catalogue("http://127.0.0.1:9/v1", rpm=600)
    base = dict(plan_json="{}", catalogue_yaml=catalogue_yaml(catalogue), labels=("Yes", "No"), prompt_template="{text}")
    half, quarter = ApplySpec(**base, rate_share=0.5), ApplySpec(**base, rate_share=0.25)
    assert half.client_key() != quarter.client_key()
    assert client_for(half).limiter(MODEL).share == 0.5
    assert client_for(quarter).limiter(MODEL).share == 0.25
    assert client_for(half).limiter(MODEL).rpm == 600  # the declared limit reaches the executors' catalogue
