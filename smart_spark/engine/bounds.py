"""Confidence bounds on a model's agreement rate with the reference.

Method: exact one-sided Clopper-Pearson bounds, computed on *confirmation
items at looks whose sizes and error shares were fixed before any of them was
seen*.

Why this stays valid when profiling stops adaptively: the profiler works in two
stages (see ``profiler.py``). A pilot sample decides everything adaptive — which
models are worth confirming, how the error budget is split between them, the
planned confirmation size and so the look sizes (the pays-off rule). The bounds
the plan relies on are then computed only from the fresh confirmation items.
A model's share ``alpha_i`` is spent across its looks (``payoff.LOOK_WEIGHTS``,
alpha spending, each share scaled up by the factor the looks' correlation allows,
``looks.py``), so the bound at whichever look profiling stops holds with
probability at least ``1 - alpha_i`` however the stopping look is chosen; the
prototype checked a two-sided interval every 10 items and stopped at the first
success, whose real error rate exceeds the nominal one. Because the split
``alpha_i`` is decided on pilot data too, the union (Bonferroni) bound over the
models a plan uses, ``sum(alpha_i) <= 1 - confidence``, holds without any
independence assumption.

The plan needs the agreement of a model on *the items routed to it* (a random
subset of the remaining items), not on the whole population. The confirmation
sample and the routed group are two disjoint random subsets, so the error of
the estimate has variance ``p(1-p) (1/n + 1/m)``; we account for it by
computing the bound at the effective sample size ``n m / (n + m)``.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def cp_lower(agreements, n, alpha):
    """One-sided exact (Clopper-Pearson) lower bound at level ``1 - alpha``.

    Vectorised over numpy arrays; non-integer counts (effective sample sizes)
    use the continuous extension of the beta quantile. ``n == 0`` gives 0.
    """
    k = np.asarray(agreements, dtype=float)
    n = np.asarray(n, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = special.betaincinv(k, n - k + 1.0, alpha)
    bound = np.where((k <= 0) | (n <= 0), 0.0, bound)
    return np.clip(np.nan_to_num(bound, nan=0.0), 0.0, 1.0)


def approx_lower(agreements, n, alpha):
    """Fast approximation of :func:`cp_lower` (Wilson score bound) for look-ahead.

    Only the pays-off rule uses it, to *predict* bounds over many scenarios and
    sizes; no bound that a plan relies on is ever computed with it.
    """
    k = np.asarray(agreements, dtype=float)
    n = np.asarray(n, dtype=float)
    z = special.ndtri(1.0 - np.asarray(alpha, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        z2n = z * z / n
        centre = p + z2n / 2
        spread = z * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
        bound = (centre - spread) / (1 + z2n)
    return np.clip(np.nan_to_num(np.where(n > 0, bound, 0.0), nan=0.0), 0.0, 1.0)


def cp_upper(agreements, n, alpha):
    """One-sided exact (Clopper-Pearson) upper bound at level ``1 - alpha``."""
    k = np.asarray(agreements, dtype=float)
    n = np.asarray(n, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = special.betaincinv(k + 1.0, n - k, 1.0 - alpha)
    bound = np.where((k >= n) | (n <= 0), 1.0, bound)
    return np.clip(np.nan_to_num(bound, nan=1.0), 0.0, 1.0)


def effective_size(n, group_size):
    """Sample size that carries the extra noise of a routed group of ``group_size``.

    ``1/n_eff = 1/n + 1/m``: the estimate comes from ``n`` items, the promise is
    about ``m`` other items. ``group_size`` of ``inf`` (or a whole population
    that is the remaining items themselves, see ``group_lower``) gives ``n``.
    """
    n = np.asarray(n, dtype=float)
    m = np.asarray(group_size, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isinf(m), n, n * m / np.maximum(n + m, 1e-12))


def group_lower(agreements, n, alpha, group_size, remaining):
    """Lower bound on the agreement rate within a routed group of the remaining items.

    When the group is all remaining items (``group_size >= remaining``), the
    group's rate is the remaining items' rate; a sample without replacement from
    a finite population is at least as concentrated as the binomial, and the
    remaining items are the complement of a random sample, so we use the
    effective size with ``m = remaining`` (covers the finite-population
    difference between sample and complement).
    """
    m = np.minimum(np.asarray(group_size, dtype=float), np.asarray(remaining, dtype=float))
    n_eff = effective_size(n, m)
    n = np.asarray(n, dtype=float)
    scale = np.divide(n_eff, n, out=np.zeros_like(n_eff), where=n > 0)
    return cp_lower(np.asarray(agreements, dtype=float) * scale, n_eff, alpha)
