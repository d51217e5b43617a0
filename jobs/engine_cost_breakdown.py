"""Where the engine's money goes, per cell, next to the ceiling's and the told single look's total.

Every figure is a share of the reference-only cost (N x reference price), the
mean over the cell's runs:

- ``pilot+``: the candidates' calls on pilot rows (the pilot's extra spend;
  its reference calls answer those rows and are counted in ``profiled``);
- ``confirm+``: the candidates' calls on confirmation rows;
- ``profiled``: the reference's calls on all profiled rows (pilot and
  confirmation), exact answers;
- ``rest``: the unprofiled rows under the plan (escalations included);
- ``total`` (= 1 / savings), ``ceiling`` (= 1 / the ceiling's savings,
  ``smart_spark.paper.ceiling``), ``told`` (= 1 / the told single look's);
  ``ceiling rows``: the profiling length at which the ceiling is reached;
  ``told rows`` / ``told model``: the told single look's confirmation size and model;
  ``told routed``: the told look's cost share with its bound taken at the
  routed group's effective size (the routing noise a valid plan must cover);
  ``gap pilot`` / ``gap confirm`` / ``gap rest``: ``total - told`` split into
  the pilot, the confirmation beyond the told look's profiling, and the
  unprofiled rows (they add up to ``total - told``).

    python -m jobs.engine_cost_breakdown --datasets sms_spam --targets 0.84 0.86 0.88 0.9 0.92 0.94 --trials 20
    python -m jobs.engine_cost_breakdown --stats jobs/stats/small_n.csv --prices jobs/stats/synthetic_prices.yaml \\
        --reference ref --trials 20
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from jobs.reproduce_paper import DEFAULT_PRICES, DEFAULT_STATS, DEFAULT_TARGETS
from smart_spark.catalogue import ModelCatalogue
from smart_spark.paper.ceiling import savings_ceiling, told_in_advance_plan
from smart_spark.paper.simulation import load_profile_stats, run_trial


def _run(job) -> dict:
    dataset, target, confidence, seed = job
    row = run_trial(dataset, target, "mix", confidence, seed)
    reference_cost = row["reference_cost"]
    unit = dataset.reference.unit_cost
    profiled_reference = row["profiled"] * unit
    extra = row["pilot_extra"] + row["confirm_extra"]
    return {
        "dataset": dataset.name,
        "accuracy_target": round(target, 2),
        "N": dataset.n_items,
        "pilot rows": row["pilot_rows"],
        "confirm rows": row["confirm_rows"],
        "pilot+": row["pilot_extra"] / reference_cost,
        "confirm+": row["confirm_extra"] / reference_cost,
        "profiled": profiled_reference / reference_cost,
        "rest": (row["cost"] - row["profile_cost"]) / reference_cost,
        "total": row["cost"] / reference_cost,
        "check": (row["profile_cost"] - extra - profiled_reference) / reference_cost,
        "miss": not row["satisfied"],
    }


def _choices(dataset, target: float, confidence: float) -> tuple[float, float, float, float, str, float]:
    """Cost shares of the ceiling and the told single look, the ceiling's ``T``, the told look's size and model,
    and its cost share with routing noise."""
    candidates = {m.name: (m.agreement, m.unit_cost) for m in dataset.candidates}
    reference_cost = dataset.reference.unit_cost
    ceiling = savings_ceiling(dataset.n_items, target, confidence, candidates, reference_cost)
    told, model, size = told_in_advance_plan(dataset.n_items, target, confidence, candidates, reference_cost)
    routed = told_in_advance_plan(dataset.n_items, target, confidence, candidates, reference_cost, routed=True)[0]
    return 1.0 / ceiling.savings, 1.0 / told, ceiling.profiled, size, model or "-", 1.0 / routed


def _gap_to_told(table: pd.DataFrame, datasets) -> None:
    """Split ``total - told`` into the pilot, the confirmation beyond the told look's rows, and the rest.

    The told look profiles ``told rows`` (reference plus its model) and sends
    the rest by its plan; ``gap pilot`` is everything the pilot paid,
    ``gap confirm`` the confirmation's cost minus the told look's profiling
    cost, ``gap rest`` the unprofiled rows' cost minus the told look's.
    """
    told_profiled = []
    for (name, _), row in table.iterrows():
        dataset = datasets[name]
        unit = {m.name: m.unit_cost for m in dataset.candidates}
        model_cost = unit.get(row["told model"], 0.0) / dataset.reference.unit_cost
        told_profiled.append(row["told rows"] * (1.0 + model_cost) / dataset.n_items)
    told_profiled = pd.Series(told_profiled, index=table.index)
    pilot_reference = table["pilot rows"] / table["N"]
    table["gap pilot"] = table["pilot+"] + pilot_reference
    table["gap confirm"] = table["confirm+"] + (table["profiled"] - pilot_reference) - told_profiled
    table["gap rest"] = table["rest"] - (table["told"] - told_profiled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", default=DEFAULT_STATS)
    parser.add_argument("--prices", default=DEFAULT_PRICES)
    parser.add_argument("--reference", default="gpt-4")
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--targets", nargs="+", type=float, default=DEFAULT_TARGETS)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    datasets = load_profile_stats(args.stats, ModelCatalogue.from_yaml(args.prices), reference=args.reference)
    chosen = [datasets[name] for name in (args.datasets or datasets)]
    jobs = [(d, t, args.confidence, seed) for d in chosen for t in args.targets for seed in range(args.trials)]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(_run, jobs, chunksize=4))
    else:
        rows = [_run(job) for job in jobs]
    table = pd.DataFrame(rows).groupby(["dataset", "accuracy_target"]).mean(numeric_only=True)
    choices = [_choices(datasets[name], target, args.confidence) for name, target in table.index]
    columns = ["ceiling", "told", "ceiling rows", "told rows", "told model", "told routed"]
    for position, column in enumerate(columns):
        table[column] = [c[position] for c in choices]
    table.insert(table.columns.get_loc("told") + 1, "mix / ceiling", table["ceiling"] / table["total"])
    _gap_to_told(table, datasets)
    pd.set_option("display.width", 200)
    print(table.drop(columns=["check"]).round(4).to_string())
    gaps = table[["gap pilot", "gap confirm", "gap rest"]].sum(axis=1)
    share = table[["gap pilot", "gap confirm", "gap rest"]].div(gaps, axis=0)
    print("\nshare of the gap to the told single look, mean over cells: "
          + ", ".join(f"{c[4:]} {v:.2f}" for c, v in share.mean().items())
          + f"; told / ceiling mean {(table['ceiling'] / table['told']).mean():.3f}; told routed / ceiling mean "
          f"{(table['ceiling'] / table['told routed']).mean():.3f} (lowest {(table['ceiling'] / table['told routed']).min():.3f});"
          f" mix / told routed mean {(table['told routed'] / table['total']).mean():.3f};"
          f" mix / ceiling mean {table['mix / ceiling'].mean():.3f} (lowest {table['mix / ceiling'].min():.3f})")
    print(f"\nlargest |bookkeeping residual| {table['check'].abs().max():.2e} (pilot+ + confirm+ + profiled + rest = total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
