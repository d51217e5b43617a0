"""Rebuild the SMART paper's simulation and compare methods on it.

    python -m jobs.reproduce_paper                       # the default grid, 10 trials
    python -m jobs.reproduce_paper --trials 3 --targets 0.9 --mode correlated
    python -m jobs.reproduce_paper --stats my_profile.csv --prices my_prices.yaml

Inputs: per-dataset model statistics shaped like the paper's
``smart_paper_profile_stats.csv`` (default: ``../shared/data/``) and prices
from a catalogue YAML (default: ``conf/paper_prices.yaml``, the paper's).
Output: one CSV row per run and a printed summary (mean savings per method
and violation rate per dataset and target, then mean and max savings of mix;
where ``conf/prototype_savings.csv`` has the research prototype's figure for a
cell, the ratio to it). ``--ceiling`` adds, per cell, the most any valid
procedure can expect to save there (``smart_spark.paper.ceiling``), so a
figure can be read against what is attainable with the promise held.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from smart_spark.catalogue import ModelCatalogue
from smart_spark.paper.ceiling import savings_ceiling, told_in_advance_savings
from smart_spark.engine.config import METHODS
from smart_spark.paper.simulation import MODES, load_profile_stats, run_trial

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATS = ROOT.parent / "shared" / "data" / "smart_paper_profile_stats.csv"
DEFAULT_PRICES = ROOT / "conf" / "paper_prices.yaml"
PROTOTYPE = ROOT / "conf" / "prototype_savings.csv"
DEFAULT_TARGETS = [round(0.80 + 0.02 * i, 2) for i in range(10)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", type=Path, default=DEFAULT_STATS, help="profile statistics CSV")
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES, help="catalogue YAML with the prices")
    parser.add_argument("--reference", default="gpt-4")
    parser.add_argument("--datasets", nargs="+", help="datasets to run (default: all in --stats)")
    parser.add_argument("--targets", nargs="+", type=float, default=DEFAULT_TARGETS)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="first trial seed")
    parser.add_argument("--mode", default="independent", choices=MODES)
    parser.add_argument("--workers", type=int, default=2, help="processes running trials")
    parser.add_argument("--out", type=Path, default=None, help="write every run to this CSV")
    parser.add_argument(
        "--ceiling", action="store_true", help="also print each cell's savings ceiling for valid procedures"
    )
    return parser.parse_args(argv)


def _run(job):
    dataset, target, method, confidence, seed, mode = job
    return run_trial(dataset, target, method, confidence, seed, mode)


def _ceiling(job) -> tuple[float, float]:
    dataset, target, confidence = job
    candidates = {m.name: (m.agreement, m.unit_cost) for m in dataset.candidates}
    reference_cost = dataset.reference.unit_cost
    return (
        savings_ceiling(dataset.n_items, target, confidence, candidates, reference_cost).savings,
        told_in_advance_savings(dataset.n_items, target, confidence, candidates, reference_cost),
    )


def ceilings(datasets, targets, confidence: float, workers: int) -> pd.DataFrame:
    """Per (dataset, accuracy_target): the savings ceiling and the told-in-advance single look."""
    jobs = [(d, t, confidence) for d in datasets for t in targets]
    with ProcessPoolExecutor(max(workers, 1)) as pool:
        values = list(pool.map(_ceiling, jobs))
    index = pd.MultiIndex.from_tuples([(d.name, round(t, 2)) for d, t, _ in jobs], names=["dataset", "accuracy_target"])
    return pd.DataFrame(values, index=index, columns=["ceiling", "told single look"])


def summarise(runs: pd.DataFrame, ceiling: pd.Series | None = None) -> str:
    """Per dataset and target: mean savings per method and violation rate; then mix overall."""
    table = runs.groupby(["dataset", "accuracy_target", "method"]).agg(
        savings=("savings", "mean"), violations=("satisfied", lambda s: 1.0 - s.mean())
    )
    wide = table["savings"].unstack("method")
    viol = table["violations"].unstack("method").add_prefix("miss ")
    out = _rounded_targets(pd.concat([wide, viol], axis=1))
    if ceiling is not None:
        out = out.join(ceiling, how="left")
        if "mix" in out:
            out["mix / ceiling"] = out["mix"] / out["ceiling"]
    lines = ["Mean savings (reference cost / cost) and violation rate per method:", out.round(3).to_string()]
    if "mix" in runs["method"].values:
        mix = runs[runs["method"] == "mix"].groupby(["dataset", "accuracy_target"])["savings"].mean()
        lines.append(f"\nmix: mean savings {mix.mean():.2f}x, max {mix.max():.2f}x over {len(mix)} cells")
        if ceiling is not None:
            ratio = out["mix / ceiling"]
            lines.append(f"mix / ceiling: lowest cell {ratio.min():.3f}, mean ratio {ratio.mean():.3f}")
        if PROTOTYPE.exists():
            lines.append(_against_prototype(mix, ceiling))
    return "\n".join(lines)


def _rounded_targets(table):
    """The same table with accuracy targets rounded to 2 digits, so cells from different sources join."""
    table = table.copy()
    table.index = table.index.set_levels(table.index.levels[1].astype(float).round(2), level=1)
    return table


def _against_prototype(mix: pd.Series, ceiling: pd.Series | None) -> str:
    proto = pd.read_csv(PROTOTYPE, comment="#").set_index(["dataset", "accuracy_target"])["savings"]
    both = pd.concat(
        [_rounded_targets(mix).rename("mix"), _rounded_targets(proto).rename("prototype")], axis=1, join="inner"
    )
    if both.empty:
        return "(no cell in common with the prototype's figures)"
    both["ratio"] = both["mix"] / both["prototype"]
    notes = ""
    if ceiling is not None:
        both = both.join(ceiling["ceiling"], how="left")
        both["0.95 proto <= ceiling"] = 0.95 * both["prototype"] <= both["ceiling"]
        beyond = int((~both["0.95 proto <= ceiling"]).sum())
        notes = (
            f"\n{beyond} cell(s) where 95% of the prototype's figure exceeds what any valid procedure"
            f" can expect (ceiling, smart_spark.paper.ceiling); mean ceiling over these cells {both['ceiling'].mean():.2f}x"
        )
    return (
        "\nmix against the research prototype (conf/prototype_savings.csv):\n"
        + both.round(2).to_string()
        + f"\nworst cell ratio {both['ratio'].min():.2f}; mean over these cells: mix "
        f"{both['mix'].mean():.2f}x vs prototype {both['prototype'].mean():.2f}x"
        + notes
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.stats.exists():
        print(f"error: statistics file not found: {args.stats}", file=sys.stderr)
        return 2
    prices = ModelCatalogue.from_yaml(args.prices)
    datasets = load_profile_stats(args.stats, prices, reference=args.reference)
    unknown = set(args.datasets or []) - set(datasets)
    if unknown:
        print(f"error: unknown dataset(s) {sorted(unknown)}; known: {sorted(datasets)}", file=sys.stderr)
        return 2
    chosen = [datasets[name] for name in (args.datasets or datasets)]
    jobs = [
        (dataset, target, method, args.confidence, args.seed + trial, args.mode)
        for dataset in chosen
        for target in args.targets
        for method in args.methods
        for trial in range(args.trials)
    ]
    started = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(_run, jobs, chunksize=4))
    else:
        rows = [_run(job) for job in jobs]
    elapsed = time.perf_counter() - started
    runs = pd.DataFrame(rows)
    runs["trial"] = runs["trial"] - args.seed
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        runs.to_csv(args.out, index=False)
    ceiling = ceilings(chosen, args.targets, args.confidence, args.workers) if args.ceiling else None
    print(summarise(runs, ceiling))
    print(f"\n{len(runs)} runs in {elapsed:.1f} s ({args.workers} worker processes, mode {args.mode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
