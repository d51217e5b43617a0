"""Apply-phase throughput of SmartLLMClassifier on local[2] against the stand-in server.

``--rows`` generated rows (``spark.range``: no per-row state on the driver) in
2 partitions, so two tasks run at once; every simulated model answers after
``--latency`` seconds; ``--concurrency`` requests in flight per task and
model. method="single", so the plan sends the remaining rows to one model:
the ideal is tasks x concurrency / latency (320 rows/s by default). With
``--rpm`` / ``--tpm`` the stand-in server enforces that account limit (429
with Retry-After and x-ratelimit headers, as OpenAI does), the catalogue
declares it, each task paces itself to half of it, and the ideal is the limit.

``--mode batch`` sends the apply phase through the Batch API (stand-in
``/v1/batches``, completing after ``--batch-delay`` seconds; catalogue
``batch_discount: 0.5``), runs the same rows on-line too (fresh answer
store, same seed), and compares the apply phases' spend and answers.

Ends with one machine-readable line::

    RESULT rows=... seconds=... rows_per_s=... ideal_rows_per_s=... ratio=... http_429_share=...
           lost_rows=... peak_driver_rss_mb=... [apply_spend_ratio_vs_online=... answers_equal_online=...]

``seconds`` and ``rows_per_s`` are the apply phase's (rows called / wall
time); ``total_seconds`` includes profiling; ``first_answer_s`` is the time
from the apply phase's start to its first answer (task and Python worker
start-up: compare with ``--no-warmup``); ``cpu_ms_per_row`` is the CPU the
apply phase used per row called (driver, in-process stand-in server, JVM and
Python workers), which unlike the rates does not depend on what else loads the
machine; ``peak_driver_rss_mb`` is the driver's Python process plus its JVM
(local mode: the executors' JVM side too), sampled every 0.2 s. ``--cpu-table``
also prints the apply phase's CPU seconds per process (driver, stand-in server
thread, JVM, each Python worker and its busiest threads): where to cut.

    python -m jobs.bench_spark --rows 100000
    python -m jobs.bench_spark --rows 30000 --rpm 6000
    python -m jobs.bench_spark --rows 5000 --mode batch
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIMULATION = ROOT / "conf" / "simulated_models.yaml"
TASKS = 2
TEXT_FORMAT = "bench item %07d: is this clause overruling?"


class PeakRss:
    """Peak resident memory of this process plus its JVM children (sampled on a thread).

    The JVM is looked up among the children once (listing children scans all of
    /proc: ~8 ms, which every 0.2 s would take 4% of a core from the run it
    measures) and again only when it has exited.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._jvms: list = []
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _find_jvms(self) -> list:
        found = []
        for child in self._process.children(recursive=False):
            try:
                if "java" in child.name():
                    found.append(child)
            except Exception:  # the child exited between listing and reading
                pass
        return found

    def _sample(self) -> int:
        total = self._process.memory_info().rss
        if not self._jvms:
            self._jvms = self._find_jvms()
        for jvm in list(self._jvms):
            try:
                total += jvm.memory_info().rss
            except Exception:  # exited: look again next time
                self._jvms.remove(jvm)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self._interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())


class Progress:
    """Prints the apply phase's rows answered so far and its rate (long runs: how far did it get).

    Also notes when the first answer came (``first_answer_s``: the tasks' start-up, polled every 50 ms)."""

    POLL_S = 0.05

    def __init__(self, server, started: float, every_s: float) -> None:
        self._server, self._started, self._every = server, started, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-progress", daemon=True)
        self.first_answer_s: float | None = None

    def _run(self) -> None:
        while self.first_answer_s is None and not self._stop.wait(self.POLL_S):
            if answered(self._server):
                self.first_answer_s = time.monotonic() - self._started
        while self._every > 0 and not self._stop.wait(self._every):
            answered_now = answered(self._server)
            elapsed = time.monotonic() - self._started
            print(f"PROGRESS apply {elapsed:.0f}s: {answered_now} rows answered, {answered_now / elapsed:.1f} rows/s", flush=True)

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()


class CpuBreakdown:
    """CPU seconds of each process (and thread) under this one, sampled on a thread during one phase.

    CPU seconds, unlike rates, hardly move with what else loads the machine, so
    this says which process to make cheaper: the driver (this process without
    the stand-in server's thread), the in-process stand-in server (its thread),
    the JVM, and each Python worker with its busiest threads (``main``: the
    worker's own thread, which reads and writes Arrow; the busiest other one is
    normally the LLM client's event loop). Threads that end during the phase
    (a task's piece threads) keep the CPU last sampled; processes keep theirs
    in full (the kernel adds a finished thread's time to its process).
    """

    RESCAN_EVERY = 4

    def __init__(self, server_thread_id: int | None, interval_s: float = 0.5) -> None:
        import psutil

        self._me = psutil.Process()
        self._server_tid = server_thread_id
        self._interval = interval_s
        self._stop = threading.Event()
        self._first: dict[tuple, float] = {}
        self._last: dict[tuple, float] = {}
        self._names: dict[int, str] = {}
        self._samples = 0
        self._processes: list = []
        self._thread = threading.Thread(target=self._run, name="cpu-breakdown", daemon=True)

    def _sample(self) -> dict[tuple, float]:
        import psutil

        seen: dict[tuple, float] = {}
        self._samples += 1
        if self._samples % self.RESCAN_EVERY == 1:  # listing children scans all of /proc (~15 ms): not every time
            self._processes = [self._me, *self._me.children(recursive=True)]
        for process in self._processes:
            try:
                times = process.cpu_times()
                seen[("proc", process.pid)] = times.user + times.system
                if process.pid not in self._names:
                    self._names[process.pid] = "java" if "java" in process.name() else "python"
                if process.pid == self._me.pid or self._names[process.pid] == "python":
                    for thread in process.threads():
                        seen[("thread", process.pid, thread.id)] = thread.user_time + thread.system_time
            except psutil.Error:  # exited meanwhile
                pass
        return seen

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._record(self._sample())

    def _record(self, seen: dict[tuple, float]) -> None:
        for key, value in seen.items():
            self._first.setdefault(key, 0.0)  # born during the phase: all its CPU is the phase's
            self._last[key] = value

    def __enter__(self) -> "CpuBreakdown":
        self._first = dict(self._sample())
        self._last = dict(self._first)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._samples = 0  # the last sample lists the processes again
        self._record(self._sample())

    def used(self, key: tuple) -> float:
        return self._last.get(key, 0.0) - self._first.get(key, 0.0)

    def table(self, answers: int) -> list[str]:
        """One line per process role: CPU seconds and ms per answer."""
        per = lambda seconds: f"{seconds:7.2f} s {seconds / max(answers, 1) * 1000:6.3f} ms/answer"  # noqa: E731
        me = self._me.pid
        server = self.used(("thread", me, self._server_tid)) if self._server_tid else 0.0
        lines = [f"CPU driver (without the stand-in)  {per(self.used(('proc', me)) - server)}",
                 f"CPU stand-in server thread         {per(server)}"]
        workers = 0.0
        for key in sorted(k for k in self._last if k[0] == "proc" and k[1] != me):
            pid = key[1]
            used = self.used(key)
            if self._names.get(pid) == "java":
                lines.append(f"CPU JVM (pid {pid})                {per(used)}")
                continue
            if used < 0.05:
                continue
            workers += used
            threads = sorted(((self.used(k), k[2]) for k in self._last if k[0] == "thread" and k[1] == pid), reverse=True)
            detail = ", ".join(f"{'main' if tid == pid else tid} {seconds:.2f}" for seconds, tid in threads[:4] if seconds >= 0.05)
            lines.append(f"CPU Python worker (pid {pid})      {per(used)}  threads: {detail}")
        lines.append(f"CPU Python workers, all            {per(workers)}")
        return lines


def answered(server) -> int:
    """Calls the stand-in server has answered since its counters were last reset, over all models."""
    return sum(c["answered"] for c in server.counters().values())


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process, its JVM and the Python workers under it."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # exited meanwhile
            pass
    return total


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rpm", type=float, default=None, help="account requests/minute (server and catalogue)")
    parser.add_argument("--tpm", type=float, default=None, help="account tokens/minute (server and catalogue)")
    parser.add_argument("--mode", choices=("online", "batch"), default="online")
    parser.add_argument("--batch-delay", type=float, default=2.0, help="stand-in batch completion delay, seconds")
    parser.add_argument("--no-warmup", action="store_true",
                        help="switch off warming the Python workers while profiling (spark.smart_spark.warmExecutors)")
    parser.add_argument("--baseline-rows", type=int, default=0, help="also time a row-by-row UDF on this many rows")
    parser.add_argument("--progress-every", type=float, default=0.0,
                        help="print rows answered so far and the rate every this many seconds (0: never)")
    parser.add_argument("--cpu-table", action="store_true",
                        help="print the apply phase's CPU per process (driver, stand-in, JVM, each Python worker)")
    parser.add_argument("--min-ratio", type=float, default=0.0, help="exit 1 when the ratio is below this")
    args = parser.parse_args(argv)
    for name in ("rows", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    for name in ("rpm", "tpm"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be > 0 per minute, got {value:g}")
    return args


def _simulation(latency: float) -> dict:
    """The simulated task of ``conf/simulated_models.yaml``, every model answering after ``latency`` seconds."""
    import yaml

    section = yaml.safe_load(SIMULATION.read_text())["simulation"]
    for model in section["models"].values():
        model["latency_s"] = latency
    return section


def main(argv=None) -> int:
    args = _parse(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sys.path[:0] = [str(ROOT)]

    from pyspark.sql import Observation, SparkSession
    from pyspark.sql import functions as F

    from smart_spark import ModelCatalogue, SmartLLMClassifier
    from smart_spark.llm.ratelimit import job_rate_share
    from smart_spark.spark.warmup import WARMUP_CONF
    from smart_spark.testing import SimulatedBackend, StandInServer, with_base_url
    from smart_spark.testing.batch_api import BatchConfig

    simulation = _simulation(args.latency)
    spark = (SparkSession.builder.master(f"local[{TASKS}]").config("spark.sql.shuffle.partitions", str(TASKS))
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config(WARMUP_CONF, str(not args.no_warmup).lower()).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    ideal = TASKS * args.concurrency / args.latency
    if args.rpm:
        ideal = min(ideal, args.rpm / 60.0)
    if args.tpm:
        ideal = min(ideal, args.tpm / 60.0 / _tokens_per_request(SmartLLMClassifier(), simulation["labels"]))

    backend = SimulatedBackend.from_dict(simulation)
    batch = BatchConfig(completion_delay_s=args.batch_delay)
    with PeakRss() as memory, StandInServer(backend, rpm=args.rpm, tpm=args.tpm, batch=batch,
                                                 count_prompts=False) as server:
        catalogue = with_base_url(ModelCatalogue.from_yaml(SIMULATION), server.base_url)
        catalogue = type(catalogue)(tuple(
            dataclasses.replace(spec, rpm=args.rpm, tpm=args.tpm, batch_discount=0.5) for spec in catalogue
        ))
        df = spark.range(0, args.rows, numPartitions=TASKS).select(
            F.col("id"), F.format_string(TEXT_FORMAT, "id").alias("text")
        )
        # What the operator ships to each apply task: its share of the account limit (1 / tasks running at once).
        share = job_rate_share(df)

        def run(mode: str, answers: str):
            clf = SmartLLMClassifier(
                idCol="id", labels=simulation["labels"], models=catalogue, referenceModel="gpt-4",
                accuracyTarget=0.85, method="single", concurrency=args.concurrency, mlflowLogging="never",
                batchSize=1024, executionMode=mode, answersPath=answers,
            )
            server.reset_counters()
            started = time.monotonic()
            out = df.transform(clf)
            profiling_s = time.monotonic() - started
            if args.progress_every > 0:
                print(f"PROGRESS profiling ({mode}) done in {profiling_s:.0f}s", flush=True)
            # Counted while the rows are written (no second pass, which would call the models again);
            # the rows themselves are kept only when they must be compared with another run.
            observation = Observation("bench")
            result = out.select("id", "prediction", "prediction_cost", "prediction_error")
            if args.mode == "batch":
                result = result.cache()
            observed = result.observe(
                observation,
                F.count(F.lit(1)).alias("rows"),
                F.sum(F.when(F.col("prediction").isNull() & F.col("prediction_error").isNull(), 1).otherwise(0))
                .alias("silent"),
                F.sum(F.when(F.col("prediction_error").isNotNull(), 1).otherwise(0)).alias("errors"),
                F.sum("prediction_cost").alias("spend"),
            )
            server.reset_counters()
            started, cpu_started = time.monotonic(), tree_cpu_seconds()
            cpu = CpuBreakdown(server.thread_id) if args.cpu_table else contextlib.nullcontext()
            with Progress(server, started, args.progress_every) as progress, cpu:
                observed.write.format("noop").mode("overwrite").save()
            apply_s = time.monotonic() - started
            run.cpu_s = tree_cpu_seconds() - cpu_started
            if args.cpu_table:
                print("\n".join(f"{line}  ({mode} apply)" for line in cpu.table(answered(server))), flush=True)
            run.first_answer_s = progress.first_answer_s
            return clf, result, observation.get, profiling_s, apply_s, server.counters()

        with tempfile.TemporaryDirectory(prefix="bench_spark_") as scratch:
            clf, result, summary, profiling_s, apply_s, counters = run(args.mode, os.path.join(scratch, args.mode))
            requests = sum(c["requests"] for c in counters.values())
            called = sum(c["answered"] for c in counters.values())
            refused = sum(server.rate_limited().values())
            lost = args.rows - summary["rows"] + summary["silent"]
            rate = called / apply_s if apply_s > 0 else 0.0
            apply_spend = float(summary["spend"] or 0.0)  # the cost column: profiled rows are reused at 0
            print(f"SMART profiling: {clf.lastProfile.n_profiled} items, {profiling_s:.1f}s, plan {clf.lastPlan.fractions}")
            print(f"SMART apply ({args.mode}): {called} rows called in {apply_s:.1f}s = {rate:.0f} rows/s; ideal "
                  f"{ideal:.0f} rows/s; ratio {rate / ideal:.3f}; {requests} HTTP requests, {refused} refused (429); "
                  f"rate share per task {share:g}; {summary['errors']} rows with an error")
            fields = dict(
                rows=args.rows, seconds=f"{apply_s:.2f}", rows_per_s=f"{rate:.1f}", ideal_rows_per_s=f"{ideal:.1f}",
                ratio=f"{rate / ideal:.3f}", http_429_share=f"{refused / requests if requests else 0.0:.4f}",
                lost_rows=lost, peak_driver_rss_mb="", total_seconds=f"{profiling_s + apply_s:.2f}",
                profiling_seconds=f"{profiling_s:.2f}", error_rows=summary["errors"],
                cpu_ms_per_row=f"{run.cpu_s / max(called, 1) * 1000:.2f}",
                first_answer_s=f"{run.first_answer_s:.2f}" if run.first_answer_s is not None else "",
            )
            if args.mode == "batch":
                _, online, online_summary, _, _, _ = run("online", os.path.join(scratch, "online"))
                online_apply = float(online_summary["spend"] or 0.0)
                joined = result.alias("b").join(online.alias("o"), "id")
                equal = joined.filter(F.col("b.prediction").eqNullSafe(F.col("o.prediction"))).count()
                fields["apply_spend_ratio_vs_online"] = f"{apply_spend / online_apply if online_apply else float('nan'):.3f}"
                fields["answers_equal_online"] = f"{equal / args.rows:.4f}"
                print(f"batch apply spend ${apply_spend:.4f} vs on-line ${online_apply:.4f}; "
                      f"{equal} of {args.rows} answers equal")

            if args.baseline_rows:
                _baseline(spark, df, catalogue, simulation["labels"], args, rate)
    spark.stop()
    fields["peak_driver_rss_mb"] = f"{memory.peak_bytes / 2**20:.0f}"
    print("RESULT " + " ".join(f"{key}={value}" for key, value in fields.items()), flush=True)
    return 0 if rate / ideal >= args.min_ratio else 1


def _tokens_per_request(clf, labels) -> int:
    """Tokens one apply call counts against ``tpm``, exactly as the stand-in server counts them."""
    from smart_spark.spark.apply import render_prompt
    from smart_spark.testing.rate_limits import request_tokens

    prompt = render_prompt(clf.getPromptTemplate(), TEXT_FORMAT % 0, labels)
    messages = [{"role": "system", "content": clf.getSystemPrompt()}] if clf.getSystemPrompt() else []
    messages.append({"role": "user", "content": prompt})
    return request_tokens({"messages": messages, "max_tokens": clf.getMaxTokens()})


def _baseline(spark, df, catalogue, labels, args, rate: float) -> None:
    """A plain row-at-a-time UDF, one blocking call per row, for comparison."""
    from pyspark.sql import functions as F

    spec_yaml = catalogue.to_yaml()

    def one_call(text):
        from smart_spark.catalogue import ModelCatalogue
        from smart_spark.llm.client import LLMClient
        import yaml

        global _BASELINE_CLIENT
        try:
            client = _BASELINE_CLIENT
        except NameError:
            client = _BASELINE_CLIENT = LLMClient(ModelCatalogue.from_dicts(yaml.safe_load(spec_yaml)["models"]), labels)
        return client.complete_batch("gpt-3.5-turbo", [text])[0].label

    small = df.limit(args.baseline_rows).repartition(TASKS).localCheckpoint()
    started = time.monotonic()
    small.select(F.udf(one_call, "string")("text").alias("p")).write.format("noop").mode("overwrite").save()
    base_rate = args.baseline_rows / (time.monotonic() - started)
    print(f"row-by-row UDF baseline: {base_rate:.1f} rows/s (ideal {TASKS / args.latency:.0f}); "
          f"SMART apply is {rate / base_rate:.0f}x faster")


if __name__ == "__main__":
    sys.exit(main())
