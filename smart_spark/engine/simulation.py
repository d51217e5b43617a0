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
does), runs the engine, routes the remaining items at random with the plan's
shares (the hash routing with a fresh seed is exactly that) and measures the
realised agreement over all ``N`` items and the money spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smart_spark.catalogue import ModelCatalogue
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.engine import SmartEngine
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


def run_trial(
    dataset: SimDataset,
    accuracy_target: float,
    method: str = "mix",
    confidence: float = 0.95,
    seed: int = 0,
    mode: str = "independent",
    solver: str = "cbc",
    pilot_size: int | None = None,
) -> dict:
    """One simulated SMART run; returns cost, savings and realised agreement."""
    rng = np.random.default_rng(seed)
    flags = make_population(dataset, mode, rng)
    pool = rng.permutation(dataset.n_items)
    names = [m.name for m in dataset.candidates]
    index = {name: i for i, name in enumerate(names)}
    cost_of = {m.name: m.unit_cost for m in dataset.models}

    def answer_source(model: str, positions) -> AnswerArrays:
        items = pool[np.asarray(positions, dtype=np.int64)]
        keys = flags[index[model], items] if model in index else np.ones(len(items), dtype=bool)
        return AnswerArrays(keys=keys, costs=np.full(len(items), cost_of[model]), ok=np.ones(len(items), dtype=bool))

    config = SmartConfig(accuracy_target, confidence, method, seed=seed, pilot_size=pilot_size, batch_size=4096)
    engine = SmartEngine(config, [*names, dataset.reference.name], dataset.reference.name, solver=solver, max_parallel_models=1)
    result = engine.run(dataset.n_items, dataset.n_items, answer_source)
    profile, plan = result.profile, result.plan

    remaining = pool[profile.n_profiled:]
    plan_models = list(plan.fractions)
    shares = np.array([plan.fractions[m] for m in plan_models])
    routed = rng.choice(len(plan_models), size=len(remaining), p=shares / shares.sum())
    agreements = profile.n_profiled
    cost = profile.spent
    for k, model in enumerate(plan_models):
        items = remaining[routed == k]
        agreements += len(items) if model not in index else int(flags[index[model], items].sum())
        cost += len(items) * cost_of[model]
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
        "plan": ";".join(f"{m}={plan.fractions[m]:.3f}" for m in plan.models_by_cost),
    }
