"""Engine speed: the paper's full grid, and planning for 12 candidate models.

    python -m jobs.bench_engine            # full grid (3 x 10 x 4 x 10 runs) + 12-model plan
    python -m jobs.bench_engine --trials 2 # quicker

Prints the wall time of the whole default grid of ``jobs.reproduce_paper``
(target: under 10 minutes on 2 cores) and the time to solve the mix program
with CBC for 12 candidate models at 6 budget shares each (target: under 1 s;
the research prototype enumerates 6^11 LPs for it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jobs import reproduce_paper
from smart_spark.engine.payoff import BUDGET_SHARES
from smart_spark.engine.planner import Option, solve_mix


def time_twelve_model_plan(repeats: int = 5, seed: int = 0) -> tuple[float, dict[str, float]]:
    """Median seconds to solve a 12-candidate mix program with CBC."""
    rng = np.random.default_rng(seed)
    times, solution = [], None
    for _ in range(repeats):
        options = [
            Option(f"model-{i}", share * 0.05, float(rng.uniform(0.6, 0.97)) - 0.02 * share, float(rng.uniform(0.01, 0.5)))
            for i in range(12)
            for share in BUDGET_SHARES
        ]
        started = time.perf_counter()
        solution = solve_mix(options, "reference", 1.0, 0.9, 0.05, solver="cbc")
        times.append(time.perf_counter() - started)
    return float(np.median(times)), solution.fractions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)

    seconds, fractions = time_twelve_model_plan()
    print(f"12-candidate mix program (72 binaries), CBC: median {seconds * 1000:.0f} ms; plan {fractions}")

    started = time.perf_counter()
    reproduce_paper.main(["--trials", str(args.trials)])
    grid = time.perf_counter() - started
    print(f"\nfull grid with {args.trials} trials: {grid:.1f} s ({grid / 60:.1f} min; target < 10 min)")
    print(f"12-candidate plan: {seconds:.3f} s (target < 1 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
