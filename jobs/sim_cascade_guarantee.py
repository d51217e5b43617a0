"""The cascade's guarantee by simulation: realised violation rate per setting.

    nice -n 10 python -m jobs.sim_cascade_guarantee --runs 1000 --out guarantee.csv

Per setting one finite dataset is fixed (see smart_spark/paper/cascade_sim.py)
and the certified cascade runs ``--runs`` times with different sampling seeds; a
run violates when the agreement over all N rows is below the target. The
cheap model's agreement is set at the target, where keeping everything is a
coin flip and the certificate has to do the work. Printed beside the allowed
``1 - confidence`` and a 3-sigma binomial noise band.
"""

from __future__ import annotations

import argparse
import itertools
import math
from typing import Sequence

import numpy as np

from smart_spark.engine.cascade import certify_cascade
from smart_spark.paper.cascade_sim import SCORE_KINDS, simulate_dataset
from jobs.sim_output import write_rows


def violation_rate(kind: str, n_rows: int, target: float, confidence: float, agreement: float, runs: int, seed: int) -> tuple[float, float]:
    """(share of runs below target, mean kept share) on one fixed dataset."""
    data = simulate_dataset(kind, n_rows, agreement, np.random.default_rng(seed))
    violations = 0
    kept = 0.0
    for run in range(runs):
        result = certify_cascade(
            n_rows,
            lambda positions: (data.confidence[positions], data.agrees[positions]),
            accuracy_target=target,
            error_budget=1.0 - confidence,
            rng=np.random.default_rng(10_000 * seed + run),
        )
        kept_rows = result.kept(data.confidence)
        wrong = int((kept_rows & ~data.agrees).sum())
        violations += (1.0 - wrong / n_rows) < target - 1e-12
        kept += float(kept_rows.mean())
    return violations / runs, kept / runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--n", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.8, 0.99])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--agreement", type=float, nargs="+", default=[0.9, 0.93])
    parser.add_argument("--kinds", nargs="+", default=list(SCORE_KINDS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    rows = []
    settings = itertools.product(args.kinds, args.n, args.confidence, args.agreement)
    for seed, (kind, n_rows, confidence, agreement) in enumerate(settings):
        rate, kept = violation_rate(kind, n_rows, args.target, confidence, agreement, args.runs, seed)
        allowed = 1.0 - confidence
        noise = 3.0 * math.sqrt(allowed * confidence / args.runs)
        row = {
            "scores": kind, "n": n_rows, "target": args.target, "confidence": confidence,
            "agreement": agreement, "runs": args.runs, "violation_rate": rate,
            "allowed": allowed, "allowed_plus_3sigma": allowed + noise, "kept_share": kept,
            "ok": rate <= allowed + noise,
        }
        rows.append(row)
        print(
            f"{kind:<13} N={n_rows:<5} conf={confidence:<5} agreement={agreement:<5} "
            f"violation={rate:.4f} (allowed {allowed:.3f} + noise {noise:.4f}) kept={kept:.3f} "
            f"{'ok' if row['ok'] else 'VIOLATION'}",
            flush=True,
        )
    write_rows(args.out, rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
