"""Simulated datasets and trials: the guarantee and the savings, measured.

A simulated dataset is a finite population of ``N`` items with *fixed*
per-item agreement flags per candidate (exactly ``round(p N)`` agreements for a
model of rate ``p``). Three ways to lay the flags out:

- ``independent``: each model's agreements placed at random, independently
  (the paper's setting);
- ``correlated``: items have a difficulty; a model fails on the hardest items
  plus noise, so several models fail on the same items;
- ``sorted``: correlated flags with the disagreements bunched at the start (or,
  on odd seeds, the end) of the input order, as in data sorted by some column.

A trial draws the profiling pool uniformly at random (as the Spark operator
does), runs the engine, routes the remaining items with the production hash
(``Plan.route``'s ``stable_unit_hash``, vectorised and cached per N), escalates
failed calls along ``Plan.escalation`` and measures the realised agreement over
all ``N`` items and the money spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.engine import SmartEngine
from smart_spark.engine.plan import split_unit_hash, stable_unit_hash
from smart_spark.engine.profiler import AnswerArrays

MODES = ("independent", "correlated", "sorted")


@dataclass(frozen=True)
class SimModel:
    name: str
    agreement: float
    unit_cost: float


@dataclass(frozen=True)
class SimDataset:
    """A dataset to simulate: N items, the reference and candidates with true rates and costs."""

    name: str
    n_items: int
    reference: SimModel
    candidates: tuple[SimModel, ...]

    @property
    def models(self) -> list[SimModel]:
        return [*self.candidates, self.reference]


def load_profile_stats(stats_csv: str | Path, prices: ModelCatalogue, reference: str = "gpt-4") -> dict[str, SimDataset]:
    """Datasets from a file shaped like the paper's ``smart_paper_profile_stats.csv``.

    Unit cost per item = mean tokens per processed item times the catalogue
    prices; agreement = the ``conformity`` column.
    """
    table = pd.read_csv(stats_csv)
    required = {"dataset", "nr_items", "model", "nr_prompt_tokens", "nr_completion_tokens", "nr_processed", "conformity"}
    missing = required - set(table.columns)
    if missing:
        raise ValueError(f"{stats_csv}: missing column(s) {sorted(missing)}")
    datasets = {}
    for name, rows in table.groupby("dataset", sort=False):
        models = []
        for row in rows.itertuples():
            spec = prices.require(row.model, role="model in the profile statistics")
            per_item = spec.cost(row.nr_prompt_tokens / row.nr_processed, row.nr_completion_tokens / row.nr_processed)
            models.append(SimModel(row.model, float(row.conformity), per_item))
        by_name = {m.name: m for m in models}
        if reference not in by_name:
            raise ValueError(f"{stats_csv}: dataset {name!r} has no row for the reference {reference!r}")
        datasets[str(name)] = SimDataset(
            str(name),
            int(rows["nr_items"].iloc[0]),
            by_name[reference],
            tuple(m for m in models if m.name != reference),
        )
    return datasets


def make_population(dataset: SimDataset, mode: str, rng: np.random.Generator, correlation: float = 0.8) -> np.ndarray:
    """Agreement flags, shape (candidates, N), with exactly round(p N) ones per model."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n = dataset.n_items
    flags = np.zeros((len(dataset.candidates), n), dtype=bool)
    if mode == "independent":
        for i, model in enumerate(dataset.candidates):
            flags[i, rng.permutation(n)[: int(round(model.agreement * n))]] = True
        return flags
    difficulty = rng.random(n)
    for i, model in enumerate(dataset.candidates):
        score = correlation * difficulty + (1 - correlation) * rng.random(n)
        easiest = np.argsort(score)[: int(round(model.agreement * n))]
        flags[i, easiest] = True
    if mode == "sorted":
        order = np.argsort(-difficulty if rng.integers(2) else difficulty)
        flags = flags[:, order]
    return flags


Population = Callable[[SimDataset, str, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def flags_without_failures(dataset: SimDataset, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The default population: agreement flags and no failed calls."""
    flags = make_population(dataset, mode, rng)
    return flags, np.zeros_like(flags)


@lru_cache(maxsize=8)
def item_units(n_items: int, seed: int) -> np.ndarray:
    """``stable_unit_hash(str(item), seed)`` for every item, computed once per (N, seed).

    Items are keyed by their index, as the Spark operator keys rows by their
    id; trials then route with the production hash at the production seed,
    while the random pool and population make each trial's routing fresh.
    """
    return np.fromiter((stable_unit_hash(str(i), seed) for i in range(n_items)), dtype=float, count=n_items)


@lru_cache(maxsize=8)
def item_split_units(n_items: int, seed: int) -> np.ndarray:
    """``split_unit_hash(str(item), seed)`` for every item: which member of a blend a row goes to."""
    return np.fromiter((split_unit_hash(str(i), seed) for i in range(n_items)), dtype=float, count=n_items)


def escalation_case(n_items: int = 100_000, reference_cost: float = 1.0) -> tuple[SimDataset, Population]:
    """Issue 10's constructed escalation case.

    Model A (cost 0.01) fails on 8 % of rows and agrees on 88 % of the others;
    model B (cost 0.10) is wrong on exactly A's failed rows (agreement 0.92).
    Before failed calls counted as disagreements, the plan sent A's failures to
    B, whose agreement on those rows was never measured.
    """
    dataset = SimDataset(
        "escalation",
        n_items,
        SimModel("reference", 1.0, reference_cost),
        (SimModel("A", 0.92 * 0.88, 0.01), SimModel("B", 0.92, 0.10)),
    )

    def population(dataset: SimDataset, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = dataset.n_items
        order = rng.permutation(n)
        fails_a = np.zeros(n, dtype=bool)
        fails_a[order[: int(round(0.08 * n))]] = True
        working = order[int(round(0.08 * n)):]
        flags = np.zeros((2, n), dtype=bool)
        flags[0, rng.permutation(working)[: int(round(0.88 * len(working)))]] = True
        flags[1] = ~fails_a
        failures = np.zeros((2, n), dtype=bool)
        failures[0] = fails_a
        return flags, failures

    return dataset, population


def run_trial(
    dataset: SimDataset,
    accuracy_target: float,
    method: str = "mix",
    confidence: float = 0.95,
    seed: int = 0,
    mode: str = "independent",
    solver: str = "cbc",
    pilot_size: int | None = None,
    population: Population = flags_without_failures,
    routing_seed: int = 0,
) -> dict:
    """One simulated SMART run; returns cost, savings and realised agreement.

    ``population`` gives the agreement flags and failed calls (both shaped
    (candidates, N)); a failed call costs nothing, counts as a disagreement
    while profiling, and in the apply phase escalates along
    ``Plan.escalation`` exactly as the operator does. The remaining items are
    routed with ``Plan.route``'s hash (``stable_unit_hash`` at ``routing_seed``,
    the operator's default seed 0).
    """
    rng = np.random.default_rng(seed)
    flags, failures = population(dataset, mode, rng)
    pool = rng.permutation(dataset.n_items)
    names = [m.name for m in dataset.candidates]
    index = {name: i for i, name in enumerate(names)}
    cost_of = {m.name: m.unit_cost for m in dataset.models}

    def answer_source(model: str, positions) -> AnswerArrays:
        items = pool[np.asarray(positions, dtype=np.int64)]
        if model not in index:
            ok = np.ones(len(items), dtype=bool)
            return AnswerArrays(keys=ok, costs=np.full(len(items), cost_of[model]), ok=ok)
        ok = ~failures[index[model], items]
        return AnswerArrays(keys=flags[index[model], items], costs=np.where(ok, cost_of[model], 0.0), ok=ok)

    config = SmartConfig(accuracy_target, confidence, method, seed=routing_seed, pilot_size=pilot_size, batch_size=4096)
    engine = SmartEngine(
        config, [*names, dataset.reference.name], dataset.reference.name, solver=solver,
        max_parallel_models=1, prices=cost_of, row_keys=lambda positions: [str(i) for i in pool[np.asarray(positions)]],
    )
    result = engine.run(dataset.n_items, dataset.n_items, answer_source)
    profile, plan = result.profile, result.plan

    remaining = pool[profile.n_profiled:]
    ordered = sorted(plan.fractions)
    split = item_split_units(dataset.n_items, plan.seed)[remaining] if plan.blend else None
    routed = plan.route_units(item_units(dataset.n_items, plan.seed)[remaining], split)
    agreements = profile.n_profiled
    cost = profile.spent
    escalated = 0
    for k, model in enumerate(ordered):
        items = remaining[routed == k]
        for attempt in [model, *plan.escalation(model)]:
            if attempt not in index:  # the reference answers, and agrees with itself
                agreements += len(items)
                cost += len(items) * cost_of[attempt]
                break
            failed = failures[index[attempt], items]
            answered = items[~failed]
            agreements += int(flags[index[attempt], answered].sum())
            cost += len(answered) * cost_of[attempt]
            items = items[failed]
            escalated += len(items)
            if not len(items):
                break
    reference_cost = dataset.n_items * dataset.reference.unit_cost
    agreement = agreements / dataset.n_items
    return {
        "dataset": dataset.name,
        "accuracy_target": accuracy_target,
        "method": method,
        "mode": mode,
        "trial": seed,
        "cost": cost,
        "reference_cost": reference_cost,
        "savings": reference_cost / cost if cost > 0 else float("inf"),
        "agreement": agreement,
        "satisfied": agreement >= accuracy_target - 1e-12,
        "profiled": profile.n_profiled,
        "profile_cost": profile.spent,
        **_profile_breakdown(profile, dataset.reference.unit_cost),
        "escalated": escalated,
        "plan": ";".join(f"{m}={plan.fractions[m]:.3f}" for m in plan.models_by_cost) + (" (blend)" if plan.blend else ""),
        "reason": plan.reason,
    }


def _profile_breakdown(profile, reference_cost: float) -> dict:
    """Where profiling's money went: pilot and confirmation rows, and the candidates' calls on them.

    The reference's calls on profiled rows answer those rows (they would be paid
    anyway on a reference-only run); the candidates' calls are profiling's extra.
    """
    pilot = int(min(profile.pilot_size, len(profile.item_costs)))
    pilot_cost = float(profile.item_costs[:pilot].sum())
    confirm_cost = float(profile.item_costs[pilot:].sum())
    confirm_rows = len(profile.item_costs) - pilot
    return {
        "pilot_rows": pilot,
        "pilot_extra": pilot_cost - pilot * reference_cost,
        "confirm_rows": confirm_rows,
        "confirm_extra": confirm_cost - confirm_rows * reference_cost,
    }
