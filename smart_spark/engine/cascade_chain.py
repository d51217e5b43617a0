"""Chains of cascades: ``A@t1 -> B@t2 -> reference`` as one more option of the mix planner.

A row routed to the chain asks ``A``; ``A``'s answer is kept when its
confidence is at or above ``t1``; otherwise ``B`` is asked and its answer kept
at confidence ``>= t2``; otherwise the reference answers. A failed call or an
answer without a confidence is never kept (it goes on, like a low confidence).

Why it is one more option under the same promise: with ``(t1, t2)`` fixed,
whether the chain's final answer equals the reference's is a fixed property of
each row (kept by ``A`` and agreeing, or kept by ``B`` and agreeing, or sent to
the reference), exactly like a plain model's agreement flag, and its cost per
row is ``A + B`` on the rows ``A`` passes on ``+ reference`` on the rows ``B``
passes on. So the mix planner's bound covers it unchanged, provided the
thresholds are fixed before the rows its bound is counted on are seen: they are
chosen on pilot rows only (:func:`pick_chain_thresholds`: the pair whose
point-estimated mix with the reference costs least, from a grid of confidence
quantiles), which costs no multiplicity on the confirmation rows after them.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

#: Separates the models of a chain in its option name (``"A>B"``).
CHAIN_SEPARATOR = ">"
#: Confidence quantiles each step's threshold is chosen from (on the pilot rows).
QUANTILE_GRID = tuple(np.linspace(0.0, 0.95, 20))

Steps = tuple[tuple[str, float], ...]


def chain_name(models: Sequence[str]) -> str:
    """The option name of a chain of ``models`` (in the order they are asked)."""
    return CHAIN_SEPARATOR.join(models)


def answered_by(confidences: Sequence[np.ndarray], thresholds: Sequence[float]) -> np.ndarray:
    """Per row, the index of the step whose answer is kept (``len(thresholds)``: the reference's)."""
    n = len(confidences[0])
    step = np.full(n, len(thresholds), dtype=np.int64)
    open_rows = np.ones(n, dtype=bool)
    for index, (confidence, threshold) in enumerate(zip(confidences, thresholds)):
        kept = open_rows & (np.asarray(confidence, dtype=float) >= threshold)
        step[kept] = index
        open_rows &= ~kept
    return step


def chain_flags(confidences: Sequence[np.ndarray], agrees: Sequence[np.ndarray],
                thresholds: Sequence[float]) -> np.ndarray:
    """Per row: the chain's final answer equals the reference's (a row sent to the reference always does)."""
    step = answered_by(confidences, thresholds)
    flags = step == len(thresholds)
    for index, agree in enumerate(agrees):
        flags |= (step == index) & np.asarray(agree, dtype=bool)
    return flags


def chain_row_costs(step: np.ndarray, costs: Sequence[float], reference_cost: float) -> np.ndarray:
    """Per row: every step asked (up to the one kept) plus the reference where no step kept the row."""
    out = np.zeros(step.size, dtype=float)
    for index, cost in enumerate(costs):
        out += cost * (step >= index)
    return out + reference_cost * (step == len(costs))


def mix_cost_with_reference(agreement: float, unit_cost: float, reference_cost: float, target: float) -> float:
    """Cost per row of the option mixed with the reference to reach ``target`` at its point estimate."""
    share = 1.0 if agreement >= target else (1.0 - target) / (1.0 - agreement)
    return share * unit_cost + (1.0 - share) * reference_cost


def threshold_grid(confidence: np.ndarray) -> np.ndarray:
    """Candidate thresholds of one step: quantiles of its finite confidences (empty: none finite)."""
    finite = np.asarray(confidence, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return finite
    return np.unique(np.quantile(finite, QUANTILE_GRID, method="lower"))


def pick_chain_thresholds(confidences: Sequence[np.ndarray], agrees: Sequence[np.ndarray], costs: Sequence[float],
                          reference_cost: float, target: float) -> tuple[float, ...] | None:
    """On pilot rows: the thresholds whose point-estimated mix with the reference costs least.

    None when no pair on the grid is expected to cost less than the reference
    alone (the chain is then not offered).
    """
    grids = [threshold_grid(c) for c in confidences]
    if any(not g.size for g in grids):
        return None
    best, best_cost = None, reference_cost
    for thresholds in itertools.product(*grids):
        step = answered_by(confidences, thresholds)
        agreement = float(np.mean(chain_flags(confidences, agrees, thresholds)))
        unit_cost = float(np.mean(chain_row_costs(step, costs, reference_cost)))
        cost = mix_cost_with_reference(agreement, unit_cost, reference_cost, target)
        if cost < best_cost - 1e-15:
            best, best_cost = tuple(float(t) for t in thresholds), cost
    return best


def describe(steps: Steps) -> str:
    """``"A@0.91 -> B@0.8 -> reference"`` for logs."""
    return " -> ".join(f"{m}@{t:.6g}" for m, t in steps) + " -> reference"
