"""How much a valid procedure can save at most on a simulated dataset: a savings ceiling.

Why this exists: a savings figure only means something next to what is
attainable *with the promise held*. A procedure whose plans must reach the
target with probability ``confidence`` for every possible agreement rate has to
buy evidence before it routes items to a cheap model, and information theory
puts a floor under that cost.

The floor (Kaufmann, Cappé and Garivier 2016, Lemma 1; Garivier, Ménard and
Stoltz 2019): for any stopping rule ``T`` and any event ``E`` decided by then,

    E_P[T] * KL(P || Q) >= kl(P(E), Q(E))

where ``P`` is the true world, ``Q`` any other, ``KL`` the divergence of one
profiled item's observations and ``kl`` the binary divergence. Take ``E`` =
"the plan relies on the mix agreeing at rate >= l" and ``Q`` the nearest world
where it agrees less: a valid procedure has ``Q(E) <= alpha``, so
``P(E) <= G_T(l) = max{g : kl(g, alpha) <= E_P[T] * KL_min(l)}``. For a
profiling length ``T`` the cheapest plans are therefore at best those the
distribution ``G_T`` allows, and

    ceiling = N * c_ref / min_T [ T * c_profile + (N - T) * E_{G_T}[plan cost] ]

Scope and approximations, stated so the figure is read for what it is:

- the procedure is granted the true rates and commits to the best mix (one
  model, or a pair with its split on a 5% grid); a procedure that hedges
  between several mixes on different runs is not covered by the argument;
- profiling is charged only for the reference and the mix's models;
- routing noise is ignored (the large-N limit, where a plan relying on a rate
  just above the truth fails with probability near 1), and the remaining
  target is taken at the expected profiling length;
- a plan's cost is taken at the cheaper end of each level interval.

Within that scope no valid procedure can expect more, and a figure above the
ceiling was bought with a promise that does not hold.
Flags are independent across models in ``P``, as in the paper's simulation;
the nearest world ``Q`` may correlate them (``nearest_divergence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, product

import numpy as np

_LEVELS = 1500
_PROFILE_LENGTHS = 200
_SPLITS = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True)
class Ceiling:
    """The highest expected savings, and the mix and profiling length that reach it."""

    savings: float
    profiled: float
    models: tuple[str, ...]
    split: float  # share of the mix going to ``models[0]``


def binary_kl(p, q) -> np.ndarray:
    """kl(p, q) between Bernoulli(p) and Bernoulli(q), elementwise."""
    p = np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    q = np.clip(np.asarray(q, dtype=float), 1e-15, 1 - 1e-15)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def nearest_divergence(rates: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Least ``KL(P || Q)`` from independent flags with ``rates`` to a world whose mix is below each level.

    ``P`` lives on the agreement patterns of the mix's models (one profiled
    item); ``Q`` is any joint distribution with ``E_Q[weights @ flags] = l``.
    The minimiser is ``Q = P / (1 + lam (f - l))`` with ``lam`` the root of
    ``E_P[(f - l) / (1 + lam (f - l))] = 0`` (the empirical-likelihood dual),
    found by bisection. Levels at or above the true mix get 0 (``P`` itself is
    such a world); level 0 gets ``inf`` (no world has a negative rate).
    """
    rates = np.clip(np.asarray(rates, dtype=float), 1e-12, 1 - 1e-12)
    patterns = np.array(list(product((0.0, 1.0), repeat=len(rates))))  # (cells, models)
    prob = np.prod(np.where(patterns == 1.0, rates, 1 - rates), axis=1)
    gap = (patterns @ np.asarray(weights, dtype=float))[None, :] - np.asarray(levels, dtype=float)[:, None]
    lo = np.zeros(len(levels))
    hi = np.where(levels > 0, 1.0 / np.maximum(levels, 1e-300), 1.0) * (1 - 1e-12)
    for _ in range(100):
        mid = (lo + hi) / 2
        positive = (prob * gap / (1 + mid[:, None] * gap)).sum(axis=1) > 0
        lo, hi = np.where(positive, mid, lo), np.where(positive, hi, mid)
    divergence = (prob * np.log1p(lo[:, None] * gap)).sum(axis=1)
    below_truth = levels < prob @ (patterns @ np.asarray(weights, dtype=float))
    return np.where(levels <= 0.0, np.inf, np.where(below_truth, divergence, 0.0))


def largest_probability(budget: np.ndarray, alpha: float) -> np.ndarray:
    """Largest g >= alpha with kl(g, alpha) <= budget (kl is increasing there: interpolate)."""
    g = alpha + (1.0 - alpha) * (1.0 - np.geomspace(1e-9, 1.0, 20000))[::-1]
    return np.interp(budget, binary_kl(g, alpha), g, left=alpha, right=1.0)


def _best_for_mix(n_items, target, alpha, rates, weights, mix_cost, profile_cost) -> tuple[float, float]:
    """Lowest expected total cost (in reference-item units) for one mix; returns (cost, T)."""
    lengths = np.geomspace(1.0, n_items / 2, _PROFILE_LENGTHS)
    targets = (target * n_items - lengths) / (n_items - lengths)
    if np.any(targets <= 0):
        length = float(lengths[np.argmax(targets <= 0)])
        return length * profile_cost, length
    # Levels from 0 to the highest target, dense near the top where plans differ most.
    levels = targets.max() * (1.0 - np.geomspace(1e-6, 1.0, _LEVELS))[::-1]
    levels[0] = 0.0
    divergence = nearest_divergence(rates, weights, levels)
    certified = largest_probability(lengths[:, None] * divergence[None, :], alpha)  # G(l), (T, level)
    # A plan relying on level l sends share r(l) to the reference to reach the target.
    goal = targets[:, None]
    reference_share = np.clip((goal - levels[None, :]) / (1 - levels[None, :]), 0.0, 1.0)
    plan_cost = (1 - reference_share) * mix_cost + reference_share
    # P(level in [l_k, l_k+1)) = G(l_k) - G(l_k+1), charged at the cheaper end l_k+1;
    # G(l_0 = 0) = 1, and the top level's mass goes to the mix alone.
    mass = certified - np.concatenate([certified[:, 1:], np.zeros((len(lengths), 1))], axis=1)
    cheaper_end = np.concatenate([plan_cost[:, 1:], np.full((len(lengths), 1), mix_cost)], axis=1)
    totals = lengths * profile_cost + (n_items - lengths) * (mass * cheaper_end).sum(axis=1)
    best = int(np.argmin(totals))
    return float(totals[best]), float(lengths[best])


def savings_ceiling(
    n_items: int,
    accuracy_target: float,
    confidence: float,
    candidates: dict[str, tuple[float, float]],
    reference_cost: float,
) -> Ceiling:
    """Highest expected savings of a valid procedure that knows the best mix (see module doc).

    ``candidates`` maps a model name to ``(agreement rate, cost per item)``;
    mixes of one model or of two (split on a 5% grid) are tried, and the best
    is returned.
    """
    alpha = 1.0 - confidence
    names = [m for m, (_, cost) in candidates.items() if cost < reference_cost]
    best_cost, best = float(n_items), Ceiling(1.0, 0.0, (), 1.0)
    mixes = [((m,), np.array([1.0])) for m in names]
    mixes += [((a, b), np.array([x, 1 - x])) for a, b in combinations(names, 2) for x in _SPLITS[1:-1]]
    for models, weights in mixes:
        rates = np.array([candidates[m][0] for m in models])
        costs = np.array([candidates[m][1] for m in models]) / reference_cost
        cost, length = _best_for_mix(
            n_items, accuracy_target, alpha, rates, weights, float(costs @ weights), 1.0 + costs.sum()
        )
        if cost < best_cost:
            best_cost, best = cost, Ceiling(n_items / cost, length, models, float(weights[0]))
    return best


def told_in_advance_savings(
    n_items: int,
    accuracy_target: float,
    confidence: float,
    candidates: dict[str, tuple[float, float]],
    reference_cost: float,
) -> float:
    """Savings of a procedure told in advance which single model to use, with one look.

    It knows the model (but not its data): no pilot, one confirmation of ``n``
    items at the full error budget, then that model on the share ``x`` of the
    rest that its Clopper-Pearson bound allows (``x L + (1 - x) >= t'``), the
    reference on the others. The expected-count bound stands in for the
    expectation over confirmation outcomes. Best model and ``n`` are chosen with
    hindsight; a valid procedure that is not told cannot expect to beat it by
    much, so it is the practical reference point next to the (looser) ceiling.
    """
    return told_in_advance_plan(n_items, accuracy_target, confidence, candidates, reference_cost)[0]


def told_in_advance_plan(
    n_items: int,
    accuracy_target: float,
    confidence: float,
    candidates: dict[str, tuple[float, float]],
    reference_cost: float,
    routed: bool = False,
) -> tuple[float, str | None, int]:
    """:func:`told_in_advance_savings` with its choice: ``(savings, model, confirmation size)``.

    ``model`` is None (size 0) when the reference alone is cheapest.
    ``routed``: take the bound at the effective size of the routed group
    (``bounds.group_lower``, the share found by bisection), as a valid plan
    must when its rows are a random part of the rest; without it the told look
    ignores the routing noise and is optimistic at small N.
    """
    from smart_spark.engine.bounds import cp_lower, group_lower

    alpha = 1.0 - confidence
    full = n_items * reference_cost
    best, choice = full, (None, 0)
    sizes = np.unique(np.geomspace(10, max(n_items - 1, 10), 80).astype(int))
    sizes = sizes[sizes < n_items]
    for name, (rate, cost) in candidates.items():
        if cost >= reference_cost or not len(sizes):
            continue
        lower = cp_lower(np.round(rate * sizes), sizes, alpha)
        left = n_items - sizes
        target_left = np.clip((accuracy_target * n_items - sizes) / left, 0.0, 1.0)
        share = np.where(lower >= target_left, 1.0, (1 - target_left) / np.maximum(1 - lower, 1e-12))
        share = np.clip(share, 0.0, 1.0)
        if routed:
            share = routed_share(np.round(rate * sizes), sizes, alpha, left, target_left, share, group_lower)
        total = sizes * (reference_cost + cost) + left * (share * cost + (1 - share) * reference_cost)
        if float(total.min()) < best:
            best, choice = float(total.min()), (name, int(sizes[int(np.argmin(total))]))
    return (full / best if best > 0 else float("inf")), choice[0], choice[1]


def routed_share(agreements, sizes, alpha, left, target_left, upper, group_lower) -> np.ndarray:
    """Largest share ``x <= upper`` with ``x L(x R) + (1 - x) >= t'``, ``L`` at the routed group's size (bisection)."""
    lo, hi = np.zeros_like(upper), np.asarray(upper, dtype=float)
    for _ in range(40):
        mid = (lo + hi) / 2
        lower = group_lower(agreements, sizes, alpha, np.maximum(mid * left, 1.0), left)
        ok = mid * lower + (1 - mid) >= target_left - 1e-12
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    lower = group_lower(agreements, sizes, alpha, np.maximum(hi * left, 1.0), left)
    return np.where(hi * lower + (1 - hi) >= target_left - 1e-12, hi, lo)
