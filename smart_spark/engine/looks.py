"""How much more of a model's error budget each confirmation look may spend, looks being correlated.

Profiling looks at a model's confirmation counts at several sizes fixed after
the pilot (``payoff.look_schedule``) and spends a share ``w_k`` of the model's
budget ``alpha`` at look ``k``, so that whichever look profiling stops at, its
bound holds with probability ``>= 1 - alpha``. Splitting ``alpha`` by the
shares is the union (Bonferroni) bound: valid whatever the looks' dependence,
but the looks are nested samples of the same rows, strongly correlated (the
counts at ``n_j`` are part of those at ``n_k``), so the union of their failures
is much less likely than the sum of their levels.

:func:`look_inflation` finds the largest factor ``c >= 1`` such that bounds at
levels ``c w_k alpha`` all hold together with probability ``>= 1 - alpha``:
the counts' random walk is treated as a Brownian motion observed at the look
sizes (the normal limit, with correlation ``sqrt(n_j / n_k)`` between looks),
and the probability that it crosses any look's boundary is computed by
recursive numerical integration (as group-sequential designs do), then ``c``
by bisection with a 2 % margin on ``alpha``. Everything depends only on the
look sizes, shares and ``alpha``, fixed before any confirmation row is seen.

Why it also covers the bounds the plan uses: those are at the effective size
of a routed group (``bounds.group_lower``), whose error ``p_hat_k - G`` adds
the group's own noise ``G``, common to every look. That raises every
between-look correlation (``sqrt((1/n_k + 1/m) / (1/n_j + 1/m)) >=
sqrt(n_j / n_k)``) at the same per-look levels, and for a normal vector a
higher correlation makes the union of the failures less likely (Slepian's
inequality), so the factor computed for the plain walk is conservative there.
The discrete Clopper-Pearson bounds are checked exactly, by enumerating the
binomial walk, in ``tests/test_engine_looks.py``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import signal, special

#: Bisection target: the joint failure probability stays below this share of alpha (numerical slack).
_MARGIN = 0.98
_GRID_POINTS_PER_SD = 24
_TAIL_SDS = 9.0


def look_inflation(sizes: Sequence[int], weights: Sequence[float], alpha: float) -> float:
    """Largest ``c >= 1`` whose levels ``c * w_k * alpha`` keep all looks' bounds jointly at ``1 - alpha``.

    ``sizes``: cumulative confirmation rows at each look (increasing);
    ``weights``: each look's share of ``alpha`` (summing to at most 1). One
    look gives 1 (nothing to gain).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or not 0.0 < alpha < 0.5:
        return 1.0
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"look sizes must increase, got {sizes}")
    times = tuple(round(s / sizes[-1], 3) for s in sizes)
    return _inflation(times, tuple(round(float(w), 9) for w in weights), float(alpha))


@lru_cache(maxsize=4096)
def _inflation(times: tuple[float, ...], weights: tuple[float, ...], alpha: float) -> float:
    goal = _MARGIN * alpha
    if joint_failure(times, weights, alpha, 1.0) > goal:
        return 1.0
    lo, hi = 1.0, 0.5 / (max(weights) * alpha)
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if joint_failure(times, weights, alpha, mid) <= goal else (lo, mid)
    return lo


def joint_failure(times: Sequence[float], weights: Sequence[float], alpha: float, factor: float) -> float:
    """P(some look's bound fails) when look ``k`` (at time ``times[k]``) is at level ``factor * w_k * alpha``.

    A standard Brownian motion ``W`` observed at ``times``; look ``k`` fails
    when ``W(t_k) / sqrt(t_k) > z_k`` with ``z_k`` the upper ``factor w_k alpha``
    quantile. The density of ``W`` on the paths that have not failed yet is
    carried from look to look on a grid (Gaussian convolution, then cut at the
    next boundary).
    """
    times = np.asarray(times, dtype=float)
    levels = np.minimum(factor * np.asarray(weights, dtype=float) * alpha, 0.5)
    edges = special.ndtri(1.0 - levels) * np.sqrt(times)
    dx = np.sqrt(times[0]) / _GRID_POINTS_PER_SD
    low = -_TAIL_SDS * np.sqrt(times[-1])
    x = np.arange(low, edges.max() + dx, dx)
    density = np.exp(-x**2 / (2 * times[0])) / np.sqrt(2 * np.pi * times[0])
    density = np.where(x <= edges[0], density, 0.0)
    for k in range(1, len(times)):
        step = times[k] - times[k - 1]
        half = int(np.ceil(_TAIL_SDS * np.sqrt(step) / dx))
        u = np.arange(-half, half + 1) * dx
        kernel = np.exp(-u**2 / (2 * step)) / np.sqrt(2 * np.pi * step) * dx
        density = signal.fftconvolve(density, kernel, mode="same")
        density = np.where(x <= edges[k], np.maximum(density, 0.0), 0.0)
    return float(1.0 - density.sum() * dx)
