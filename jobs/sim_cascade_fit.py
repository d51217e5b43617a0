"""The Spark fit's whole cascade procedure by simulation: the promise, and what it keeps and saves.

    nice -n 10 python -m jobs.sim_cascade_fit --runs 1000 --out fit.csv

What the operator's fit does when a cheap model gives log-probabilities, without
Spark: the same function ``spark/fitting.py`` calls
(``spark.cascade_fit_procedure.fit_with_cascades``): half the error budget certifies one
cascade for the cheap model on the pool's prefixes (``spark.cascade_fit``), the
other half runs the engine on the rest of the pool with the cheap model offered
as a cascade beside the plain models, its threshold chosen on the certificate's
rows (``spark.cascade_mix``); the cheaper plan is kept. Each run draws a fresh profiling order of a
fixed population; unprofiled rows are routed with the production hash
(``Plan.route``) and answered as the apply phase would (a cascade's cheap answer
at or above its threshold, else the reference). A run violates when the
agreement over all N rows is below the target.

Populations (per N): the cheap model's confidence calibrated, over-confident
(answers right less often than it says), unrelated to correctness, or sorted
(input order by confidence); plain models with agreement just below, at and above
the target (costs 0.25, 0.35, 0.5 of the reference; the cheap model 1/16).
Printed per setting: violation rate beside ``1 - confidence`` + 3 sd, which plan
won, the share of rows the cheap model kept, and the cost against the reference
alone (profiling included).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine import SmartConfig
from smart_spark.engine.plan import stable_unit_hash
from smart_spark.spark.state import cascade_entries
from jobs.sim_fit import simulated_fit
from jobs.sim_output import noise_band, settings_parser, write_rows

REFERENCE, CHEAP = "reference", "cheap"
PLAIN = {"near_below": (-0.01, 0.25), "at_target": (0.0, 0.35), "above": (0.02, 0.5)}  # agreement offset, cost
CHEAP_COST = 1 / 16
SCORES = ("calibrated", "overconfident", "unrelated", "sorted")


def population(n_rows: int, target: float, scores: str, rng: np.random.Generator):
    """Fixed agreement flags per model (exact counts for the plain ones) and the cheap model's confidence."""
    agrees = {}
    for name, (offset, _) in PLAIN.items():
        flags = np.zeros(n_rows, dtype=bool)
        flags[: int(round((target + offset) * n_rows))] = True
        agrees[name] = rng.permutation(flags)
    confidence = rng.beta(3.0, 1.0, n_rows).clip(0.5, 1.0)
    if scores == "calibrated":
        agrees[CHEAP] = rng.uniform(size=n_rows) < confidence
    elif scores == "overconfident":
        agrees[CHEAP] = rng.uniform(size=n_rows) < (confidence - 0.15).clip(0.0, 1.0)
    else:  # unrelated, sorted: right 80% of the time whatever the confidence says
        agrees[CHEAP] = rng.uniform(size=n_rows) < 0.8
    if scores == "sorted":  # rows arrive by descending confidence: the profiling order must not care
        order = np.argsort(-confidence, kind="stable")
        agrees = {m: a[order] for m, a in agrees.items()}
        confidence = confidence[order]
    return agrees, confidence


def catalogue() -> ModelCatalogue:
    entries = [{"name": CHEAP, "input_price_per_1m": 1.0, "output_price_per_1m": 1.0, "top_logprobs": 5}]
    entries += [{"name": m, "input_price_per_1m": 16.0 * c, "output_price_per_1m": 16.0 * c}
                for m, (_, c) in PLAIN.items()]
    return ModelCatalogue.from_dicts(entries + [{"name": REFERENCE, "input_price_per_1m": 16.0,
                                                 "output_price_per_1m": 16.0}])


def fit_once(agrees, confidence, costs, cat, config, order, plain_side="mix"):
    """The fit's plan on one profiling order: (plan, profiled row ids, model -> threshold, spent, chosen).

    ``plain_side="engine"``: the plain engine instead of the mix of cascade and
    plain options (the fit before cascades became options), for comparison.
    """
    outcome, rows, spent = simulated_fit(agrees, {CHEAP: confidence}, costs, order, REFERENCE, catalogue=cat,
                                         candidate=CHEAP, config=config, offer_mix=plain_side == "mix")
    plan, cascade = outcome.plan, outcome.cascade
    thresholds = {c["model"]: c["threshold"] for c in cascade_entries(cascade)}
    return plan, rows, thresholds, spent, ("mix" if cascade and cascade.get("kind") == "mix" else plan.method)


def run_setting(n_rows: int, confidence_level: float, scores: str, target: float, runs: int, seed: int,
                plain_side: str = "mix"):
    rng = np.random.default_rng(seed)
    agrees, confidence = population(n_rows, target, scores, rng)
    costs = {m: c for m, (_, c) in PLAIN.items()} | {CHEAP: CHEAP_COST, REFERENCE: 1.0}
    cat, config = catalogue(), SmartConfig(target, confidence_level)
    units = np.array([stable_unit_hash(str(row), config.seed) for row in range(n_rows)])
    violations, kept_share, cost_ratio, chosen = 0, 0.0, 0.0, {}
    for run in range(runs):
        order = np.random.default_rng(1_000_003 * seed + run).permutation(n_rows)
        plan, profiled, thresholds, spent, kind = fit_once(agrees, confidence, costs, cat, config, order, plain_side)
        chosen[kind] = chosen.get(kind, 0) + 1
        rest = np.setdiff1d(np.arange(n_rows), profiled)
        names = sorted(plan.fractions)
        routed = plan.route_units(units[rest])
        agreeing, paid, kept = profiled.size, spent, 0
        for index, name in enumerate(names):
            rows = rest[routed == index]
            if name == REFERENCE:
                agreeing, paid = agreeing + rows.size, paid + rows.size
            elif name in thresholds:
                stands = confidence[rows] >= thresholds[name]
                agreeing += int((~stands | agrees[name][rows]).sum())
                paid += costs[name] * rows.size + float((~stands).sum())
                kept += int(stands.sum())
            else:
                agreeing += int(agrees[name][rows].sum())
                paid += costs[name] * rows.size
                kept += rows.size if name == CHEAP else 0
        violations += agreeing < target * n_rows - 1e-9
        kept_share += kept / n_rows / runs
        cost_ratio += paid / n_rows / runs
    allowed = 1.0 - confidence_level
    return {
        "n": n_rows, "confidence": confidence_level, "scores": scores, "target": target, "runs": runs,
        "plain_side": plain_side,
        "violation_rate": violations / runs, "allowed": allowed,
        "noise_band": noise_band(allowed, runs),
        "chosen": " ".join(f"{k}={v}" for k, v in sorted(chosen.items())),
        "cheap_kept_share": kept_share, "cost_vs_reference": cost_ratio,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = settings_parser(__doc__, seed=7)
    parser.add_argument("--scores", nargs="+", default=list(SCORES), choices=SCORES)
    parser.add_argument("--plain-side", choices=("mix", "engine"), default="mix",
                        help="engine: the plain engine beside the one cascade (the fit before cascade options)")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'N':>5} {'conf':>5} {'scores':>13} {'violations':>10} {'allowed+3sd':>11} {'kept':>6} "
          f"{'cost/ref':>8}  chosen", flush=True)
    for n, c, scores in itertools.product(args.n, args.confidence, args.scores):
        r = run_setting(n, c, scores, args.target, args.runs, args.seed, args.plain_side)
        rows.append(r)
        print(f"{r['n']:>5} {r['confidence']:>5} {r['scores']:>13} {r['violation_rate']:>10.3f} "
              f"{r['noise_band']:>11.3f} {r['cheap_kept_share']:>6.3f} {r['cost_vs_reference']:>8.3f}  {r['chosen']}",
              flush=True)
    if args.out:
        write_rows(args.out, rows)
    return 0 if all(r["violation_rate"] <= r["noise_band"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
