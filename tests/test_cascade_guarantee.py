"""The cascade's certificate: exact check on tiny populations, a small simulation, and the bookkeeping."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from smart_spark.engine.cascade import (
    certify_cascade,
    disagreement_budget,
    error_cutoff,
    cascade_looks,
    certified_threshold,
    few_errors_looks,
)
from smart_spark.paper.cascade_sim import simulate_dataset


def test_error_cutoff_is_the_largest_c_whose_hypergeometric_tail_fits_alpha():
    n_total, n, budget, alpha = 1000, 200, 100, 0.05
    c = error_cutoff(n_total, n, budget, alpha)
    assert c >= 0
    assert stats.hypergeom.cdf(c, n_total, budget + c + 1, n) <= alpha
    assert stats.hypergeom.cdf(c + 1, n_total, budget + c + 2, n) > alpha
    assert error_cutoff(1000, 5, 0, 0.01) == -1  # too few rows to certify anything


def test_error_cutoff_bisection_equals_a_scan_of_every_c():
    """The bisection relies on the tail never falling as c grows; a full scan of every c must agree."""
    for n_total, n, budget, alpha in itertools.product((14, 300), (1, 7, 14, 150, 300), (0, 2, 30), (0.01, 0.3)):
        if n > n_total:
            continue
        c = np.arange(n + 1)
        wrong = budget + c + 1
        tail = np.where(wrong <= n_total, stats.hypergeom.cdf(c, n_total, np.minimum(wrong, n_total), n), 0.0)
        ok = tail <= alpha
        scanned = -1 if not ok[0] else int(n) if ok.all() else int(np.argmin(ok) - 1)
        assert error_cutoff(n_total, n, budget, alpha) == scanned, (n_total, n, budget, alpha)


def test_look_schedule_is_fixed_by_n_and_spends_exactly_the_budget():
    looks = cascade_looks(1000, 0.1, 0.9)
    sizes = [n for n, _ in looks]
    assert sizes == sorted(set(sizes)) and sizes[-1] == 1000
    assert math.isclose(sum(a for _, a in looks), 0.1)
    assert cascade_looks(1000, 0.1, 0.9) == looks


@pytest.mark.parametrize("n_total, budget, target", [(1000, 0.1, 0.9), (1000, 0.1, 0.95), (20_000, 0.1, 0.99)])
def test_every_look_but_the_last_can_certify_at_its_own_share(n_total, budget, target):
    """A look whose cutoff at its share is -1 could only stop with nothing kept: the schedule leaves it out."""
    looks = cascade_looks(n_total, budget, target)
    allowed = disagreement_budget(n_total, target)
    assert all(error_cutoff(n_total, n, allowed, a) >= 0 for n, a in looks[:-1])
    assert math.isclose(sum(a for _, a in looks), budget)


@pytest.mark.parametrize("n_total, target", [(1000, 0.99), (855, 0.99), (300, 0.99)])
def test_few_errors_schedule_gives_half_the_budget_to_the_smallest_look_that_certifies(n_total, target):
    """Few disagreements allowed: look 1 is the smallest sample where c = 0 certifies at half the budget."""
    looks = cascade_looks(n_total, 0.1, target)
    assert looks == few_errors_looks(n_total, 0.1, target)
    (first, share), sizes = looks[0], [n for n, _ in looks]
    budget = disagreement_budget(n_total, target)
    assert share == pytest.approx(0.05) and math.isclose(sum(a for _, a in looks), 0.1)
    assert sizes == sorted(set(sizes)) and sizes[-1] == n_total
    assert error_cutoff(n_total, first, budget, share) == 0
    assert error_cutoff(n_total, first - 1, budget, share) == -1


@pytest.mark.parametrize(
    "wrong_positions", [(0, 1, 2, 3), (10, 11, 12, 13), (0, 2, 4, 6, 8, 10, 12), (1, 2, 9), tuple(range(14))]
)
def test_exact_violation_probability_over_every_sample_of_a_tiny_population(wrong_positions):
    """Enumerate all C(14, 7) samples: P[kept unprofiled disagreements > B] <= alpha, for any layout.

    The first layout (B + c + 1 disagreements at the top) is the worst case of the
    argument: its exact rate is 0.2797 against alpha 0.3, so the bound is tight.
    """
    n_total, n, target, alpha = 14, 7, 0.85, 0.3  # B = 2 allowed disagreements, cutoff 1
    budget = disagreement_budget(n_total, target)
    cutoff = error_cutoff(n_total, n, budget, alpha)
    assert cutoff >= 0
    wrong = np.zeros(n_total, dtype=bool)
    wrong[list(wrong_positions)] = True
    confidence = np.linspace(1.0, 0.5, n_total)  # rows in descending-confidence order
    bad = total = 0
    for sample in itertools.combinations(range(n_total), n):
        in_sample = np.zeros(n_total, dtype=bool)
        in_sample[list(sample)] = True
        kept = confidence >= certified_threshold(confidence[wrong & in_sample], cutoff)
        kept_wrong = int((wrong & kept & ~in_sample).sum())
        bad += kept_wrong > budget
        total += 1
    assert bad / total <= alpha


@pytest.mark.parametrize("kind", ["calibrated", "overconfident", "unrelated", "sorted"])
def test_violation_rate_within_allowance_by_simulation(kind):
    runs, target, confidence = 300, 0.9, 0.8
    data = simulate_dataset(kind, 300, 0.9, np.random.default_rng(7))
    violations = 0
    for run in range(runs):
        result = certify_cascade(
            data.confidence.size,
            lambda positions: (data.confidence[positions], data.agrees[positions]),
            accuracy_target=target,
            error_budget=1.0 - confidence,
            rng=np.random.default_rng(run),
        )
        kept = result.kept(data.confidence)
        assert not kept[result.sampled].any()  # profiled rows carry the reference's answer
        assert np.all(data.confidence[kept] >= result.threshold)
        violations += (kept & ~data.agrees).sum() > result.budget
    allowed = 1.0 - confidence
    assert violations / runs <= allowed + 3 * math.sqrt(allowed * confidence / runs)


def _profile(data):
    return lambda positions: (data.confidence[positions], data.agrees[positions])


def test_certified_threshold_is_the_prefix_rule_as_a_threshold():
    wrong = np.array([0.7, 0.99, 0.8, 0.95])
    assert certified_threshold(wrong, 1) > 0.95 and certified_threshold(wrong, 1) <= np.nextafter(0.95, 1)
    assert certified_threshold(wrong, 4) == -math.inf
    assert certified_threshold(wrong, -1) == math.inf


def test_cascade_is_dropped_when_the_cheap_model_costs_more_than_it_keeps():
    data = simulate_dataset("unrelated", 300, 0.6, np.random.default_rng(5))
    result = certify_cascade(
        300, _profile(data), accuracy_target=0.99, error_budget=0.1, rng=np.random.default_rng(0), cheap_cost_ratio=1 / 16
    )
    assert not result.uses_cheap_model and not result.kept(data.confidence).any()


def test_nan_confidence_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        certify_cascade(
            2, lambda p: (np.full(len(p), np.nan), np.ones(len(p), bool)), accuracy_target=0.9, error_budget=0.1,
            rng=np.random.default_rng(0),
        )


def test_high_target_on_few_rows_keeps_nothing_rather_than_guessing():
    data = simulate_dataset("unrelated", 300, 0.9, np.random.default_rng(2))
    result = certify_cascade(
        300, _profile(data), accuracy_target=0.99, error_budget=0.01, rng=np.random.default_rng(0)
    )
    assert (result.kept(data.confidence) & ~data.agrees).sum() <= result.budget
    option = result.option("cheap")
    assert option.keeps(1.0) == (result.threshold <= 1.0) and not option.keeps(None) and not option.keeps(float("nan"))
    assert option.to_dict()["model"] == "cheap"
