"""Scheduled reuse: a plan fitted on day 1, confirmed and applied on day 2, simulated.

    python -m jobs.bench_reuse                 # OVERRULING-like 12 models, N 1,080 and 10,800
    python -m jobs.bench_reuse --runs 200      # quicker
    python -m jobs.bench_reuse --looks all     # the design's choice vs one look vs two looks

Day 1 fits the engine on one population; day 2 draws a new population of the
same models (same agreement, slightly lower, far lower = drift), confirms the
saved plan on a fresh uniform sample (``smart_spark.engine.confirm``), routes
the remaining rows with the production hash and measures the realised
agreement over all day-2 rows. Printed per setting: how often the promise was
missed (the plan returned by the confirmation is applied whether or not it
"holds", so the bound is tested in every run), how often drift was flagged,
and day 2's cost against a fresh profile of the day-2 rows (the engine run from
scratch, which is what refitting costs).

The OVERRULING-like models take their agreement with gpt-4 and mean cost per
row from ``../shared/data/overruling_12llm.csv`` (the recorded answers of 12
LLMs on 2,160 queries).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from smart_spark.engine.config import SmartConfig
from smart_spark.engine.confirm import (
    LOOKS,
    SINGLE_LOOK,
    ConfirmationDesign,
    PlanEstimates,
    confirm_plan,
    confirmation_design,
)
from smart_spark.engine.engine import SmartEngine
from smart_spark.engine.plan import Plan, split_unit_hash, stable_unit_hash
from smart_spark.engine.profiler import AnswerArrays
from smart_spark.paper.simulation import SimDataset, SimModel, make_population

OVERRULING_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "overruling_12llm.csv"
REFERENCE = "gpt-4"


def overruling_like(n_items: int, path: Path = OVERRULING_CSV) -> SimDataset:
    """12 models with OVERRULING's agreement with gpt-4 (normalised labels) and mean cost per row."""
    import pandas as pd

    from smart_spark.llm.labels import agreement_key, normalise_label

    table = pd.read_csv(path)
    models = [c[: -len("_answer")] for c in table.columns if c.endswith("_answer") and c != "ref_answer"]

    def keys(model: str) -> np.ndarray:
        raws = table[f"{model}_answer"].astype(str)
        return np.array([agreement_key(normalise_label(r, ("Yes", "No")), r) for r in raws], dtype=object)

    ref_keys = keys(REFERENCE)
    sims = {m: SimModel(m, float(np.mean(keys(m) == ref_keys)), float(table[f"{m}_cost"].mean())) for m in models}
    candidates = tuple(sims[m] for m in models if m != REFERENCE)
    return SimDataset("overruling-like", n_items, replace(sims[REFERENCE], agreement=1.0), candidates)


def shifted(dataset: SimDataset, changes: dict[str, float], n_items: int | None = None) -> SimDataset:
    """The same models with some agreement rates changed (day 2's population)."""
    candidates = tuple(replace(m, agreement=changes.get(m.name, m.agreement)) for m in dataset.candidates)
    return replace(dataset, candidates=candidates, n_items=n_items or dataset.n_items)


def _answer_source(dataset: SimDataset, flags: np.ndarray, pool: np.ndarray):
    index = {m.name: i for i, m in enumerate(dataset.candidates)}
    cost_of = {m.name: m.unit_cost for m in dataset.models}

    def source(model: str, positions) -> AnswerArrays:
        items = pool[np.asarray(positions, dtype=np.int64)]
        keys = flags[index[model], items] if model in index else np.ones(len(items), dtype=bool)
        return AnswerArrays(keys=keys, costs=np.full(len(items), cost_of[model]), ok=np.ones(len(items), dtype=bool))

    return source


def fit_day1(dataset: SimDataset, config: SmartConfig, seed: int, mode: str = "independent") -> tuple[Plan, PlanEstimates, float]:
    """Day 1: the engine on a fresh population; the plan, its estimates and what day 1 cost in all."""
    rng = np.random.default_rng(seed)
    flags = make_population(dataset, mode, rng)
    pool = rng.permutation(dataset.n_items)
    names = [m.name for m in dataset.candidates]
    engine = SmartEngine(config, [*names, dataset.reference.name], dataset.reference.name,
                         solver="enumerate", max_parallel_models=1)
    result = engine.run(dataset.n_items, dataset.n_items, _answer_source(dataset, flags, pool))
    cost = result.profile.spent + result.plan.expected_cost
    return result.plan, PlanEstimates.from_profile(result.profile), cost


def route_realised(plan: Plan, dataset: SimDataset, flags: np.ndarray, remaining: np.ndarray, salt: str) -> tuple[int, float]:
    """Agreements and cost of the remaining rows routed with the production hash (``Plan.route``)."""
    index = {m.name: i for i, m in enumerate(dataset.candidates)}
    cost_of = {m.name: m.unit_cost for m in dataset.models}
    ordered = sorted(plan.fractions)
    keys = [f"{salt}:{item}" for item in remaining]
    u = np.fromiter((stable_unit_hash(key, plan.seed) for key in keys), float, len(keys))
    split = np.fromiter((split_unit_hash(key, plan.seed) for key in keys), float, len(keys)) if plan.blend else None
    chosen = plan.route_units(u, split)
    agreements, cost = 0, 0.0
    for k, model in enumerate(ordered):
        items = remaining[chosen == k]
        agreements += len(items) if model not in index else int(flags[index[model], items].sum())
        cost += len(items) * cost_of[model]
    return agreements, cost


def day2_trial(plan: Plan, estimates: PlanEstimates, dataset: SimDataset, config: SmartConfig, seed: int,
               mode: str = "independent", fresh: bool = False, design: ConfirmationDesign | None = None,
               refit: bool = True) -> dict:
    """Day 2: confirm the saved plan on a new population and apply what the confirmation returns.

    ``fresh``: also run the engine from scratch on the day-2 rows (the cost to compare with);
    ``refit``: do so whenever drift is flagged, to measure what ``onDrift="refit"`` delivers.
    """
    rng = np.random.default_rng(10_000_019 + seed)
    flags = make_population(dataset, mode, rng)
    pool = rng.permutation(dataset.n_items)
    source = _answer_source(dataset, flags, pool)
    result = confirm_plan(plan, dataset.n_items, dataset.n_items, source, config, rates=estimates, solver="enumerate",
                          design=design)
    profiled = result.profile.n_profiled
    agreements, apply_cost = route_realised(result.plan, dataset, flags, pool[profiled:], f"day2-{seed}")
    agreement = (profiled + agreements) / dataset.n_items
    row = {
        "holds": result.holds,
        "failing": tuple(result.failing_models),
        "size": profiled,
        "confirm_cost": result.spent,
        "day2_cost": result.spent + apply_cost,
        "agreement": agreement,
        "satisfied": agreement >= config.accuracy_target - 1e-12,
        "fresh_requested": fresh,
    }
    if fresh or (refit and not result.holds):
        fresh_row = _fresh_fit(dataset, config, flags, pool, f"fresh-{seed}")
        row.update(fresh_row)
        # What the operator does with onDrift="refit": apply the confirmed plan, or refit on drift.
        row["refit_satisfied"] = row["satisfied"] if result.holds else fresh_row["fresh_satisfied"]
    else:
        row["refit_satisfied"] = row["satisfied"]
    return row


def _fresh_fit(dataset: SimDataset, config: SmartConfig, flags: np.ndarray, pool: np.ndarray, salt: str) -> dict:
    """The engine from scratch on the day-2 rows (same pool order, as a refit with the same seed)."""
    engine = SmartEngine(config, [m.name for m in dataset.models], dataset.reference.name,
                         solver="enumerate", max_parallel_models=1)
    result = engine.run(dataset.n_items, dataset.n_items, _answer_source(dataset, flags, pool))
    profiled = result.profile.n_profiled
    agreements, apply_cost = route_realised(result.plan, dataset, flags, pool[profiled:], salt)
    return {
        "fresh_profile_cost": result.profile.spent,
        "fresh_cost": result.profile.spent + apply_cost,
        "fresh_satisfied": (profiled + agreements) / dataset.n_items >= config.accuracy_target - 1e-12,
    }


def day2_rows(plan, estimates, dataset, config, runs, fresh_runs=0, mode="independent", looks=None,
              refit: bool = True) -> list[dict]:
    """``runs`` day-2 trials (the design depends on no day-2 row, so it is computed once)."""
    design = confirmation_design(plan, dataset.n_items, config, estimates, looks)
    return [day2_trial(plan, estimates, dataset, config, seed, mode, fresh=seed < fresh_runs, design=design, refit=refit)
            for seed in range(runs)]


def _report(name: str, rows: list[dict], reference_cost: float) -> None:
    runs = len(rows)
    missed = sum(not r["satisfied"] for r in rows)
    drift = sum(not r["holds"] for r in rows)
    refit_missed = sum(not r["refit_satisfied"] for r in rows)
    fresh = [r for r in rows if r["fresh_requested"]]
    line = (f"  {name:<34} runs {runs:5d}  missed {missed / runs:6.3%}  drift flagged {drift / runs:6.1%}  "
            f"sample {np.mean([r['size'] for r in rows]):7.1f}  day-2 cost / reference {np.mean([r['day2_cost'] for r in rows]) / reference_cost:.3f}")
    if fresh:
        confirm = np.mean([r["confirm_cost"] for r in fresh])
        line += (f"\n  {'':<34} vs fresh profile ({len(fresh)} runs): confirmation / profiling "
                 f"{confirm / np.mean([r['fresh_profile_cost'] for r in fresh]):.3f}, day-2 total / fresh total "
                 f"{np.mean([r['day2_cost'] for r in fresh]) / np.mean([r['fresh_cost'] for r in fresh]):.3f}")
    line += f"\n  {'':<34} with onDrift='refit' (refit when flagged): missed {refit_missed / runs:6.3%}"
    flagged = {}
    for r in rows:
        for m in r["failing"]:
            flagged[m] = flagged.get(m, 0) + 1
    if flagged:
        line += f"\n  {'':<34} failing models named: {flagged}"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="day-2 runs per setting")
    parser.add_argument("--fresh-runs", type=int, default=50, help="runs that also profile day 2 from scratch")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1080, 10800])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--looks", choices=("auto", "single", "two", "all"), default="auto",
                        help="confirmation schedule: the design's choice, one look at full alpha, two looks with "
                             "alpha spending, or all three side by side")
    parser.add_argument("--settings", nargs="+", choices=("same", "slightly", "lower", "drift"),
                        default=["same", "slightly", "lower", "drift"], help="day-2 populations to run")
    parser.add_argument("--data", type=Path, default=OVERRULING_CSV, help="the OVERRULING recording")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"needs {args.data} (the shared data folder; --data to point elsewhere)")
        return 2
    config = SmartConfig(args.target, args.confidence, "mix", seed=7, batch_size=4096)
    for n_items in args.sizes:
        day1 = overruling_like(n_items, args.data)
        plan, estimates, day1_cost = fit_day1(day1, config, seed=7)
        reference_cost = n_items * day1.reference.unit_cost
        print(f"\nN = {n_items}: day-1 plan {plan.fractions} bounds "
              f"{ {m: round(b, 4) for m, b in plan.bounds.items()} }; day-1 cost / reference {day1_cost / reference_cost:.3f}")
        cheap = max((m for m in plan.fractions if m != plan.reference), key=lambda m: plan.fractions[m], default=None)
        if cheap is None:
            print("  reference-only plan: nothing to confirm")
            continue
        rate = next(m.agreement for m in day1.candidates if m.name == cheap)
        bound = plan.bounds[cheap]
        settings = {
            f"same agreement ({cheap} {rate:.3f})": {},
            f"slightly lower ({bound:.3f}, the day-1 bound)": {cheap: bound},
            f"lower ({rate - 0.05:.3f})": {cheap: rate - 0.05},
            f"far lower = drift ({rate - 0.15:.3f})": {cheap: rate - 0.15},
        }
        schedules = {"auto": [("", None)], "single": [("", SINGLE_LOOK)], "two": [("", LOOKS)],
                     "all": [("[auto] ", None), ("[single look] ", SINGLE_LOOK), ("[two looks] ", LOOKS)]}[args.looks]
        for name, changes in settings.items():
            for label, looks in schedules:
                started = time.perf_counter()
                rows = day2_rows(plan, estimates, shifted(day1, changes), config, args.runs, args.fresh_runs, looks=looks)
                _report(label + name, rows, reference_cost)
                print(f"  {'':<34} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
