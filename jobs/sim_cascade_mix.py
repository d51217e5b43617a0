"""A cascade beside several plain models near the target: the mix planner's promise by simulation.

    nice -n 10 python -m jobs.sim_cascade_mix --runs 1000 --out mix.csv

Per setting (N, confidence) one finite population is fixed: three plain models
with exact agreement counts just below, at and above the target (costs 0.25,
0.35, 0.5 of the reference's) and a cheap model (cost 1/16, agreement 0.75)
whose confidence is calibrated. Each run draws a uniform profiling sample,
plans with :func:`~smart_spark.engine.cascade_options.plan_with_cascade_options`
and routes every unprofiled row at random by the plan's shares; it violates
when the agreement over all N rows is below the target. Printed: the
violation rate beside ``1 - confidence`` and a 3-sigma binomial band, the
share of rows given to cascades, and the cost against the reference alone
(profiling included).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from smart_spark.engine.cascade_options import cascade_flags, plan_with_cascade_options
from jobs.sim_output import noise_band, settings_parser, write_rows

REFERENCE = "reference"
PLAIN = {"near_below": (-0.01, 0.25), "at_target": (0.0, 0.35), "above": (0.02, 0.5)}  # agreement offset, cost
CHEAP, CHEAP_COST, CHEAP_AGREEMENT = "cheap", 1 / 16, 0.75


def population(n_rows: int, target: float, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fixed agreement flags per model (exact counts) and the cheap model's calibrated confidence."""
    agrees = {}
    for name, (offset, _) in PLAIN.items():
        flags = np.zeros(n_rows, dtype=bool)
        flags[: int(round((target + offset) * n_rows))] = True
        agrees[name] = rng.permutation(flags)
    confidence = rng.beta(CHEAP_AGREEMENT * 4, (1 - CHEAP_AGREEMENT) * 4, n_rows).clip(0.5, 1.0)
    agrees[CHEAP] = rng.uniform(size=n_rows) < confidence
    return agrees, confidence


def run_setting(n_rows: int, confidence_level: float, target: float, runs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    agrees, confidence = population(n_rows, target, rng)
    costs = {name: cost for name, (_, cost) in PLAIN.items()} | {CHEAP: CHEAP_COST, REFERENCE: 1.0}
    n_profile = min(n_rows - 1, max(100, n_rows // 4))
    pilot = int(0.4 * n_profile)
    violations, cascade_share, cost_ratio = 0, 0.0, 0.0
    for run in range(runs):
        run_rng = np.random.default_rng(1_000_003 * seed + run)
        order = run_rng.permutation(n_rows)
        sample, rest = order[:n_profile], order[n_profile:]
        solution, cascades = plan_with_cascade_options(
            {m: a[sample] for m, a in agrees.items()}, {CHEAP: confidence[sample]}, costs, reference=REFERENCE,
            n_total=n_rows, accuracy_target=target, confidence=confidence_level, pilot_size=pilot,
        )
        names = sorted(solution.fractions)
        routed = run_rng.choice(len(names), size=rest.size, p=np.array([solution.fractions[m] for m in names]))
        agreeing, paid = n_profile, n_profile * sum(costs.values())
        for index, name in enumerate(names):
            rows = rest[routed == index]
            if name == REFERENCE:
                agreeing, paid = agreeing + rows.size, paid + rows.size
                continue
            spec = cascades.get(name)
            if spec is None:
                flags, cost = agrees[name][rows], costs[name] * rows.size
            else:
                flags = cascade_flags(confidence[rows], agrees[CHEAP][rows], spec.threshold)
                cost = CHEAP_COST * rows.size + float(np.sum(confidence[rows] < spec.threshold))
                cascade_share += rows.size / n_rows / runs
            agreeing += int(flags.sum())
            paid += cost
        violations += agreeing < target * n_rows - 1e-9
        cost_ratio += paid / n_rows / runs
    rate = violations / runs
    allowed = 1.0 - confidence_level
    return {
        "n": n_rows, "confidence": confidence_level, "target": target, "runs": runs, "violation_rate": rate,
        "allowed": allowed, "noise_band": noise_band(allowed, runs),
        "cascade_share": cascade_share, "cost_vs_reference": cost_ratio,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = settings_parser(__doc__, seed=7)
    args = parser.parse_args(argv)
    rows = [run_setting(n, c, args.target, args.runs, args.seed) for n, c in itertools.product(args.n, args.confidence)]
    print(f"{'N':>6} {'conf':>5} {'violations':>10} {'allowed+3sd':>11} {'cascade share':>13} {'cost/ref':>8}")
    for r in rows:
        print(f"{r['n']:>6} {r['confidence']:>5} {r['violation_rate']:>10.3f} {r['noise_band']:>11.3f} "
              f"{r['cascade_share']:>13.3f} {r['cost_vs_reference']:>8.3f}")
    if args.out:
        write_rows(args.out, rows)
    return 0 if all(r["violation_rate"] <= r["noise_band"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
