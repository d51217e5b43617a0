"""Pilot elimination (``smart_spark/engine/elimination.py``), measured: the same trials without and with it.

    python -m jobs.bench_pilot_elimination --stats jobs/stats/overruling_like.csv \\
        --prices jobs/stats/synthetic_prices.yaml --reference ref --trials 10
    python -m jobs.bench_pilot_elimination --datasets sms_spam --targets 0.84 0.86 0.94 --trials 20

"Without" sets ``elimination.MIN_COST_SHARE`` to infinity: no candidate may
leave, so the pilot runs in one go as before the rule. Both arms run the same
seeds (population, pool and routing) one after the other in this process, so
each cell compares like with like. Per cell (dataset, target): mean savings
without and with, total cost with / without, misses of each arm, the pilot's
extra spend (candidate calls on pilot rows, in reference calls per run) and
how many runs ended with another plan. Ends with the mean savings ratio over
the cells and the worst cell; with ``--ceiling``, each arm's mix / ceiling
(lowest cell, mean) as ``jobs.reproduce_paper --ceiling`` prints it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from jobs.reproduce_paper import DEFAULT_PRICES, DEFAULT_STATS, DEFAULT_TARGETS
from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine import elimination
from smart_spark.paper.ceiling import savings_ceiling
from smart_spark.paper.simulation import load_profile_stats, run_trial

#: Each arm's (elimination.MIN_COST_SHARE, elimination.LEVEL); "without": no candidate may leave.
ARMS = {"without": (math.inf, elimination.LEVEL), "with": (elimination.MIN_COST_SHARE, elimination.LEVEL)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", default=DEFAULT_STATS, help="profile statistics CSV")
    parser.add_argument("--prices", default=DEFAULT_PRICES, help="catalogue YAML with the prices")
    parser.add_argument("--reference", default="gpt-4")
    parser.add_argument("--datasets", nargs="+", help="datasets to run (default: all in --stats)")
    parser.add_argument("--targets", nargs="+", type=float, default=DEFAULT_TARGETS)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="first trial seed")
    parser.add_argument("--ceiling", action="store_true", help="also print each arm's mix / ceiling")
    parser.add_argument("--level", type=float, default=elimination.LEVEL,
                        help="the 'with' arm's elimination.LEVEL (optimistic rate's one-sided level)")
    parser.add_argument("--min-cost-share", type=float, default=elimination.MIN_COST_SHARE,
                        help="the 'with' arm's elimination.MIN_COST_SHARE")
    return parser.parse_args(argv)


def run_cell(dataset, target: float, confidence: float, seeds, arms) -> dict[str, list[dict]]:
    """Each arm's runs of one cell, on the same seeds."""
    runs = {}
    saved = elimination.MIN_COST_SHARE, elimination.LEVEL
    try:
        for arm, (share, level) in arms.items():
            elimination.MIN_COST_SHARE, elimination.LEVEL = share, level
            runs[arm] = [run_trial(dataset, target, "mix", confidence, seed) for seed in seeds]
    finally:
        elimination.MIN_COST_SHARE, elimination.LEVEL = saved
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = load_profile_stats(args.stats, ModelCatalogue.from_yaml(args.prices), reference=args.reference)
    chosen = [datasets[name] for name in (args.datasets or datasets)]
    seeds = range(args.seed, args.seed + args.trials)
    arms = {**ARMS, "with": (args.min_cost_share, args.level)}
    started = time.perf_counter()
    ratios, per_arm_ceiling, per_arm_savings = [], {arm: [] for arm in ARMS}, {arm: [] for arm in ARMS}
    print("cell | savings without | with | cost with/without | misses without/with | "
          "pilot extra without/with (ref calls) | plans changed", flush=True)
    for dataset in chosen:
        reference_cost = dataset.reference.unit_cost
        for target in args.targets:
            runs = run_cell(dataset, target, args.confidence, seeds, arms)
            savings = {arm: float(np.mean([r["savings"] for r in rs])) for arm, rs in runs.items()}
            cost = {arm: sum(r["cost"] for r in rs) for arm, rs in runs.items()}
            misses = {arm: sum(not r["satisfied"] for r in rs) for arm, rs in runs.items()}
            pilot = {arm: float(np.mean([r["pilot_extra"] for r in rs])) / reference_cost for arm, rs in runs.items()}
            changed = sum(a["plan"] != b["plan"] for a, b in zip(runs["without"], runs["with"]))
            ratios.append(savings["with"] / savings["without"])
            for arm in ARMS:
                per_arm_savings[arm].append(savings[arm])
            line = (f"{dataset.name} {target:.2f} | {savings['without']:.3f}x | {savings['with']:.3f}x | "
                    f"{cost['with'] / cost['without']:.4f} | {misses['without']}/{misses['with']} | "
                    f"{pilot['without']:.1f}/{pilot['with']:.1f} | {changed}/{len(seeds)}")
            if args.ceiling:
                candidates = {m.name: (m.agreement, m.unit_cost) for m in dataset.candidates}
                ceiling = savings_ceiling(dataset.n_items, target, args.confidence, candidates, reference_cost).savings
                for arm in ARMS:
                    per_arm_ceiling[arm].append(savings[arm] / ceiling)
                line += f" | mix/ceiling {savings['without'] / ceiling:.3f} -> {savings['with'] / ceiling:.3f}"
            print(line, flush=True)
    worst = int(np.argmin(ratios))
    print(f"\nsavings with / without: mean over {len(ratios)} cells {np.mean(ratios):.4f}, "
          f"worst cell {ratios[worst]:.4f} (cell {worst + 1}), best {max(ratios):.4f}")
    print("mean savings over the cells: " + ", ".join(f"{arm} {np.mean(v):.2f}x" for arm, v in per_arm_savings.items()))
    if args.ceiling:
        for arm, values in per_arm_ceiling.items():
            print(f"mix / ceiling {arm}: lowest cell {min(values):.3f}, mean ratio {np.mean(values):.3f}")
    print(f"{2 * len(ratios) * len(seeds)} runs in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
