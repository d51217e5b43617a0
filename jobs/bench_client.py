"""Benchmark: LLMClient throughput against the stand-in server, vs. one call at a time.

Starts the stand-in server (simulated models, fixed latency) as a separate
process, as a real provider would be: in-process, its threads would compete
for the client's GIL. Then it sends N prompts through
``LLMClient.complete_batch`` at the given concurrency, and the first
``--sequential-n`` of the same prompts one call at a time (what a naive
row-by-row UDF does), and prints both rates and their ratios.

    /work/venv/bin/python jobs/bench_client.py                # 100 ms latency, concurrency 32
    /work/venv/bin/python jobs/bench_client.py --n 3200 --sequential-n 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smart_spark.catalogue import ModelCatalogue, ModelSpec  # noqa: E402
from smart_spark.llm import LLMClient  # noqa: E402

MODEL = "bench-model"


def _start_server(latency: float, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    config = workdir / "bench_simulation.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "simulation": {
                    "labels": ["Yes", "No"],
                    "reference": MODEL,
                    "models": {MODEL: {"agreement": 1.0, "latency_s": latency}},
                }
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "smart_spark.testing.server", "--port", "0", "--simulate", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    banner = process.stdout.readline() if process.stdout else ""
    if " at " not in banner:
        process.kill()
        raise RuntimeError(f"the stand-in server did not start: {banner!r}")
    return process, banner.split(" at ")[1].split()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1600, help="prompts sent concurrently")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per answer, seconds")
    parser.add_argument("--sequential-n", type=int, default=100, help="of the same prompts, sent one at a time")
    args = parser.parse_args()

    prompts = [f"Context: clause {i} of the ruling under review.\nQuestion: Is it overruling?\nAnswer:" for i in range(args.n)]
    with tempfile.TemporaryDirectory() as workdir:
        process, base_url = _start_server(args.latency, Path(workdir))
        try:
            catalogue = ModelCatalogue((ModelSpec(MODEL, 1e-6, 2e-6, base_url=base_url),))
            with LLMClient(catalogue, ["Yes", "No"], concurrency=args.concurrency) as client:
                client.complete_batch(MODEL, [f"warm-up {i}" for i in range(args.concurrency)])  # open connections

                start, cpu_start = time.perf_counter(), time.process_time()
                results = client.complete_batch(MODEL, prompts)
                concurrent_s = time.perf_counter() - start
                cpu_ms = (time.process_time() - cpu_start) / len(prompts) * 1000

                sequential = prompts[: args.sequential_n]
                start = time.perf_counter()
                sequential_results = [client.complete_batch(MODEL, [p])[0] for p in sequential]
                sequential_s = time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(timeout=10)

    failed = sum(not r.ok for r in results) + sum(not r.ok for r in sequential_results)
    rate = len(results) / concurrent_s
    ideal = args.concurrency / args.latency
    sequential_rate = len(sequential_results) / sequential_s
    print(f"machine: {os.cpu_count()} CPUs; server latency {args.latency * 1000:.0f} ms; failed calls: {failed}")
    print(f"concurrent (concurrency {args.concurrency}): {len(results)} answers in {concurrent_s:.2f} s "
          f"= {rate:.1f} answers/s; ideal {ideal:.0f}/s; ratio to ideal {rate / ideal:.3f} "
          f"({'meets' if rate / ideal >= 0.85 else 'BELOW'} the 0.85 target)")
    print(f"client CPU per answer: {cpu_ms:.2f} ms (one Python process; caps it near {1000 / cpu_ms:.0f} answers/s)")
    print(f"one call at a time (naive row-by-row UDF): {len(sequential_results)} of the same prompts in "
          f"{sequential_s:.2f} s = {sequential_rate:.1f} answers/s; ideal {1 / args.latency:.0f}/s; "
          f"ratio to ideal {sequential_rate * args.latency:.3f}")
    print(f"speed-up concurrent / one-at-a-time: {rate / sequential_rate:.1f}x")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
