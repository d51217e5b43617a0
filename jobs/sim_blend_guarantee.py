"""The blend's one bound, proved by simulation: realised agreement >= target with probability >= confidence.

A blend certifies two models as one (``engine/blend`` in ``plan.py``): each
confirmation row is scored by the member the production split hash picks, one
exact Clopper-Pearson bound at the whole alpha, and the apply phase routes the
blend's rows by the same hashes. The pays-off rule rarely prefers a blend to a
Bonferroni pair on independent flags, so to put the blend's bound under test
this job takes the pairs away (singles and blends only): the plan then relies
on the blend in many runs. Adversarial settings: the blend's rate close to the
target, independent, correlated and sorted flags; production routing hash.

    python -m jobs.sim_blend_guarantee --runs 2000
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor

from smart_spark.engine import payoff
from smart_spark.paper.simulation import SimDataset, SimModel, run_trial

TARGET = 0.90


def settings(n_items: int) -> dict[str, tuple[SimDataset, str]]:
    def dataset(a: float, b: float) -> SimDataset:
        return SimDataset("blend", n_items, SimModel("reference", 1.0, 1.0),
                          (SimModel("A", a, 0.01), SimModel("B", b, 0.05)))

    return {
        "A 0.86 / B 0.93, independent": (dataset(0.86, 0.93), "independent"),
        "A 0.88 / B 0.91, independent": (dataset(0.88, 0.91), "independent"),
        "A 0.86 / B 0.93, correlated": (dataset(0.86, 0.93), "correlated"),
        "A 0.86 / B 0.93, sorted": (dataset(0.86, 0.93), "sorted"),
    }


def singles_only(n_models: int):
    """Budget allocations without Bonferroni pairs: the blend is the only way to use two models."""
    return [((i, 1.0),) for i in range(n_models)]


def run_setting(job) -> list[dict]:
    dataset, mode, seeds, confidence = job
    payoff.candidate_allocations = singles_only
    return [run_trial(dataset, TARGET, "mix", confidence, seed, mode, solver="enumerate") for seed in seeds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    cases = settings(args.items)
    jobs = [(d, mode, range(w, args.runs, args.workers), args.confidence)
            for d, mode in cases.values() for w in range(args.workers)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_setting, jobs))
    ok = True
    allowed = 1 - args.confidence
    for index, name in enumerate(cases):
        rows = [r for part in results[index * args.workers:(index + 1) * args.workers] for r in part]
        blended = [r for r in rows if r["plan"].endswith("(blend)")]
        misses = sum(not r["satisfied"] for r in rows)
        blend_misses = sum(not r["satisfied"] for r in blended)
        noise = 3 * (allowed * (1 - allowed) / len(rows)) ** 0.5
        ok &= misses / len(rows) <= allowed + noise
        print(f"{name}: {len(rows)} runs, blend in {len(blended)}; violation rate {misses / len(rows):.4f} "
              f"(blend runs {blend_misses}/{len(blended)}); lowest agreement {min(r['agreement'] for r in rows):.4f}; "
              f"mean savings {sum(r['savings'] for r in rows) / len(rows):.2f}x")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
