"""Small N: does SMART ever cost more than the reference alone?

Issue 10's must-show grid: 12 models with OVERRULING's agreements (with
gpt-4) and recorded per-query costs, N = 300 and 1,000, targets 0.80, 0.90,
0.95, 0.98, confidence 0.80 and 0.99. Prints, per cell, the mean savings
(reference-only cost / SMART's cost), the worst run, the share of runs that
chose reference-only before profiling and the promise's violation rate.

    nice -n 10 python -m jobs.bench_small_n --trials 20
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from smart_spark.llm.labels import agreement_key
from smart_spark.paper.simulation import SimDataset, SimModel, run_trial

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "overruling_12llm.csv"
REFERENCE = "gpt-4"
SIZES = (300, 1000)
TARGETS = (0.80, 0.90, 0.95, 0.98)
CONFIDENCES = (0.80, 0.99)


def overruling_like(csv: Path, n_items: int) -> SimDataset:
    """N items whose models have OVERRULING's agreement with gpt-4 and mean recorded cost."""
    frame = pd.read_csv(csv)
    models = [c[: -len("_answer")] for c in frame.columns if c.endswith("_answer") and c != "ref_answer"]
    ref_keys = frame[f"{REFERENCE}_answer"].map(lambda a: agreement_key(None, str(a)))
    sims = {
        m: SimModel(
            m,
            float((frame[f"{m}_answer"].map(lambda a: agreement_key(None, str(a))) == ref_keys).mean()),
            float(frame[f"{m}_cost"].mean()),
        )
        for m in models
    }
    return SimDataset(f"overruling-{n_items}", n_items, sims[REFERENCE], tuple(s for m, s in sims.items() if m != REFERENCE))


def _cell(job) -> dict:
    dataset, target, confidence, trials = job
    runs = [run_trial(dataset, target, "mix", confidence, seed, solver="enumerate") for seed in range(trials)]
    savings = np.array([r["savings"] for r in runs])
    return {
        "N": dataset.n_items,
        "target": target,
        "confidence": confidence,
        "mean_savings": float(savings.mean()),
        "worst_savings": float(savings.min()),
        "reference_only": float(np.mean([r["profiled"] == 0 for r in runs])),
        "violations": float(np.mean([not r["satisfied"] for r in runs])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="N per cell")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    parser.add_argument("--confidences", type=float, nargs="+", default=list(CONFIDENCES))
    args = parser.parse_args(argv)
    if not args.csv.exists():
        print(f"{args.csv} not found (the shared data folder is needed)", file=sys.stderr)
        return 2
    jobs = [
        (overruling_like(args.csv, n), t, c, args.trials)
        for n, t, c in product(args.sizes, args.targets, args.confidences)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        table = pd.DataFrame(list(pool.map(_cell, jobs)))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    worst = table["mean_savings"].min()
    print(f"lowest mean savings {worst:.3f}x; every cell >= 1.0x: {bool(worst >= 1.0)}; "
          f"highest violation rate {table['violations'].max():.3f}")
    return 0 if worst >= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
