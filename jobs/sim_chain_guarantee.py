"""A chain of cascades A -> B -> reference in the fit, by simulation: the promise, and what the chain saves.

    nice -n 19 python -m jobs.sim_chain_guarantee --runs 1000 --out chain.csv

The Spark fit's whole procedure without Spark (``spark.cascade_fit_procedure.fit_with_cascades``,
which ``spark/fitting.py`` calls), with two
models giving log-probabilities: ``first`` (1/16 of the reference's price) and
``second`` (1/5), beside plain models with agreement just below, at and above the
target (0.25, 0.35, 0.5 of the reference). Half the error budget certifies one
cascade for ``first`` on the pool's prefixes; the other half runs the engine on
the rest of the pool with ``first`` offered as a cascade, the chain
``first>second`` (thresholds chosen on the certificate's rows, ``second`` paid
there) and the plain models; the cheaper plan is kept. Each run draws a fresh
profiling order of one fixed population; unprofiled rows are routed with the
production hash (``Plan.route``) and answered as the apply phase would (a chain:
``first``'s answer at or above its threshold, else ``second``'s at or above its
own, else the reference's). A run violates when the agreement over all N rows
is below the target.

Populations: both confidences ``calibrated`` (P[agree | c] = c; ``first`` right
mostly where it is sure, ``second`` independently so), ``sharp`` (each model
right 99% of the time above a confidence cutoff, ``first`` 60% and ``second``
50% below it: about 0.76 and 0.89 overall), ``overconfident`` (both
right less often than they say), ``unrelated`` (``second``'s confidence says
nothing about its correctness) or ``sorted`` (input ordered by ``first``'s
confidence). ``--compare`` also runs the same orders without the chain (the fit
before chains) and prints both costs.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine import SmartConfig
from smart_spark.engine.cascade_chain import answered_by, chain_flags, chain_row_costs
from smart_spark.engine.plan import stable_unit_hash
from smart_spark.spark.state import cascade_entries
from jobs.sim_fit import simulated_fit
from jobs.sim_output import noise_band, settings_parser, write_rows

REFERENCE, FIRST, SECOND = "reference", "first", "second"
PLAIN = {"near_below": (-0.01, 0.25), "at_target": (0.0, 0.35), "above": (0.02, 0.5)}  # agreement offset, cost
COSTS = {FIRST: 1 / 16, SECOND: 0.2, REFERENCE: 1.0} | {m: c for m, (_, c) in PLAIN.items()}
SCORES = ("calibrated", "sharp", "overconfident", "unrelated", "sorted")


def population(n_rows: int, target: float, scores: str, rng: np.random.Generator):
    """Fixed agreement flags per model and the two confidences (exact counts for the plain models)."""
    agrees = {}
    for name, (offset, _) in PLAIN.items():
        flags = np.zeros(n_rows, dtype=bool)
        flags[: int(round((target + offset) * n_rows))] = True
        agrees[name] = rng.permutation(flags)
    confidence = {FIRST: rng.beta(2.0, 1.0, n_rows).clip(0.5, 1.0), SECOND: rng.beta(5.0, 1.0, n_rows).clip(0.5, 1.0)}
    shift = 0.15 if scores == "overconfident" else 0.0
    for model in (FIRST, SECOND):
        agrees[model] = rng.uniform(size=n_rows) < (confidence[model] - shift).clip(0.0, 1.0)
    if scores == "sharp":  # almost always right above a confidence cutoff, a coin toss below it
        confidence = {m: rng.uniform(0.5, 1.0, n_rows) for m in (FIRST, SECOND)}
        agrees[FIRST] = rng.uniform(size=n_rows) < np.where(confidence[FIRST] > 0.8, 0.99, 0.6)
        agrees[SECOND] = rng.uniform(size=n_rows) < np.where(confidence[SECOND] > 0.6, 0.99, 0.5)
    if scores == "unrelated":
        confidence[SECOND] = rng.permutation(confidence[SECOND])
    if scores == "sorted":  # rows arrive by descending confidence of the first model
        order = np.argsort(-confidence[FIRST], kind="stable")
        agrees = {m: a[order] for m, a in agrees.items()}
        confidence = {m: c[order] for m, c in confidence.items()}
    return agrees, confidence


def catalogue() -> ModelCatalogue:
    entries = [{"name": m, "input_price_per_1m": 16.0 * COSTS[m], "output_price_per_1m": 16.0 * COSTS[m],
                **({"top_logprobs": 5} if m in (FIRST, SECOND) else {})}
               for m in (FIRST, SECOND, *PLAIN, REFERENCE)]
    return ModelCatalogue.from_dicts(entries)


def fit_once(agrees, confidence, cat, config, order, chains: bool):
    """The fit's plan on one profiling order: (plan, profiled rows, option -> steps, spent)."""
    outcome, rows, spent = simulated_fit(agrees, confidence, COSTS, order, REFERENCE, catalogue=cat,
                                         candidate=FIRST, config=config, offer_mix=True,
                                         chain_models=[SECOND] if chains else [])
    routes = {c["model"]: tuple((s["model"], s["threshold"]) for s in c["steps"]) if "steps" in c
              else ((c["model"], c["threshold"]),) for c in cascade_entries(outcome.cascade)}
    return outcome.plan, rows, routes, spent


def apply_rows(name, rows, routes, agrees, confidence):
    """(agreeing rows, cost, rows kept from the reference) of ``rows`` routed to option ``name``."""
    if name == REFERENCE:
        return rows.size, float(rows.size), 0
    steps = routes.get(name)
    if steps is None:
        return int(agrees[name][rows].sum()), COSTS[name] * rows.size, rows.size
    models = [m for m, _ in steps]
    thresholds = [t for _, t in steps]
    conf = [confidence[m][rows] for m in models]
    step = answered_by(conf, thresholds)
    flags = chain_flags(conf, [agrees[m][rows] for m in models], thresholds)
    cost = chain_row_costs(step, [COSTS[m] for m in models], COSTS[REFERENCE])
    return int(flags.sum()), float(cost.sum()), int((step < len(models)).sum())


def run_setting(n_rows: int, confidence_level: float, scores: str, target: float, runs: int, seed: int,
                chains: bool = True):
    rng = np.random.default_rng(seed)
    agrees, confidence = population(n_rows, target, scores, rng)
    cat, config = catalogue(), SmartConfig(target, confidence_level)
    units = np.array([stable_unit_hash(str(row), config.seed) for row in range(n_rows)])
    violations, kept_share, cost_ratio, chain_share = 0, 0.0, 0.0, 0.0
    for run in range(runs):
        order = np.random.default_rng(1_000_003 * seed + run).permutation(n_rows)
        plan, profiled, routes, spent = fit_once(agrees, confidence, cat, config, order, chains)
        rest = np.setdiff1d(np.arange(n_rows), profiled)
        names = sorted(plan.fractions)
        routed = plan.route_units(units[rest])
        agreeing, paid, kept = profiled.size, spent, 0
        for index, name in enumerate(names):
            good, cost, from_cheap = apply_rows(name, rest[routed == index], routes, agrees, confidence)
            agreeing, paid, kept = agreeing + good, paid + cost, kept + from_cheap
        violations += agreeing < target * n_rows - 1e-9
        kept_share += kept / n_rows / runs
        cost_ratio += paid / n_rows / runs
        chain_share += sum(x for m, x in plan.fractions.items() if len(routes.get(m, ())) > 1) / runs
    allowed = 1.0 - confidence_level
    return {
        "n": n_rows, "confidence": confidence_level, "scores": scores, "target": target, "runs": runs,
        "chains": chains, "violation_rate": violations / runs, "allowed": allowed,
        "noise_band": noise_band(allowed, runs), "mean_chain_share": chain_share,
        "kept_from_reference": kept_share, "cost_vs_reference": cost_ratio,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = settings_parser(__doc__, seed=11)
    parser.add_argument("--scores", nargs="+", default=list(SCORES), choices=SCORES)
    parser.add_argument("--compare", action="store_true", help="also run the same orders without the chain")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'N':>5} {'conf':>5} {'scores':>13} {'chain':>5} {'violations':>10} {'allowed+3sd':>11} "
          f"{'chain share':>11} {'kept':>6} {'cost/ref':>8}", flush=True)
    for n, c, scores in itertools.product(args.n, args.confidence, args.scores):
        for chains in (True, False) if args.compare else (True,):
            r = run_setting(n, c, scores, args.target, args.runs, args.seed, chains)
            rows.append(r)
            print(f"{r['n']:>5} {r['confidence']:>5} {r['scores']:>13} {str(chains):>5} {r['violation_rate']:>10.3f} "
                  f"{r['noise_band']:>11.3f} {r['mean_chain_share']:>11.3f} {r['kept_from_reference']:>6.3f} "
                  f"{r['cost_vs_reference']:>8.3f}", flush=True)
    if args.out:
        write_rows(args.out, rows)
    return 0 if all(r["violation_rate"] <= r["noise_band"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
