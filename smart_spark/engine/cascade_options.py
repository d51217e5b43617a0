"""Cascades as options of the mix planner, beside plain models, under one promise.

A cascade option ``model@t`` answers a row with ``model`` and keeps the answer
when its confidence is at least ``t``, else asks the reference. With ``t``
fixed, whether the option's final answer equals the reference's is a fixed
property of the row (kept and agreeing, or escalated), exactly like a plain
model's agreement flag, and its cost per row is the cheap call plus the
reference on escalated rows. So a cascade with a fixed threshold *is* a model
to the mix planner, and the plain mix's guarantee covers it unchanged.

The threshold must not be chosen from the rows its bound is computed on: the
profiled sample (uniform, in random order) is split into a pilot prefix, on
which each cascade's threshold is chosen (the one whose point-estimated mix
with the reference is cheapest), and the confirmation rows after it, on which
every option's agreement is counted. Every option (plain models and cascades)
gets an equal share of the error budget ``1 - confidence`` fixed before the
sample is seen (union bound), and the planner (``engine._mix``: the cheapest
mix meeting the remaining target, with bounds for the routed group sizes)
picks shares of the unprofiled rows. Profiled rows keep the reference's answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Mapping

import numpy as np

from smart_spark.engine.bounds import cp_lower, cp_upper
from smart_spark.engine.planner import MixSolution
from smart_spark.engine.profiler import ModelStats


@dataclass(frozen=True)
class CascadeOptionSpec:
    """A cascade option of the plan: ``model``'s answer kept at confidence >= ``threshold``."""

    name: str
    model: str
    threshold: float


def cascade_flags(confidence: np.ndarray, agrees: np.ndarray, threshold: float) -> np.ndarray:
    """Per row: the cascade's final answer equals the reference's (escalated rows always do)."""
    return (np.asarray(confidence) < threshold) | np.asarray(agrees, dtype=bool)


def cascade_unit_cost(confidence: np.ndarray, threshold: float, cheap_cost: float, reference_cost: float) -> float:
    """Expected cost per row: the cheap call always, the reference where the answer is escalated."""
    kept = float(np.mean(np.asarray(confidence) >= threshold)) if len(confidence) else 0.0
    return cheap_cost + (1.0 - kept) * reference_cost


def pick_threshold(confidence: np.ndarray, agrees: np.ndarray, cheap_cost: float, reference_cost: float,
                   target: float) -> float:
    """On pilot rows: the threshold whose point-estimated mix with the reference costs least.

    A cascade at agreement ``a`` and cost ``c_t`` mixed with the reference needs
    the share ``x = (1 - target) / (1 - a)`` (all rows when ``a >= target``).
    """
    confidence = np.asarray(confidence, dtype=float)
    best, best_cost = math.inf, reference_cost
    for t in np.unique(confidence[np.isfinite(confidence)]):
        a = float(np.mean(cascade_flags(confidence, agrees, t)))
        c_t = cascade_unit_cost(confidence, t, cheap_cost, reference_cost)
        x = 1.0 if a >= target else (1.0 - target) / (1.0 - a)
        cost = x * c_t + (1.0 - x) * reference_cost
        if cost < best_cost:
            best, best_cost = float(t), cost
    return best


def plan_with_cascade_options(
    agrees: Mapping[str, np.ndarray],
    confidences: Mapping[str, np.ndarray],
    unit_costs: Mapping[str, float],
    *,
    reference: str,
    n_total: int,
    accuracy_target: float,
    confidence: float,
    pilot_size: int,
    solver: str = "enumerate",
) -> tuple[MixSolution, dict[str, CascadeOptionSpec]]:
    """The cheapest mix of plain models and cascades on the unprofiled rows (see the module doc).

    ``agrees[model]``: per profiled row, in profiling order, whether the model
    agreed with the reference; ``confidences[model]``: the model's confidence
    per profiled row (models without log-probabilities are absent). All
    profiled rows are exact; the returned shares are of the ``n_total - n``
    unprofiled rows, and the option names of cascades are ``model@threshold``.
    """
    from smart_spark.engine.engine import _mix

    n = len(next(iter(agrees.values())))
    if not 0 < pilot_size < n:
        raise ValueError(f"pilot_size must be in 1..{n - 1}, got {pilot_size}")
    confirm = slice(pilot_size, n)
    flags: dict[str, np.ndarray] = {m: np.asarray(a, dtype=bool) for m, a in agrees.items() if m != reference}
    costs = {m: float(unit_costs[m]) for m in flags}
    cascades: dict[str, CascadeOptionSpec] = {}
    for model, conf in confidences.items():
        conf = np.asarray(conf, dtype=float)
        t = pick_threshold(conf[:pilot_size], flags[model][:pilot_size], unit_costs[model],
                           unit_costs[reference], accuracy_target)
        if not math.isfinite(t):
            continue
        name = f"{model}@{t:.6g}"
        cascades[name] = CascadeOptionSpec(name, model, t)
        flags[name] = cascade_flags(conf, flags[model], t)
        costs[name] = cascade_unit_cost(conf[confirm], t, unit_costs[model], unit_costs[reference])
    budget = 1.0 - confidence
    alpha = budget / max(1, len(flags))
    n_confirm = n - pilot_size
    stats = []
    for name, f in flags.items():
        k = int(f[confirm].sum())
        stats.append(ModelStats(model=name, n=n_confirm, agreements=k,
                                lower=float(cp_lower(k, n_confirm, alpha)), upper=float(cp_upper(k, n_confirm, alpha)),
                                unit_cost=costs[name], status="satisfied", alpha=alpha, level=alpha))
    remaining = n_total - n
    if remaining <= 0:
        return MixSolution({reference: 1.0}, bounds={reference: 1.0}), cascades
    target = (accuracy_target * n_total - n) / remaining
    if target <= 0:
        cheapest = min(costs, key=costs.get)
        return MixSolution({cheapest: 1.0}, cost_per_item=costs[cheapest]), cascades
    cheaper = [s for s in stats if s.unit_cost < unit_costs[reference]]
    if not cheaper:
        return MixSolution({reference: 1.0}, bounds={reference: 1.0}), cascades
    profile = SimpleNamespace(n_remaining=remaining, reference=reference,
                              stats={reference: SimpleNamespace(unit_cost=float(unit_costs[reference]))})
    return _mix(profile, cheaper, target, budget, solver), cascades
