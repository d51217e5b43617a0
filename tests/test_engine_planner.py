"""solve_mix: CBC and enumeration agree with an independent brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from smart_spark.engine.planner import MixSolution, Option, PlanningError, solve_mix

REF = "reference"
BUDGET = 0.05
SHARES = (1.0, 0.75, 2 / 3, 0.5, 1 / 3, 0.25)


def _random_instance(rng):
    n_models = int(rng.integers(2, 5))
    options = []
    for i in range(n_models):
        cost = float(rng.uniform(0.01, 0.9))
        n_opts = int(rng.integers(1, 4))
        alphas = rng.choice(SHARES, size=n_opts, replace=False) * BUDGET
        for alpha in alphas:
            options.append(Option(f"m{i}", float(alpha), float(rng.uniform(0.5, 1.0)), cost))
    reference_cost = 1.0
    target = float(rng.uniform(0.5, 0.99))
    return options, reference_cost, target


def _lp_cost(chosen, reference_cost, target):
    """min cost of sharing items between the chosen options and the reference (2-constraint LP)."""
    c = np.array([o.unit_cost for o in chosen] + [reference_cost])
    lowers = np.array([o.lower for o in chosen] + [1.0])
    res = linprog(
        c,
        A_ub=-lowers[None, :],
        b_ub=[-target],
        A_eq=np.ones((1, len(c))),
        b_eq=[1.0],
        bounds=[(0, 1)] * len(c),
        method="highs",
    )
    return res.fun if res.status == 0 else np.inf


def _brute_force(options, reference_cost, target, budget):
    by_model: dict[str, list[Option]] = {}
    for o in options:
        by_model.setdefault(o.model, []).append(o)
    groups = list(by_model.values())
    best = np.inf
    # for each model: not used (None) or one of its options
    for pick in itertools.product(*[[None, *opts] for opts in groups]):
        chosen = [o for o in pick if o is not None]
        spent = sum(o.alpha for o in chosen)
        if spent > budget + 1e-12:
            continue
        # Adding an option never raises an LP's optimum, so only subsets to which no
        # unused model's option can be added within the budget need solving.
        extendable = any(
            slot is None and any(spent + o.alpha <= budget + 1e-12 for o in opts)
            for slot, opts in zip(pick, groups)
        )
        if not extendable:
            best = min(best, _lp_cost(chosen, reference_cost, target))
    return best


def _reached(solution: MixSolution, options, reference):
    """Bound-weighted agreement of a solution, using the chosen options' bounds."""
    by_key = {(o.model, o.alpha): o for o in options}
    reached = 0.0
    for model, share in solution.fractions.items():
        if model == reference:
            reached += share
        else:
            option = by_key[(model, solution.alphas[model])]
            assert solution.bounds[model] == option.lower
            reached += share * option.lower
    return reached


def _check_structure(solution: MixSolution, options, reference, reference_cost, budget):
    """Fractions sum to 1, chosen options exist and fit the budget, cost is consistent."""
    assert solution.fractions, "empty plan"
    assert sum(solution.fractions.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(s > 0 for s in solution.fractions.values())
    by_key = {(o.model, o.alpha): o for o in options}
    cost = 0.0
    for model, share in solution.fractions.items():
        if model == reference:
            cost += share * reference_cost
        else:
            option = by_key[(model, solution.alphas[model])]
            cost += share * option.unit_cost
    assert sum(solution.alphas.values()) <= budget + 1e-12
    assert solution.cost_per_item == pytest.approx(cost, rel=1e-9, abs=1e-12)
    return cost


def _check_valid(solution: MixSolution, options, reference, reference_cost, target, budget):
    cost = _check_structure(solution, options, reference, reference_cost, budget)
    assert _reached(solution, options, reference) >= target - 1e-9
    return cost


@pytest.fixture(scope="module")
def random_cases():
    """~200 random instances with their CBC solutions (solved once for the module)."""
    rng = np.random.default_rng(12345)
    cases = []
    for _ in range(200):
        options, reference_cost, target = _random_instance(rng)
        cbc = solve_mix(options, REF, reference_cost, target, BUDGET, solver="cbc")
        cases.append((options, reference_cost, target, cbc))
    return cases


def test_random_instances_cbc_enumerate_brute_force_agree(random_cases):
    mismatches = []
    for trial, (options, reference_cost, target, cbc) in enumerate(random_cases):
        enum = solve_mix(options, REF, reference_cost, target, BUDGET, solver="enumerate")
        brute = _brute_force(options, reference_cost, target, BUDGET)
        _check_structure(cbc, options, REF, reference_cost, BUDGET)
        _check_valid(enum, options, REF, reference_cost, target, BUDGET)
        ok = np.isclose(cbc.cost_per_item, enum.cost_per_item, rtol=1e-6, atol=1e-12) and np.isclose(
            enum.cost_per_item, brute, rtol=1e-6, atol=1e-12
        )
        if not ok:
            mismatches.append((trial, cbc.cost_per_item, enum.cost_per_item, brute))
    assert not mismatches


def test_random_instances_cbc_meets_agreement_constraint(random_cases):
    violations = []
    for trial, (options, reference_cost, target, cbc) in enumerate(random_cases):
        reached = _reached(cbc, options, REF)
        if reached < target - 1e-9:
            violations.append((trial, target - reached))
    assert not violations


def test_target_one_gives_reference_only():
    options = [Option("a", 0.05, 0.99, 0.1), Option("b", 0.025, 0.95, 0.05)]
    for solver in ("cbc", "enumerate"):
        sol = solve_mix(options, REF, 1.0, 1.0, BUDGET, solver=solver)
        assert sol.fractions == {REF: pytest.approx(1.0)}
        assert sol.cost_per_item == pytest.approx(1.0)
        assert sol.alphas == {}


def test_target_below_every_bound_gives_cheapest_model():
    options = [
        Option("a", 0.05, 0.95, 0.30),
        Option("b", 0.05, 0.92, 0.10),
        Option("b", 0.025, 0.90, 0.10),
        Option("c", 0.05, 0.97, 0.50),
    ]
    for solver in ("cbc", "enumerate"):
        sol = solve_mix(options, REF, 1.0, 0.6, BUDGET, solver=solver)
        assert list(sol.fractions) == ["b"]
        assert sol.fractions["b"] == pytest.approx(1.0)
        assert sol.cost_per_item == pytest.approx(0.10)
        assert sol.alphas["b"] in (0.05, 0.025)


def test_no_options_gives_reference_only():
    for solver in ("cbc", "enumerate"):
        sol = solve_mix([], REF, 2.0, 0.9, BUDGET, solver=solver)
        assert sol.fractions == {REF: pytest.approx(1.0)}
        assert sol.cost_per_item == pytest.approx(2.0)


def test_options_over_budget_or_of_reference_are_ignored():
    options = [Option("a", 0.2, 0.99, 0.01), Option(REF, 0.0, 1.0, 0.001)]
    for solver in ("cbc", "enumerate"):
        sol = solve_mix(options, REF, 1.0, 0.9, BUDGET, solver=solver)
        assert sol.fractions == {REF: pytest.approx(1.0)}


def test_single_model_mix_with_reference():
    # L = 0.8, target 0.9: share x of the cheap model with 0.8 x + (1 - x) >= 0.9 -> x = 0.5
    options = [Option("a", 0.05, 0.8, 0.1)]
    for solver in ("cbc", "enumerate"):
        sol = solve_mix(options, REF, 1.0, 0.9, BUDGET, solver=solver)
        assert sol.fractions["a"] == pytest.approx(0.5, abs=1e-7)
        assert sol.fractions[REF] == pytest.approx(0.5, abs=1e-7)
        assert sol.cost_per_item == pytest.approx(0.55, rel=1e-7)
        assert sol.bounds == {"a": 0.8, REF: 1.0}
        assert sol.alphas == {"a": 0.05}


def test_equal_prices_tie_gives_valid_min_cost_plan():
    options = [
        Option("a", 0.025, 0.85, 0.2),
        Option("b", 0.025, 0.85, 0.2),
        Option("c", 0.05, 0.80, 0.2),
    ]
    target = 0.9
    brute = _brute_force(options, 1.0, target, BUDGET)
    for solver in ("cbc", "enumerate"):
        sol = solve_mix(options, REF, 1.0, target, BUDGET, solver=solver)
        cost = _check_valid(sol, options, REF, 1.0, target, BUDGET)
        assert cost == pytest.approx(brute, rel=1e-6)


def test_target_above_one_raises():
    for solver in ("cbc", "enumerate"):
        with pytest.raises(PlanningError):
            solve_mix([Option("a", 0.05, 0.9, 0.1)], REF, 1.0, 1.01, BUDGET, solver=solver)


def test_unknown_solver_raises():
    with pytest.raises(ValueError, match="solver"):
        solve_mix([Option("a", 0.05, 0.9, 0.1)], REF, 1.0, 0.9, BUDGET, solver="glpk")


def test_twelve_models_six_levels_cbc():
    rng = np.random.default_rng(7)
    options = []
    for i in range(12):
        cost = float(rng.uniform(0.01, 0.9))
        base = float(rng.uniform(0.6, 0.97))
        for share in SHARES:
            # a bigger budget share buys a tighter (higher) bound
            options.append(Option(f"model{i}", share * BUDGET, base + 0.02 * share, cost))
    target = 0.92
    sol = solve_mix(options, REF, 1.0, target, BUDGET, solver="cbc")
    _check_valid(sol, options, REF, 1.0, target, BUDGET)
    enum = solve_mix(options, REF, 1.0, target, BUDGET, solver="enumerate")
    assert sol.cost_per_item == pytest.approx(enum.cost_per_item, rel=1e-6)
    assert sol.cost_per_item < 1.0
