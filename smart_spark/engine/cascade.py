"""Confidence cascade with a guarantee: keep a cheap model's answer where it is sure enough.

An option is a (model, threshold) pair: the cheap model answers every row with
a confidence; its answer is kept when the confidence is at or above the
threshold, otherwise the row is escalated to the reference. The threshold is
certified on rows profiled with the reference so that, with probability at
least ``confidence``, at least ``accuracy_target * N`` of the final answers
equal the reference's.

Why the bound holds whatever threshold is picked (the argument in full is in
``GUARANTEE`` below and in the README): the rows kept at any threshold form a
prefix of the rows in descending confidence order, a fixed order since each
row's confidence is a fixed property of the row (it need not be paid for yet). Let ``B`` be
the number of disagreements the target allows and ``S`` the uniform random
sample profiled with the reference (those rows get the reference's answer).
We keep the largest prefix whose *sampled* disagreements number at most ``c``.
If the kept, unprofiled rows held more than ``B`` disagreements, then among the
first ``B + c + 1`` disagreeing rows of the fixed order at most ``c`` would be
in ``S``: a single hypergeometric event, ``P[Hyp(N, B+c+1, n) <= c]``, which
``c`` is chosen to keep at most ``alpha``. One event covers every threshold at
once, so choosing the threshold from the data (any score, no grid) costs no
multiplicity. Profiling proceeds in looks whose sizes and error shares are
fixed from ``N`` and the target before anything is seen; a union bound over looks
(``sum alpha_k = 1 - confidence``) makes any stopping rule valid, so we stop
when a further look is not predicted to save more (cheap calls included).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import stats

#: Smallest first look, the growth factor between looks, the disagreements expected
#: at the look that gets the largest error share, and how fast shares fall off from it.
_FIRST_LOOK = 40
_LOOK_GROWTH = 2.0
_PEAK_ERRORS = 16.0
_LOOK_DECAY = 0.5
#: The peak look is never past the one nearest this share of N (at high targets on few rows
#: ``_PEAK_ERRORS / (1 - target)`` exceeds N, and a budget peaking at "profile every row" keeps nothing).
_PEAK_MAX_SHARE = 0.5

GUARANTEE = """\
Let N rows have confidences s_1..s_N known before profiling, sorted into a fixed
descending order (ties broken by row position). Keeping "confidence >= t" keeps a
prefix of that order for every t. Let W be the set of rows where the cheap answer
differs from the reference (unknown), w_1, w_2, ... its members in that order, and
B = floor((1 - target) N) the disagreements the target allows. At a look of n rows
drawn uniformly without replacement (the profiled set S, answered by the reference),
we keep the longest prefix holding at most c sampled members of W. Suppose the kept,
unprofiled rows held more than B members of W. Walk the prefix: at the point where the
(B+1)-th unprofiled member of W appears, at most c profiled members have appeared, so
among w_1..w_{B+c+1} at most c are in S. The number of S among w_1..w_{B+c+1} is
Hypergeometric(N, B+c+1, n) (when |W| < B+c+1 the event is only less likely: the
unprofiled count of W is stochastically increasing in |W|). c is the largest value with
P[Hyp(N, B+c+1, n) <= c] <= alpha_k. The event does not depend on which prefix was
chosen, so the threshold may be any score chosen from the sample (adaptive choice, no
grid, no multiplicity). Look sizes n_1 < n_2 < ... and shares alpha_k are fixed from N
before sampling, sum alpha_k = 1 - confidence; by the union bound the promise fails
with probability at most 1 - confidence whichever look the (data-dependent) stopping
rule ends at. Profiled rows carry the reference's answer, so they never disagree.
The order only has to exist, not be known: a row's confidence is a fixed property
of the row (temperature 0, the answer stored once paid), so the cheap model is paid
on profiled rows only until the plan decides to use the cascade, and the threshold
is read off the sampled disagreements' confidences. Dropping the cascade ("keep
nothing", the empty prefix) is one of the covered choices, so deciding it from the
sample costs nothing either.
"""


def disagreement_budget(n_total: int, accuracy_target: float) -> int:
    """Disagreements the target allows over all ``n_total`` rows."""
    return int(math.floor((1.0 - accuracy_target) * n_total + 1e-9))


@functools.lru_cache(maxsize=4096)
def error_cutoff(n_total: int, n_sampled: int, budget: int, alpha: float) -> int:
    """Largest ``c`` with ``P[Hyp(N, B+c+1, n) <= c] <= alpha`` for it and every smaller c.

    -1 when even ``c = 0`` fails (nothing can be kept at this look). The tail
    ``f(c) = P[Hyp(N, B+c+1, n) <= c]`` never falls as ``c`` grows (one more
    disagreeing row in the population adds at most one to the sampled count, so
    ``Hyp(N, B+c+2, n) <= Hyp(N, B+c+1, n) + 1`` under the natural coupling and
    ``f(c+1) >= f(c)``), so a bisection finds it with a few tail evaluations
    instead of one per ``c`` (at N = 100,000 a full scan took a minute). Once
    ``B+c+1 > N`` the event is impossible and every larger ``c`` passes.
    """
    if n_sampled <= 0 or budget < 0:
        return -1

    def passes(c: int) -> bool:
        wrong = budget + c + 1
        return wrong > n_total or float(stats.hypergeom.cdf(c, n_total, wrong, n_sampled)) <= alpha

    if not passes(0):
        return -1
    last_possible = min(n_sampled, n_total - budget - 1)
    if passes(last_possible):
        return int(n_sampled)
    good, bad = 0, last_possible
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if passes(middle) else (good, middle)
    return good


def cascade_looks(n_total: int, error_budget: float, accuracy_target: float) -> list[tuple[int, float]]:
    """Look sizes and their error shares, fixed from ``N``, the target and the budget (before any row is seen).

    Sizes double from ``_FIRST_LOOK`` up to ``N``. The budget is split with
    weights halving away from the look nearest ``_PEAK_ERRORS / (1 - target)``
    rows: the sample at which about ``_PEAK_ERRORS`` disagreements are expected
    when the cheap model sits near the target, where profiling usually pays to
    stop, but no later than the look nearest ``_PEAK_MAX_SHARE * N``. A look too
    small to certify anything even at the whole budget (its sample misses ``B + 1``
    disagreements with probability above ``error_budget``) is left out, its share
    going to the others; so is, in turn, a look whose cutoff at its own share is
    -1 (stopping there could only keep nothing; at target 0.99 on 20,000 rows the
    first look of 320 rows was such a dead end). When the target allows fewer
    than ``_PEAK_ERRORS`` disagreements over all rows and the first look could
    not certify anything with half the budget, :func:`few_errors_looks` is used instead. The shares sum to
    ``error_budget``, so the stopping rule may end at any look.
    """
    budget = disagreement_budget(n_total, accuracy_target)
    wanted_peak = _PEAK_ERRORS / max(1.0 - accuracy_target, 1e-9)
    few_errors = wanted_peak > n_total  # fewer than _PEAK_ERRORS disagreements allowed over all rows
    if few_errors and _zero_error_look(n_total, budget, error_budget / 2) > _FIRST_LOOK:
        return few_errors_looks(n_total, error_budget, accuracy_target)
    sizes = _doubling_sizes(_FIRST_LOOK, n_total)
    hopeless = [budget + 1 <= n_total and stats.hypergeom.cdf(0, n_total, budget + 1, n) > error_budget
                for n in sizes[:-1]]
    sizes = [n for n, skip in zip(sizes, hopeless + [False]) if not skip]
    peak_size = min(wanted_peak, _PEAK_MAX_SHARE * n_total)
    while True:  # a look that cannot certify anything at its own share is dropped, its share to the others
        peak = int(np.argmin([abs(math.log(n / peak_size)) for n in sizes]))
        weights = np.array([_LOOK_DECAY ** abs(i - peak) for i in range(len(sizes))])
        shares = error_budget * weights / weights.sum()
        useless = {i for i, (n, a) in enumerate(zip(sizes[:-1], shares)) if error_cutoff(n_total, n, budget, a) < 0}
        if not useless:
            return [(n, float(a)) for n, a in zip(sizes, shares)]
        sizes = [n for i, n in enumerate(sizes) if i not in useless]


def few_errors_looks(n_total: int, error_budget: float, accuracy_target: float) -> list[tuple[int, float]]:
    """Schedule for targets allowing few disagreements: half the budget on the first look that can certify.

    With a disagreement budget ``B`` small against ``N`` (target 0.99 on 1,000
    rows: ``B = 10``), a cascade can keep only a run of the most confident rows,
    and the certificate that keeps most is the one with cutoff ``c = 0``: keep
    down to the most confident sampled disagreement. Its sample must be large
    enough to catch one of the top ``B + 1`` disagreements with probability
    ``1 - alpha_1``; every extra row profiled beyond that is a reference call
    inside the kept run. So the first look is the smallest ``n`` with
    ``P[Hyp(N, B+1, n) = 0] <= error_budget / 2`` and gets exactly half the budget;
    later looks double in size and get a quarter, an eighth, ... (the last one
    the rest). Everything is fixed from ``N``, the target and the budget, so
    the union bound over looks is unchanged.
    """
    budget = disagreement_budget(n_total, accuracy_target)
    first = max(_zero_error_look(n_total, budget, error_budget / 2), min(_FIRST_LOOK, n_total))
    sizes = _doubling_sizes(first, n_total)
    shares = [error_budget / 2 ** (k + 1) for k in range(len(sizes))]
    shares[-1] = error_budget - sum(shares[:-1])
    return [(n, float(a)) for n, a in zip(sizes, shares)]


def _zero_error_look(n_total: int, budget: int, alpha: float) -> int:
    """Smallest sample size at which cutoff ``c = 0`` certifies: ``P[Hyp(N, B+1, n) = 0] <= alpha``.

    That probability falls as ``n`` grows, so bisection finds it. When ``B + 1 > N``
    every row may disagree and any sample certifies: 1.
    """
    if budget + 1 > n_total:
        return 1
    low, high = 1, n_total  # at n = N the probability is 0
    while low < high:
        middle = (low + high) // 2
        if float(stats.hypergeom.pmf(0, n_total, budget + 1, middle)) <= alpha:
            high = middle
        else:
            low = middle + 1
    return low


def _doubling_sizes(first: int, n_total: int) -> list[int]:
    """``first``, doubling (``_LOOK_GROWTH``), up to and including ``n_total``."""
    sizes: list[int] = []
    size = float(min(first, n_total))
    while True:
        n = int(min(n_total, round(size)))
        if not sizes or n > sizes[-1]:
            sizes.append(n)
        if n >= n_total:
            break
        size *= _LOOK_GROWTH
    return sizes


def pool_looks(n_total: int, pool_size: int, error_budget: float, accuracy_target: float) -> list[tuple[int, float]]:
    """:func:`cascade_looks` for a profiling pool smaller than ``N``: looks past the pool end at it.

    The looks beyond the pool are merged into one look at ``pool_size`` that
    gets their error shares; the pool size is known before any row is seen, so
    the schedule is still fixed in advance and its shares still sum to ``error_budget``.
    """
    looks = cascade_looks(n_total, error_budget, accuracy_target)
    inside = [(n, a) for n, a in looks if n < pool_size]
    beyond = sum(a for n, a in looks if n >= pool_size)
    return inside + ([(pool_size, beyond)] if pool_size > 0 else [])


def certified_threshold(wrong_confidences: np.ndarray, cutoff: int) -> float:
    """Lowest threshold whose kept rows hold at most ``cutoff`` of the sampled disagreements.

    Keeping ``confidence >= t`` keeps a prefix of the fixed confidence order, so
    this is the longest prefix holding at most ``cutoff`` of them, as a threshold: just above the
    ``cutoff + 1``-th most confident sampled disagreement (ties with it are
    escalated). ``-inf`` keeps everything, ``inf`` nothing.
    """
    if cutoff < 0:
        return math.inf
    ranked = np.sort(np.asarray(wrong_confidences, dtype=float))[::-1]
    if ranked.size <= cutoff:
        return -math.inf
    return float(np.nextafter(ranked[cutoff], math.inf))


@dataclass(frozen=True)
class CascadeOption:
    """A planner option: ``model``'s answer is kept at confidence >= ``threshold``, else escalated.

    What the apply phase needs per row (and what MLflow should log): keep the
    cheap answer only at or above the threshold; a missing confidence escalates.
    """

    model: str
    threshold: float
    kept_share: float = 0.0  # estimated share of the rows this option keeps

    def keeps(self, confidence: float | None) -> bool:
        return confidence is not None and not math.isnan(confidence) and confidence >= self.threshold

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "threshold": self.threshold, "kept_share": self.kept_share}


@dataclass(frozen=True)
class CascadeResult:
    """A certified threshold, the profiled rows behind it, and whether the cascade pays."""

    threshold: float  # keep the cheap answer when confidence >= threshold (inf: keep none)
    sampled: np.ndarray  # row positions profiled with the reference (and the cheap model)
    n_total: int
    cutoff: int
    alpha: float
    looks_used: int
    budget: int
    estimated_kept_share: float  # of all rows, from the profiled confidences
    look_sizes: list[int] = field(default_factory=list)

    @property
    def uses_cheap_model(self) -> bool:
        """False when keeping nothing is cheaper: the cheap model then answered only profiled rows."""
        return self.threshold != math.inf

    def kept(self, confidence: np.ndarray) -> np.ndarray:
        """Per row: unprofiled and at or above the threshold (the cheap answer stands)."""
        mask = np.asarray(confidence, dtype=float) >= self.threshold
        mask[self.sampled] = False
        return mask

    def option(self, model: str) -> CascadeOption:
        """The certified (model, threshold) pair for the plan."""
        return CascadeOption(model=model, threshold=self.threshold, kept_share=self.estimated_kept_share)


def certify_cascade(
    n_total: int,
    profile: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    accuracy_target: float,
    error_budget: float,
    rng: np.random.Generator,
    cheap_cost_ratio: float = 0.0,
    schedule: Sequence[tuple[int, float]] | None = None,
    order: np.ndarray | None = None,
) -> CascadeResult:
    """Profile in looks, certify the lowest safe threshold, stop when more looks do not pay.

    ``profile(positions)`` pays the cheap model and the reference for those rows
    and returns (cheap confidence, cheap answer equals the reference's) per row.
    ``cheap_cost_ratio``: the cheap model's cost per row over the reference's;
    with it, the cascade is dropped (threshold ``inf``) when running the cheap
    model on the unprofiled rows is expected to cost more than it keeps, which
    the promise allows since it holds for every threshold, "keep nothing" included.
    ``order``: the positions to profile, in profiling order (a uniformly random
    sample in random order, e.g. the Spark layer's pool); every prefix of it
    must be a uniform sample. Default: a permutation of all rows drawn from ``rng``.
    """
    if n_total < 1:
        raise ValueError("certify_cascade needs at least one row")
    budget = disagreement_budget(n_total, accuracy_target)
    looks = list(schedule) if schedule is not None else cascade_looks(n_total, error_budget, accuracy_target)
    cutoffs = [error_cutoff(n_total, n, budget, a) for n, a in looks]
    draw = rng.permutation(n_total) if order is None else np.asarray(order, dtype=int)
    if looks[-1][0] > draw.size:
        raise ValueError(f"the schedule's last look has {looks[-1][0]} rows, the order only {draw.size}")
    confidences = np.empty(0)
    agreements = np.empty(0, dtype=bool)
    seen = 0
    for look, ((size, alpha), cutoff) in enumerate(zip(looks, cutoffs)):
        fresh = draw[seen:size]
        conf, agrees = (np.asarray(x) for x in profile(fresh))
        if conf.shape != fresh.shape or agrees.shape != fresh.shape:
            raise ValueError(f"profile returned shapes {conf.shape}/{agrees.shape}, expected {fresh.shape}")
        if np.isnan(conf.astype(float)).any():
            raise ValueError("confidence has NaN values; a row without confidence must be escalated")
        confidences = np.concatenate([confidences, conf.astype(float)])
        agreements = np.concatenate([agreements, agrees.astype(bool)])
        seen = size
        wrong = confidences[~agreements]
        threshold = certified_threshold(wrong, cutoff)
        value = _net_saving(confidences, threshold, size, n_total, cheap_cost_ratio)
        later = zip(looks[look + 1 :], cutoffs[look + 1 :])
        if not any(
            _net_saving(confidences, certified_threshold(wrong, _scaled(c, size, n)), n, n_total, cheap_cost_ratio)
            > value + 0.5
            for (n, _), c in later
        ):
            break
    if _net_saving(confidences, threshold, seen, n_total, cheap_cost_ratio, use=True) <= _net_saving(
        confidences, threshold, seen, n_total, cheap_cost_ratio, use=False
    ):
        threshold = math.inf
    kept_share = float(np.mean(confidences >= threshold)) * (1.0 - seen / n_total)
    return CascadeResult(
        threshold=threshold,
        sampled=draw[:seen],
        n_total=n_total,
        cutoff=cutoff,
        alpha=alpha,
        looks_used=look + 1,
        budget=budget,
        estimated_kept_share=kept_share,
        look_sizes=[n for n, _ in looks],
    )


def _scaled(cutoff: int, n_seen: int, n_later: int) -> int:
    """Plug-in prediction: the later look's cutoff in units of today's sample."""
    return -1 if cutoff < 0 else int(math.floor(cutoff * n_seen / n_later))


def _net_saving(
    confidences: np.ndarray,
    threshold: float,
    n_sampled: int,
    n_total: int,
    cheap_ratio: float,
    use: bool | None = None,
) -> float:
    """Expected saving, in reference calls, against the reference on every row.

    Kept rows are estimated from the profiled confidences. Costs charged: the
    cheap model on profiled rows, and on the unprofiled rows when the cascade is
    used (``use=None``: whichever of using it or not saves more).
    """
    remaining = n_total - n_sampled
    kept = float(np.mean(confidences >= threshold)) * remaining if confidences.size else 0.0
    with_cascade = kept - cheap_ratio * remaining
    chosen = max(with_cascade, 0.0) if use is None else (with_cascade if use else 0.0)
    return chosen - cheap_ratio * n_sampled
