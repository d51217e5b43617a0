"""Confidence cascade with a guarantee: keep a cheap model's answer where it is sure enough.

An option is a (model, threshold) pair: the cheap model answers every row with
a confidence; its answer is kept when the confidence is at or above the
threshold, otherwise the row is escalated to the reference. The threshold is
certified on rows profiled with the reference so that, with probability at
least ``confidence``, at least ``accuracy_target * N`` of the final answers
equal the reference's.

Why the bound holds whatever threshold is picked (the argument in full is in
``GUARANTEE`` below and in the README): the rows kept at any threshold form a
prefix of the rows in descending confidence order, a fixed order since the
confidences are known for every row before anything is sampled. Let ``B`` be
the number of disagreements the target allows and ``S`` the uniform random
sample profiled with the reference (those rows get the reference's answer).
We keep the largest prefix whose *sampled* disagreements number at most ``c``.
If the kept, unprofiled rows held more than ``B`` disagreements, then among the
first ``B + c + 1`` disagreeing rows of the fixed order at most ``c`` would be
in ``S``: a single hypergeometric event, ``P[Hyp(N, B+c+1, n) <= c]``, which
``c`` is chosen to keep at most ``alpha``. One event covers every threshold at
once, so choosing the threshold from the data (any score, no grid) costs no
multiplicity. Profiling proceeds in looks whose sizes and error shares are
fixed from ``N`` alone before anything is seen; a union bound over looks
(``sum alpha_k = 1 - confidence``) makes any stopping rule valid, so we stop
when a further look is not predicted to keep more rows.
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
"""


def disagreement_budget(n_total: int, accuracy_target: float) -> int:
    """Disagreements the target allows over all ``n_total`` rows."""
    return int(math.floor((1.0 - accuracy_target) * n_total + 1e-9))


@functools.lru_cache(maxsize=4096)
def error_cutoff(n_total: int, n_sampled: int, budget: int, alpha: float) -> int:
    """Largest ``c`` with ``P[Hyp(N, B+c+1, n) <= c] <= alpha`` for it and every smaller c.

    -1 when even ``c = 0`` fails (nothing can be kept at this look).
    """
    if n_sampled <= 0 or budget < 0:
        return -1
    c = np.arange(0, n_sampled + 1)
    wrong = budget + c + 1
    feasible = wrong <= n_total
    tail = np.where(
        feasible, stats.hypergeom.cdf(c, n_total, np.minimum(wrong, n_total), n_sampled), 0.0
    )
    ok = tail <= alpha
    if not ok[0]:
        return -1
    return int(np.argmin(ok) - 1) if not ok.all() else int(n_sampled)


def cascade_looks(n_total: int, error_budget: float, accuracy_target: float) -> list[tuple[int, float]]:
    """Look sizes and their error shares, fixed from ``N`` and the target alone (before any row is seen).

    Sizes double from ``_FIRST_LOOK`` up to ``N``. The budget is split with
    weights halving away from the look nearest ``_PEAK_ERRORS / (1 - target)``
    rows: the sample at which about ``_PEAK_ERRORS`` disagreements are expected
    when the cheap model sits near the target, where profiling usually pays to
    stop. The shares sum to ``error_budget``, so the stopping rule may end at any look.
    """
    sizes: list[int] = []
    size = float(min(_FIRST_LOOK, n_total))
    while True:
        n = int(min(n_total, round(size)))
        if not sizes or n > sizes[-1]:
            sizes.append(n)
        if n >= n_total:
            break
        size *= _LOOK_GROWTH
    peak_size = _PEAK_ERRORS / max(1.0 - accuracy_target, 1e-9)
    peak = int(np.argmin([abs(math.log(n / peak_size)) for n in sizes]))
    weights = np.array([_LOOK_DECAY ** abs(i - peak) for i in range(len(sizes))])
    shares = error_budget * weights / weights.sum()
    return [(n, float(a)) for n, a in zip(sizes, shares)]


def kept_prefix(n_total: int, sampled_wrong_rank: np.ndarray, cutoff: int) -> int:
    """Length of the longest prefix of the confidence order holding at most ``cutoff`` sampled disagreements.

    ``sampled_wrong_rank``: positions in the descending-confidence order of the
    sampled rows whose cheap answer disagreed with the reference (any order).
    """
    if cutoff < 0:
        return 0
    ranks = np.sort(sampled_wrong_rank)
    if ranks.size <= cutoff:
        return int(n_total)
    return int(ranks[cutoff])


def _prefix_to_threshold(sorted_conf: np.ndarray, prefix: int) -> float:
    """The confidence threshold that keeps exactly the rows of a tie-respecting prefix."""
    if prefix <= 0:
        return math.inf
    if prefix >= sorted_conf.size:
        return float(sorted_conf[-1])
    return float(sorted_conf[prefix - 1])


def _tie_safe_prefix(sorted_conf: np.ndarray, prefix: int) -> int:
    """Shrink a prefix so it never splits rows of equal confidence (a threshold keeps all ties)."""
    if prefix <= 0 or prefix >= sorted_conf.size:
        return max(prefix, 0)
    boundary = sorted_conf[prefix]
    if sorted_conf[prefix - 1] > boundary:
        return prefix
    return int(np.searchsorted(-sorted_conf, -boundary, side="left"))


@dataclass(frozen=True)
class CascadeOption:
    """A planner option: ``model``'s answer is kept at confidence >= ``threshold``, else escalated.

    What the apply phase needs per row (and what MLflow should log): keep the
    cheap answer only at or above the threshold; a missing confidence escalates.
    """

    model: str
    threshold: float
    kept_share: float = 0.0  # share of the rows this option kept when it was certified

    def keeps(self, confidence: float | None) -> bool:
        return confidence is not None and not math.isnan(confidence) and confidence >= self.threshold

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "threshold": self.threshold, "kept_share": self.kept_share}


@dataclass(frozen=True)
class CascadeResult:
    """A certified threshold and what it did on this dataset."""

    threshold: float  # keep the cheap answer when confidence >= threshold (inf: keep none)
    sampled: np.ndarray  # row positions profiled with the reference, in draw order
    kept: np.ndarray  # bool per row: unprofiled and confidence >= threshold
    cutoff: int
    alpha: float
    looks_used: int
    budget: int
    look_sizes: list[int] = field(default_factory=list)

    @property
    def reference_calls(self) -> int:
        """Every reference call: profiled rows plus escalated unprofiled rows."""
        return int(self.kept.size - self.kept.sum())

    @property
    def kept_share(self) -> float:
        return float(self.kept.mean()) if self.kept.size else 0.0

    def option(self, model: str) -> CascadeOption:
        """The certified (model, threshold) pair for the plan."""
        return CascadeOption(model=model, threshold=self.threshold, kept_share=self.kept_share)


def certify_cascade(
    confidence: np.ndarray,
    cheap_agrees: Callable[[np.ndarray], np.ndarray],
    *,
    accuracy_target: float,
    error_budget: float,
    rng: np.random.Generator,
    schedule: Sequence[tuple[int, float]] | None = None,
) -> CascadeResult:
    """Profile in looks, certify the lowest safe threshold, stop when more looks do not pay.

    ``confidence``: the cheap model's confidence for every row (already paid).
    ``cheap_agrees(positions)``: asks the reference for those rows (paid) and returns
    whether the cheap answer equals the reference's, one bool per position.
    """
    conf = np.asarray(confidence, dtype=float)
    n_total = int(conf.size)
    if n_total == 0:
        raise ValueError("certify_cascade needs at least one row")
    if np.isnan(conf).any():
        raise ValueError("confidence has NaN values; a row without confidence must be escalated")
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    rank_of = np.empty(n_total, dtype=int)
    rank_of[order] = np.arange(n_total)
    budget = disagreement_budget(n_total, accuracy_target)
    looks = list(schedule) if schedule is not None else cascade_looks(n_total, error_budget, accuracy_target)
    cutoffs = [error_cutoff(n_total, n, budget, a) for n, a in looks]
    draw = rng.permutation(n_total)

    sampled_wrong: list[int] = []
    seen = 0
    best = (0, -1, looks[0][1], 0)  # (prefix, cutoff, alpha, look index)
    for look, ((size, alpha), cutoff) in enumerate(zip(looks, cutoffs)):
        fresh = draw[seen:size]
        agrees = np.asarray(cheap_agrees(fresh), dtype=bool)
        if agrees.shape != fresh.shape:
            raise ValueError(f"cheap_agrees returned {agrees.shape}, expected {fresh.shape}")
        sampled_wrong.extend(rank_of[fresh[~agrees]].tolist())
        seen = size
        wrong_ranks = np.asarray(sampled_wrong, dtype=int)
        prefix = _tie_safe_prefix(sorted_conf, kept_prefix(n_total, wrong_ranks, cutoff))
        best = (prefix, cutoff, alpha, look)
        if not _more_looks_pay(
            sorted_conf, wrong_ranks, prefix, size, n_total, looks[look + 1 :], cutoffs[look + 1 :]
        ):
            break
    prefix, cutoff, alpha, look = best
    sampled = draw[:seen]
    kept = np.zeros(n_total, dtype=bool)
    kept[order[:prefix]] = True
    kept[sampled] = False
    return CascadeResult(
        threshold=_prefix_to_threshold(sorted_conf, prefix),
        sampled=sampled,
        kept=kept,
        cutoff=cutoff,
        alpha=alpha,
        looks_used=look + 1,
        budget=budget,
        look_sizes=[n for n, _ in looks],
    )


def _more_looks_pay(
    sorted_conf: np.ndarray,
    wrong_ranks: np.ndarray,
    prefix: int,
    n_seen: int,
    n_total: int,
    later_looks: Sequence[tuple[int, float]],
    later_cutoffs: Sequence[int],
) -> bool:
    """Whether a later look is predicted to keep more rows than stopping now.

    Plug-in prediction: sampled disagreements scale with the sample size. Kept
    rows now: the prefix minus its profiled rows; at a later look of ``n`` rows
    the prefix shrinks by the expected share of it profiled.
    """
    if not later_looks:
        return False
    kept_now = prefix * (1.0 - n_seen / n_total)
    ranks = np.sort(wrong_ranks)
    for (size, _), cutoff in zip(later_looks, later_cutoffs):
        if cutoff < 0:
            continue
        allowed = int(math.floor(cutoff * n_seen / size))
        predicted = n_total if ranks.size <= allowed else int(ranks[allowed])
        predicted = _tie_safe_prefix(sorted_conf, predicted)
        if predicted * (1.0 - size / n_total) > kept_now + 0.5:
            return True
    return False
