"""SmartEngine / Profiler with a small deterministic answer source (no Spark, no network)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest

from smart_spark.engine import Profiler, SmartConfig, SmartEngine
from smart_spark.engine.plan import Plan
from smart_spark.engine.profiler import auto_pilot_size

REF = "ref"


@dataclass
class Answer:
    label: str | None
    raw: str | None
    cost: float
    error: str | None = None


class Source:
    """Deterministic answers: ``behaviour[model](position) -> Answer``; records every call."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls: dict[str, list[int]] = {m: [] for m in behaviour}
        self.returned_cost = 0.0
        self._lock = threading.Lock()

    def __call__(self, model, positions):
        answers = [self.behaviour[model](int(p)) for p in positions]
        with self._lock:
            self.calls[model].extend(int(p) for p in positions)
            self.returned_cost += sum(a.cost for a in answers)
        return answers


def ref_answer(p: int) -> Answer:
    return Answer("Yes" if p % 3 else "No", "Yes" if p % 3 else "No", 0.03)


def agrees(cost):
    return lambda p: Answer(*(("Yes", "yes.") if p % 3 else ("No", "no")), cost)


def never_agrees(cost):
    return lambda p: Answer(*(("No", "No") if p % 3 else ("Yes", "Yes")), cost)


def agrees_except(cost, every):
    """Agrees except on every ``every``-th position."""
    good, bad = agrees(cost), never_agrees(cost)
    return lambda p: bad(p) if p % every == 0 else good(p)


def _run(behaviour, n_total, target=0.9, method="mix", pool_size=None, progress=None, **config):
    source = Source(behaviour)
    cfg = SmartConfig(target, 0.95, method, batch_size=config.pop("batch_size", 256), **config)
    engine = SmartEngine(cfg, list(behaviour), REF, solver="enumerate")
    result = engine.run(n_total, n_total if pool_size is None else pool_size, source, progress=progress)
    return source, result


@pytest.fixture(scope="module")
def standard_run():
    behaviour = {
        "perfect": agrees(0.001),
        "bad": never_agrees(0.0005),
        "decent": agrees_except(0.002, 20),
        "dear": agrees(0.05),  # dearer than the reference
        REF: ref_answer,
    }
    return _run(behaviour, 10_000)


# --- (a) positions --------------------------------------------------------------


def test_positions_requested_once_in_pool_order(standard_run):
    source, result = standard_run
    profile = result.profile
    n = len(profile.positions)
    assert n > 0
    assert profile.positions.tolist() == list(range(n))
    assert source.calls[REF] == list(range(n))
    for model, positions in source.calls.items():
        assert len(positions) == len(set(positions)), f"{model} asked twice for a position"
        assert set(positions) <= set(range(n))
        assert positions == sorted(positions)


# --- (b) spend ---------------------------------------------------------------


def test_spent_equals_returned_costs(standard_run):
    source, result = standard_run
    profile = result.profile
    assert profile.spent == pytest.approx(source.returned_cost, rel=1e-12)
    assert sum(item.cost for item in profile.items) == pytest.approx(source.returned_cost, rel=1e-12)
    per_model = {m: len(c) for m, c in source.calls.items()}
    expected = (
        per_model[REF] * 0.03 + per_model["perfect"] * 0.001 + per_model["bad"] * 0.0005
        + per_model["decent"] * 0.002 + per_model["dear"] * 0.05
    )
    assert profile.spent == pytest.approx(expected, rel=1e-12)


# --- (c) statuses --------------------------------------------------------------


def test_statuses(standard_run):
    _, result = standard_run
    stats = result.profile.stats
    assert stats[REF].status == "reference"
    assert stats["perfect"].status == "satisfied"
    assert stats["perfect"].agreements == stats["perfect"].n > 0
    assert stats["perfect"].lower >= result.profile.remaining_target
    assert stats["bad"].status == "invalid"
    assert stats["bad"].pilot_agreements == 0 and stats["bad"].pilot_n > 0
    documented = {"reference", "satisfied", "invalid", "dropped", "unknown"}
    assert {s.status for s in stats.values()} <= documented
    plan = result.plan
    assert "bad" not in plan.fractions
    assert "perfect" in plan.fractions
    assert plan.expected_cost < plan.reference_only_cost


def test_plan_is_consistent(standard_run):
    _, result = standard_run
    plan, profile = result.plan, result.profile
    assert isinstance(plan, Plan)
    assert plan.n_total == 10_000
    assert plan.n_remaining == profile.n_remaining == 10_000 - profile.n_profiled
    assert sum(plan.fractions.values()) == pytest.approx(1.0)
    reached = sum(share * plan.bounds[m] for m, share in plan.fractions.items())
    assert reached >= plan.remaining_target - 1e-9
    assert sum(plan.alphas.values()) <= 0.05 + 1e-12


# --- (f) dearer candidates -------------------------------------------------------


def test_candidate_dearer_than_reference_never_confirmed(standard_run):
    source, result = standard_run
    dear = result.profile.stats["dear"]
    assert dear.status != "satisfied"
    assert dear.n == 0 and dear.alpha == 0.0
    assert "dear" not in result.plan.fractions
    # called in the pilot only (to learn its price), never in the confirmation
    assert set(source.calls["dear"]) <= set(range(result.profile.pilot_size))


def test_only_dear_candidate_plans_reference_only():
    behaviour = {"dear": agrees(0.05), REF: ref_answer}
    source, result = _run(behaviour, 5_000)
    assert result.plan.fractions == {REF: 1.0}
    assert result.profile.stats["dear"].status != "satisfied"
    assert result.profile.confirmation_size == 0
    assert len(source.calls[REF]) == result.profile.pilot_size


# --- (d) method reference ----------------------------------------------------------


def test_method_reference_makes_no_calls():
    behaviour = {"perfect": agrees(0.001), REF: ref_answer}
    source, result = _run(behaviour, 10_000, method="reference")
    assert all(not calls for calls in source.calls.values())
    assert result.plan.fractions == {REF: 1.0}
    assert result.profile.n_profiled == 0
    assert result.profile.spent == 0.0
    assert result.plan.method == "reference"


# --- (e) reference errors -----------------------------------------------------------


def test_reference_errors():
    def flaky_ref(p):
        if p % 7 == 3:
            return Answer(None, None, 0.01, error="HTTP 500")
        return ref_answer(p)

    behaviour = {"perfect": agrees(0.001), REF: flaky_ref}
    source, result = _run(behaviour, 8_000)
    profile = result.profile
    consumed = profile.positions.tolist()
    errored = [p for p in consumed if p % 7 == 3]
    assert errored
    items = {item.position: item for item in profile.items}
    for p in consumed:
        if p % 7 == 3:
            assert items[p].error == "HTTP 500"
        else:
            assert items[p].error is None
            assert items[p].label in ("Yes", "No")
    assert profile.n_profiled == len(consumed) - len(errored)
    assert profile.n_remaining == 8_000 - profile.n_profiled
    assert profile.spent == pytest.approx(source.returned_cost, rel=1e-12)
    assert sum(i.cost for i in profile.items) == pytest.approx(source.returned_cost, rel=1e-12)
    # errored items do not count as comparisons for the candidate
    perfect = profile.stats["perfect"]
    confirm_positions = [p for p in source.calls["perfect"] if p >= profile.pilot_size]
    assert perfect.n == sum(1 for p in confirm_positions if p % 7 != 3)
    assert perfect.agreements == perfect.n


# --- (g) non-label answers compare by raw text ------------------------------------------


def test_non_label_answers_compare_by_raw_text():
    def ref(p):
        return Answer(None, "Cannot determine.", 0.03) if p % 2 else Answer("Yes", "Yes", 0.03)

    def same_text(p):
        return Answer(None, "  cannot DETERMINE ", 0.001) if p % 2 else Answer("Yes", "yes", 0.001)

    def other_text(p):
        return Answer(None, "I do not know", 0.0005) if p % 2 else Answer("Yes", "Yes", 0.0005)

    behaviour = {"same": same_text, "other": other_text, REF: ref}
    source, result = _run(behaviour, 10_000)
    stats = result.profile.stats
    assert stats["same"].pilot_agreements == stats["same"].pilot_n > 0
    assert stats["same"].status == "satisfied"
    # "other" agrees only on the labelled half
    assert stats["other"].pilot_agreements == pytest.approx(stats["other"].pilot_n / 2, abs=1)
    assert stats["other"].status == "invalid"
    # items whose reference answer is a non-label are still profiled (label None, raw kept)
    odd = [i for i in result.profile.items if i.position % 2]
    assert odd and all(i.label is None and i.raw == "Cannot determine." and i.error is None for i in odd)
    assert result.profile.n_profiled == len(result.profile.positions)


# --- (h) config validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(accuracy_target=0), "accuracy_target"),
        (dict(accuracy_target=1.5), "accuracy_target"),
        (dict(accuracy_target=float("nan")), "accuracy_target"),
        (dict(accuracy_target=0.9, confidence=1.0), "confidence"),
        (dict(accuracy_target=0.9, confidence=0.0), "confidence"),
        (dict(accuracy_target=0.9, method="cheapest"), "method"),
        (dict(accuracy_target=0.9, batch_size=0), "batch_size"),
        (dict(accuracy_target=0.9, pilot_size=0), "pilot_size"),
        (dict(accuracy_target=0.9, max_profile=-5), "max_profile"),
        (dict(accuracy_target=0.9, seed="x"), "seed"),
    ],
)
def test_config_validation_names_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SmartConfig(**kwargs)


def test_config_valid_and_error_budget():
    cfg = SmartConfig(1.0, 0.9)
    assert cfg.error_budget == pytest.approx(0.1)
    assert cfg.method == "mix"


def test_engine_rejects_bad_models():
    cfg = SmartConfig(0.9)
    with pytest.raises(ValueError, match="reference"):
        SmartEngine(cfg, ["a", "b"], "c")
    with pytest.raises(ValueError, match="unique"):
        SmartEngine(cfg, ["a", "a", "c"], "c")


# --- (i) tiny N -----------------------------------------------------------------------


def test_tiny_dataset_plans_reference_only_without_calls():
    behaviour = {"perfect": agrees(0.001), REF: ref_answer}
    source, result = _run(behaviour, 30)
    assert source.calls["perfect"] == []
    assert source.calls[REF] == []
    assert result.plan.fractions == {REF: 1.0}
    assert result.plan.n_remaining == 30


def test_max_profile_and_pool_size_limit_profiling():
    behaviour = {"decent": agrees_except(0.002, 20), REF: ref_answer}
    source, result = _run(behaviour, 20_000, pool_size=300)
    assert len(result.profile.positions) <= 300
    assert max(source.calls[REF]) < 300
    source, result = _run(behaviour, 20_000, max_profile=250)
    assert len(result.profile.positions) <= 250


# --- (j) progress -----------------------------------------------------------------------


def test_progress_callback():
    events = []
    behaviour = {"perfect": agrees(0.001), "bad": never_agrees(0.0005), REF: ref_answer}
    source, result = _run(behaviour, 10_000, progress=events.append, batch_size=16)
    assert events
    phases = [e["phase"] for e in events]
    assert phases[0] == "pilot" and "confirmation" in phases
    done = [e["items_done"] for e in events]
    assert done == sorted(done) and done[-1] == len(result.profile.positions)
    spent = [e["spent"] for e in events]
    assert spent == sorted(spent)
    assert spent[-1] == pytest.approx(result.profile.spent, rel=1e-12)
    for e in events:
        assert set(e) >= {"phase", "items_done", "spent", "bounds"}
        for model, (lo, hi) in e["bounds"].items():
            assert model != REF
            assert 0.0 <= lo <= hi <= 1.0


# --- other methods ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["single", "single-early-stop"])
def test_single_methods_pick_one_model(method):
    behaviour = {"perfect": agrees(0.001), "bad": never_agrees(0.0005), REF: ref_answer}
    source, result = _run(behaviour, 10_000, method=method)
    plan = result.plan
    assert plan.fractions == {"perfect": 1.0}
    assert plan.bounds["perfect"] >= plan.remaining_target
    assert result.profile.stats["perfect"].status == "satisfied"
    for positions in source.calls.values():
        assert len(positions) == len(set(positions))


def test_parallel_models_give_same_result():
    behaviour = {"perfect": agrees(0.001), "decent": agrees_except(0.002, 20), REF: ref_answer}
    cfg = SmartConfig(0.9, 0.95, batch_size=128)
    serial = SmartEngine(cfg, list(behaviour), REF, solver="enumerate", max_parallel_models=1).run(
        6_000, 6_000, Source(behaviour)
    )
    parallel = SmartEngine(cfg, list(behaviour), REF, solver="enumerate", max_parallel_models=4).run(
        6_000, 6_000, Source(behaviour)
    )
    assert serial.plan == parallel.plan
    assert serial.profile.spent == pytest.approx(parallel.profile.spent, rel=1e-12)
    assert np.array_equal(serial.profile.positions, parallel.profile.positions)


def test_answer_source_wrong_length_raises():
    def short(model, positions):
        return [Answer("Yes", "Yes", 0.0)] * (len(positions) - 1)

    cfg = SmartConfig(0.9, batch_size=32)
    profiler = Profiler(cfg, ["a"], REF, short)
    with pytest.raises(ValueError, match="answers for"):
        profiler.run(5_000, 5_000)


def test_pilot_stopped_early_reports_the_rows_it_asked():
    # One candidate that never agrees, priced so that its pilot runs in steps and
    # the pays-off rule gives up on it after the first step (2 of 20 planned rows).
    behaviour = {"bad": never_agrees(0.02), REF: ref_answer}
    source = Source(behaviour)
    cfg = SmartConfig(0.99, 0.95, "mix", batch_size=256)
    engine = SmartEngine(cfg, list(behaviour), REF, solver="enumerate", prices={"bad": 0.02, REF: 0.03})
    profile = engine.run(1_000, 1_000, source).profile
    asked = len(source.calls[REF])
    assert 0 < asked < 20
    assert profile.pilot_size == asked == len(profile.positions)
    assert profile.confirmation_size == 0
    assert source.calls["bad"] == source.calls[REF]


@pytest.mark.parametrize("method, eliminates", [("mix", True), ("single", False)])
def test_a_dear_candidate_that_cannot_pay_leaves_the_pilot_early(method, eliminates):
    # "dear_bad" costs two thirds of the reference and never agrees: under "mix" it leaves the
    # pilot after its first step (elimination.py); "single" does not price plans and keeps it.
    behaviour = {"perfect": agrees(0.001), "dear_bad": never_agrees(0.02), REF: ref_answer}
    source = Source(behaviour)
    cfg = SmartConfig(0.9, 0.95, method, batch_size=256)
    engine = SmartEngine(cfg, list(behaviour), REF, solver="enumerate",
                         prices={"perfect": 0.001, "dear_bad": 0.02, REF: 0.03})
    result = engine.run(10_000, 10_000, source)
    pilot = result.profile.pilot_size
    assert (len(source.calls["dear_bad"]) < pilot) == eliminates
    assert source.calls["dear_bad"] == list(range(len(source.calls["dear_bad"])))
    assert result.profile.stats["dear_bad"].pilot_n == len(source.calls["dear_bad"])
    assert result.profile.stats["perfect"].pilot_n == pilot
    assert result.plan.fractions == {"perfect": 1.0}


#: Three close candidates (agreement 0.93, 0.95, 0.96): a pilot of 121 rows cannot tell them apart.
CLOSE_THREE = {
    "near": agrees_except(0.003, 14),
    "mid": agrees_except(0.004, 20),
    "good": agrees_except(0.006, 25),
    REF: ref_answer,
}


def test_the_pilot_grows_while_a_long_confirmation_has_models_to_choose_between():
    # At target 0.95 and N = 200,000 the pays-off rule plans a confirmation many pilots
    # (0.27 sqrt(N) = 121 rows) long and would leave one of them out, so the pilot doubles
    # (Profiler._grow_pilot).
    source, result = _run(CLOSE_THREE, 200_000, target=0.95, batch_size=512)
    profile, first = result.profile, auto_pilot_size(200_000)
    assert profile.pilot_size > first
    assert profile.pilot_size in {first * 2**k for k in range(1, 10)}
    for model in ("near", "mid", "good"):
        # every pilot row asked every candidate, and only confirmation rows count toward a bound
        assert source.calls[model][: profile.pilot_size] == list(range(profile.pilot_size))
        stats = profile.stats[model]
        assert stats.pilot_n == profile.pilot_size
        assert stats.n == sum(1 for p in source.calls[model] if p >= profile.pilot_size)


@pytest.mark.parametrize("target, config", [(0.8, {}), (0.95, {"pilot_size": 121})])
def test_the_pilot_keeps_its_size_for_a_short_confirmation_or_a_size_set_by_the_user(target, config):
    _, result = _run(CLOSE_THREE, 200_000, target=target, batch_size=512, **config)
    assert result.profile.pilot_size == 121
