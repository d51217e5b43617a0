"""Answer store speed and memory: writing, loading and looking up 100k and 1M answers.

    python -m jobs.bench_store                      # 100k and 1M records
    python -m jobs.bench_store --records 100000     # one size
    python -m jobs.bench_store --mode segments      # object-store layout (immutable segments)

For each size: writes the records through ``AnswerWriter.put`` from
``--writers`` writers (one file each, as Spark tasks would), then, in a fresh
Python process so the peak memory is its own, loads the store cold
(records/s), measures the resident memory the index added per record,
looks up every key in batches of 1,000 (keys/s), and times an incremental
refresh after one more writer appended 1,000 answers. Figures on a shared
machine are noisy (CPU seconds are printed next to wall times); the
per-record memory is stable. Peak RSS includes the benchmark's own list of
keys (about 120 MB at 1M).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smart_spark.store import AnswerStore, StoredAnswer, answer_key

MODELS = ["gpt-4", "gpt-3.5-turbo", "text-davinci-002", "text-curie-001"]
LABELS = ["Yes", "No"]


def _answer(i: int) -> StoredAnswer:
    model = MODELS[i % len(MODELS)]
    label = LABELS[(i * 7919) % 2]
    return StoredAnswer(answer_key(model, f"prompt {i}"), model, label, label, 180 + i % 50, 1, 0.0054 + (i % 13) * 1e-6)


def write(path: str, records: int, writers: int, append: bool) -> float:
    """Seconds to put ``records`` answers through ``writers`` writers (sequentially, one file each)."""
    store = AnswerStore(path, append=append)
    store.check_writable()
    per_writer = -(-records // writers)
    started = time.perf_counter()
    for w in range(writers):
        with store.writer(f"stage1-task{w}-attempt0", flush_every=256) as writer:
            for i in range(w * per_writer, min(records, (w + 1) * per_writer)):
                writer.put(_answer(i))
    return time.perf_counter() - started


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _warm_up() -> None:
    """Load the libraries a store load uses (pyarrow, numpy), so their code is not counted as index memory."""
    with tempfile.TemporaryDirectory() as tmp:
        with AnswerStore(tmp).writer() as writer:
            writer.put(_answer(-1))
        AnswerStore(tmp).refresh()


def load(path: str, records: int, append: bool) -> dict[str, float]:
    """Cold load, memory, lookups and an incremental refresh, measured in this (fresh) process."""
    keys = [_answer(i).key for i in range(records)]
    _warm_up()
    store = AnswerStore(path, append=append)
    rss_before = _rss_kib()
    started, cpu_started = time.perf_counter(), time.process_time()
    loaded = store.refresh()
    load_s, load_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    rss_after = _rss_kib()
    assert loaded == records == len(store.index), (loaded, records, len(store.index))
    started, cpu_started = time.perf_counter(), time.process_time()
    hits = 0
    for at in range(0, records, 1000):
        hits += len(store.lookup(keys[at : at + 1000]))
    lookup_s, lookup_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    assert hits == records
    with AnswerStore(path, append=append).writer("late") as writer:
        for i in range(records, records + 1000):
            writer.put(_answer(i))
    started = time.perf_counter()
    new = store.refresh()
    refresh_s = time.perf_counter() - started
    assert new == 1000
    return {
        "load_s": load_s,
        "load_records_per_s": records / load_s,
        "load_cpu_s": load_cpu_s,
        "lookup_cpu_s": lookup_cpu_s,
        "index_bytes_per_record": (rss_after - rss_before) * 1024 / records,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lookup_keys_per_s": records / lookup_s,
        "refresh_1000_new_s": refresh_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--mode", choices=["append", "segments"], default="append")
    parser.add_argument("--dir", default=None, help="where to write the stores (default: a temp dir, deleted after)")
    parser.add_argument("--load-only", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    append = args.mode == "append"
    if args.load_only:
        print(json.dumps(load(args.load_only, args.records[0], append)))
        return 0
    base = Path(args.dir or tempfile.mkdtemp(prefix="bench_store-"))
    try:
        for records in args.records:
            path = str(base / f"store-{records}")
            write_s = write(path, records, args.writers, append)
            files = list(Path(path, "answers").iterdir())
            size = sum(f.stat().st_size for f in files)
            child = subprocess.run(
                [sys.executable, "-m", "jobs.bench_store", "--load-only", path, "--records", str(records), "--mode", args.mode],
                capture_output=True, text=True, check=True, env={**os.environ},
            )
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            print(
                f"{records:>9,} answers ({args.mode}, {len(files)} files, {size / records:.0f} B/record on disk): "
                f"put {records / write_s:,.0f}/s | cold load {figures['load_s']:.2f} s ({figures['load_cpu_s']:.2f} s CPU) = "
                f"{figures['load_records_per_s']:,.0f} records/s | "
                f"index {figures['index_bytes_per_record']:.0f} B/record, peak RSS {figures['peak_rss_mib']:.0f} MiB | "
                f"lookup {figures['lookup_keys_per_s']:,.0f} keys/s ({records / figures['lookup_cpu_s']:,.0f}/CPU-s) | refresh after 1,000 new {figures['refresh_1000_new_s'] * 1000:.1f} ms",
                flush=True,
            )
            shutil.rmtree(path, ignore_errors=True)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
