"""Profiling: measure how often each candidate agrees with the reference.

Two stages, on items taken in the (already uniformly random) order of the pool:

1. **Pilot.** A small sample on which the reference and every candidate are
   called (which also measures each model's real cost per item). It tells
   which models are worth confirming, how to split the error budget between
   them and how many items to confirm on (the pays-off rule, ``payoff.py``).
   Its items are profiled (they get the reference's answer) but its counts
   never enter a bound the plan relies on. It runs in steps where a step may
   change what it calls: a candidate no confirmation could pay for any more,
   even at its optimistic rate (``elimination.py``), leaves it early. When the
   rule then plans a confirmation many pilots long with models still to choose
   between, the pilot doubles first (``Profiler._grow_pilot``).
2. **Confirmation.** Fresh items, on which only the reference and the chosen
   models are called, in looks at sizes fixed by the pilot (the planned size
   times ``payoff.LOOK_MULTIPLIERS``). At each look the pays-off rule decides
   whether a later look is worth its cost; the counts at the stopping look give
   the one-sided bounds of ``bounds.py``, at the share of each model's budget
   that look was given.

Failed calls: a candidate's failed call on an item counts as a disagreement
with the reference (items where the *reference* failed are left out: they have
no answer to compare with and are not profiled). The reference's own failure
rate is measured and reported (``Profile.reference_failure_rate``).

Blends: when the pays-off rule picks a blend (two models certified as one at
the whole alpha, ``payoff.Confirmation.blend``), both members are called on
every confirmation item and the item is scored by the member the production
split hash (``plan.split_unit_hash`` of the row key) picks for it: the blend's
agreement flag, the same per-row variable the apply phase realises on its
routed rows. Its counts and bound are ``Profile.stats[plan.blend_name(...)]``.

Duplicates: pool positions are taken to be distinct rows. The Spark layer
makes row keys unique before sampling, so two profiled positions are never the
same row counted twice.

An answer source is ``answer_source(model, positions) -> answers``: either a
sequence of objects with ``label``, ``raw``, ``cost`` and ``error`` (the LLM
client's ``CallResult``) or :class:`AnswerArrays` (the simulator's fast path).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from smart_spark.engine.bounds import cp_lower, cp_upper
from smart_spark.engine.config import SmartConfig
from smart_spark.engine.elimination import cannot_pay, may_leave
from smart_spark.engine.payoff import (
    Confirmation,
    LookState,
    best_possible_saving,
    PilotSummary,
    continue_pays,
    decide_confirmation,
    look_schedule,
    remaining_target,
    schedule_inflation,
)
from smart_spark.engine.plan import blend_member, blend_name, split_unit_hash
from smart_spark.llm.labels import agreement_key

logger = logging.getLogger("smart_spark.profiler")

AnswerSource = Callable[[str, Sequence[int]], Any]
ProgressCallback = Callable[[dict], None]
#: ``row_keys(positions) -> keys``: the routing key of each pool position (the operator's row id).
RowKeys = Callable[[Sequence[int]], Sequence[Any]]

#: Below this many items per pilot item there is too little left to save on.
_MIN_ITEMS_PER_PILOT_ITEM = 4
_PILOT_MIN, _PILOT_MAX = 20, 200
#: A pilot whose candidate calls cost more than this share of the most any
#: candidate could save (``payoff.best_possible_saving``) runs in steps.
_SEQUENTIAL_PILOT_SHARE = 0.08
#: Where the sequential pilot stops to decide, as fractions of the pilot size.
_PILOT_STEPS = (0.1, 0.25, 0.5, 1.0)
#: The pilot doubles while the planned confirmation is longer than this many pilots ...
_PILOT_GROWTH_RATIO = 4
#: ... and the new pilot rows' candidate calls cost at most this share of the planned confirmation's.
_PILOT_GROWTH_SHARE = 0.25


@dataclass(frozen=True)
class AnswerArrays:
    """Answers of one model on a batch, as arrays (no per-item objects).

    ``keys`` are agreement keys (compared with the reference's with ``==``);
    ``ok`` is False where the call failed.
    """

    keys: np.ndarray
    costs: np.ndarray
    ok: np.ndarray
    labels: Sequence[str | None] | None = None
    raws: Sequence[str | None] | None = None
    errors: Sequence[str | None] | None = None


@dataclass(frozen=True)
class ModelStats:
    """Per-model profiling statistics; ``n``/``agreements`` are the confirmation counts.

    ``alpha`` is the model's share of the error budget (what the union bound
    adds up); ``level`` the part of it spent on the look where profiling
    stopped, at which ``lower`` is computed.
    """

    model: str
    n: int
    agreements: int
    lower: float
    upper: float
    unit_cost: float
    status: str
    alpha: float = 0.0
    level: float = 0.0
    pilot_n: int = 0
    pilot_agreements: int = 0

    @property
    def agreement_rate(self) -> float:
        n, k = (self.n, self.agreements) if self.n else (self.pilot_n, self.pilot_agreements)
        return k / n if n else float("nan")


@dataclass(frozen=True)
class ProfiledItem:
    """One consumed pool position: the reference's answer and all USD spent on it."""

    position: int
    label: str | None
    raw: str | None
    error: str | None
    cost: float


@dataclass
class Profile:
    """Everything profiling measured and paid for."""

    n_total: int
    reference: str
    accuracy_target: float
    stats: dict[str, ModelStats]
    positions: np.ndarray
    item_costs: np.ndarray
    reference_ok: np.ndarray
    reference_labels: list[str | None] = field(default_factory=list)
    reference_raws: list[str | None] = field(default_factory=list)
    reference_errors: list[str | None] = field(default_factory=list)
    pilot_size: int = 0
    confirmation_size: int = 0
    #: Why no model was profiled (empty when profiling ran); logged and sent to MLflow.
    reason: str = ""
    #: The blend confirmed as one model (member -> share within it); its stats are under its name.
    blend: dict[str, float] = field(default_factory=dict)

    @property
    def reference_failure_rate(self) -> float:
        """Share of profiled items whose reference call failed (after the client's retries)."""
        return float(1.0 - self.reference_ok.mean()) if len(self.reference_ok) else 0.0

    @property
    def n_profiled(self) -> int:
        """Items with a reference answer (exact by construction)."""
        return int(self.reference_ok.sum())

    @property
    def n_remaining(self) -> int:
        return self.n_total - self.n_profiled

    @property
    def spent(self) -> float:
        return float(self.item_costs.sum())

    @property
    def remaining_target(self) -> float:
        return float(remaining_target(self.accuracy_target, self.n_total, self.n_profiled))

    @property
    def unit_costs(self) -> dict[str, float]:
        return {m: s.unit_cost for m, s in self.stats.items() if math.isfinite(s.unit_cost)}

    @property
    def items(self) -> list[ProfiledItem]:
        labels = self.reference_labels or [None] * len(self.positions)
        raws = self.reference_raws or [None] * len(self.positions)
        errors = self.reference_errors or [None] * len(self.positions)
        return [
            ProfiledItem(int(p), labels[i], raws[i], errors[i] if not self.reference_ok[i] else None, float(self.item_costs[i]))
            for i, p in enumerate(self.positions)
        ]

    def to_frame(self) -> pd.DataFrame:
        """Per-model statistics as a table (one row per model)."""
        rows = [
            {**s.__dict__, "agreement_rate": s.agreement_rate} for s in self.stats.values()
        ]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lines = [
            f"SMART profile: {self.n_profiled} of {self.n_total} items profiled "
            f"(pilot {self.pilot_size}, confirmation {self.confirmation_size}), spent ${self.spent:.4f}",
        ]
        if self.reason:
            lines.append(f"  no profiling: {self.reason}")
        if len(self.reference_ok):
            lines.append(f"  reference failed on {self.reference_failure_rate:.2%} of profiled items")
        for s in sorted(self.stats.values(), key=lambda s: (not math.isfinite(s.unit_cost), s.unit_cost)):
            if s.status == "reference":
                lines.append(f"  {s.model:<28} reference")
                continue
            if not s.n and not s.pilot_n:
                why = self.reason or "priced out before the pilot (its pilot calls could not pay back)"
                lines.append(f"  {s.model:<28} not profiled: {why}")
                continue
            if not s.n:
                lines.append(
                    f"  {s.model:<28} {s.status:<9} not confirmed: pilot agreement {s.agreement_rate:6.3f} "
                    f"on {s.pilot_n} pilot items (no bound), unit cost ${s.unit_cost:.6f}"
                )
                continue
            lines.append(
                f"  {s.model:<28} {s.status:<9} agreement {s.agreement_rate:6.3f} "
                f"bounds [{s.lower:.3f}, {s.upper:.3f}] on {s.n} items, unit cost ${s.unit_cost:.6f}"
            )
        return "\n".join(lines)


def auto_pilot_size(n_total: int) -> int:
    """Pilot items: ~0.27 sqrt(N), between 20 and 200 (small sets cannot afford more)."""
    return int(min(_PILOT_MAX, max(_PILOT_MIN, round(0.27 * math.sqrt(n_total)))))


class _Tally:
    """Running counts and spend for one stage."""

    def __init__(self, models: Sequence[str]):
        self.n = {m: 0 for m in models}
        self.k = {m: 0 for m in models}

    def add(self, model: str, agree: np.ndarray, valid: np.ndarray) -> None:
        self.n[model] += int(valid.sum())
        self.k[model] += int((agree & valid).sum())


class Profiler:
    """Runs pilot and confirmation against an answer source (see module doc)."""

    def __init__(
        self,
        config: SmartConfig,
        candidates: Sequence[str],
        reference: str,
        answer_source: AnswerSource,
        progress: ProgressCallback | None = None,
        max_parallel_models: int = 1,
        prices: Mapping[str, float] | None = None,
        row_keys: RowKeys | None = None,
    ):
        """``prices``: expected USD per item per model, known before any call
        (e.g. from the catalogue); used only to skip profiling that cannot pay.
        ``row_keys``: the routing key of each pool position, for scoring a blend
        with the production split hash; without it the position stands in (any
        key the answers do not depend on gives a valid bound)."""
        self.config = config
        self.row_keys = row_keys
        self.prices = dict(prices or {})
        self.candidates = [m for m in candidates if m != reference]
        self._all_candidates = list(self.candidates)
        self.reference = reference
        self.answer_source = answer_source
        self.progress = progress
        self.max_parallel_models = max_parallel_models
        self._positions: list[int] = []
        self._item_costs: list[float] = []
        self._ref_ok: list[bool] = []
        self._ref_labels: list[str | None] = []
        self._ref_raws: list[str | None] = []
        self._ref_errors: list[str | None] = []
        self._calls = {m: [0, 0.0] for m in [reference, *self.candidates]}
        self._best_saving: dict[str, float] = {}
        #: Candidates that left the pilot because no confirmation with them could pay (``elimination.py``).
        self._eliminated: list[str] = []

    # --- public -------------------------------------------------------------
    def run(self, n_total: int, pool_size: int) -> Profile:
        if n_total < 0 or pool_size < 0:
            raise ValueError("n_total and pool_size must be >= 0")
        limit = min(pool_size, n_total, self.config.max_profile or n_total)
        pilot_size = min(self.config.pilot_size or auto_pilot_size(n_total), limit)
        self.candidates = self._worth_piloting(n_total, pilot_size)
        reason = self._skip_reason(n_total, pilot_size)
        if reason:
            logger.info("SMART runs the reference on every row: %s", reason)
            return self._profile(n_total, {}, _Tally([]), _Tally([]), 0, 0, reason=reason)

        pilot = _Tally(self.candidates)
        active = self._pilot(n_total, pilot_size, limit, pilot)
        decision, active = self._grow_pilot(n_total, limit, pilot, active)
        pilot_size = len(self._positions)  # the rows actually asked: fewer when the pilot stopped early
        max_more = limit - pilot_size
        logger.info(
            "SMART pilot done on %d items: confirming %s on about %d more items",
            pilot_size, sorted(decision.alphas) or "nothing", decision.size,
        )
        confirm = _Tally([*decision.alphas, *sorted(decision.blend)])
        weight = self._confirm(n_total, pilot, confirm, decision, pilot_size, max_more)
        done = len(self._positions) - pilot_size
        return self._profile(n_total, decision.alphas, pilot, confirm, pilot_size, done, weight, blend=decision.blend)

    def _pilot(self, n_total: int, pilot_size: int, limit: int, pilot: _Tally) -> list[str]:
        """Run the pilot; return the candidates still in it at the end.

        The pilot runs in steps (``_PILOT_STEPS``, fractions of its size) when
        a step may change what it calls, else in one go. Where its candidate
        calls are a noticeable part of the most profiling could save (more than
        ``_SEQUENTIAL_PILOT_SHARE`` of the best candidate's
        ``payoff.best_possible_saving``: small N, high targets), after each
        step the pays-off rule, on the counts so far, keeps only the models it
        would confirm; when it would confirm none, the pilot stops. Elsewhere
        (method "mix", a candidate costing at least
        ``elimination.MIN_COST_SHARE`` of the reference), after each step but
        the last a candidate leaves when no confirmation with it could pay even
        at its optimistic rate (``elimination.cannot_pay``). These choices look
        only at pilot data at points fixed in advance, so they cannot bias the
        confirmation bounds; they only stop paying for models that cannot pay
        back.
        """
        active = list(self.candidates)
        sequential = bool(self.prices) and pilot_size * sum(self.prices[m] for m in active) > (
            _SEQUENTIAL_PILOT_SHARE * max(self._best_saving[m] for m in active)
        )
        costs = self._unit_costs()
        eliminating = not sequential and self.config.method == "mix" and any(
            may_leave(costs[m], costs[self.reference]) for m in active
        )
        steps = _PILOT_STEPS if sequential or eliminating else (1.0,)
        edges = sorted({max(1, round(pilot_size * f)) for f in steps})
        done = 0
        for edge in edges:
            if edge > done:
                self._stage("pilot", range(done, edge), active, pilot)
                done = edge
            if edge >= pilot_size:
                break
            if sequential:
                keep = self._decide(n_total, pilot, limit - done, active).alphas
                dropped = [m for m in active if m not in keep]
                if dropped:
                    logger.info("SMART pilot: dropping %s after %d items (cannot pay back)", dropped, done)
                active = [m for m in active if m in keep]
            else:
                active = self._still_paying(n_total, pilot, limit - done, active)
            if not active:
                break
        return active

    def _grow_pilot(self, n_total: int, limit: int, pilot: _Tally, active: list[str]) -> tuple[Confirmation, list[str]]:
        """Decide the confirmation, doubling the pilot first while that is cheap next to it.

        A pilot of about 0.27 sqrt(N) rows cannot tell a 0.93 model from a
        0.955 one, yet at high targets the pays-off rule may then plan to
        confirm on thousands of rows, and the choice of model decides most of
        the bill. While some piloted model is not among those the rule would
        confirm (there is a choice to make) and the planned confirmation is
        more than ``_PILOT_GROWTH_RATIO`` pilots long, the pilot doubles (up to
        a quarter of what profiling may use), provided the candidate calls of
        the new pilot rows cost at most ``_PILOT_GROWTH_SHARE`` of the
        candidate calls the planned confirmation would make; after each
        doubling the models no confirmation could pay for leave
        (``elimination.cannot_pay``) and the rule decides again. Only
        ``method="mix"`` grows its pilot, and only a pilot sized automatically
        (a ``pilot_size`` set by the user is kept). Every choice here is made
        on pilot counts, which never enter a bound, so the promise is
        unchanged. The sequential pilot of small N keeps only the models the
        rule would confirm, so it has nothing left to choose and does not grow.
        """
        done = len(self._positions)
        decision = self._decide(n_total, pilot, limit - done, active)
        cap = limit // 4
        growing = self.config.method == "mix" and self.config.pilot_size is None
        while growing and decision.alphas and done < cap:
            grown = min(2 * done, cap)
            costs = self._unit_costs()
            pilot_calls = (grown - done) * sum(costs[m] for m in active)
            confirmation_calls = decision.size * sum(costs[m] for m in [*decision.alphas, *decision.blend] if m in costs)
            undecided = set(active) - set(decision.alphas) - set(decision.blend)
            if (not undecided or decision.size <= _PILOT_GROWTH_RATIO * done
                    or pilot_calls > _PILOT_GROWTH_SHARE * confirmation_calls):
                break
            logger.info("SMART pilot: growing from %d to %d items (a confirmation of about %d items is planned)",
                        done, grown, decision.size)
            self._stage("pilot", range(done, grown), active, pilot)
            done = grown
            active = self._still_paying(n_total, pilot, limit - done, active)
            decision = self._decide(n_total, pilot, limit - done, active)
        return decision, active

    def _still_paying(self, n_total: int, pilot: _Tally, max_more: int, active: list[str]) -> list[str]:
        """``active`` without the candidates no confirmation could pay for (``elimination.cannot_pay``)."""
        dropped = cannot_pay(self._summary(n_total, pilot, max_more, active), active)
        if dropped:
            logger.info("SMART pilot: dropping %s after %d items (no confirmation with them could pay, "
                        "even at their optimistic rates)", dropped, len(self._positions))
            self._eliminated.extend(dropped)
        return [m for m in active if m not in dropped]

    def _worth_piloting(self, n_total: int, pilot_size: int) -> list[str]:
        """Candidates whose pilot calls could be paid back, given the prices known up front.

        Without prices every candidate is piloted. With them, a candidate is
        dropped before any call when piloting it costs at least the most it
        could save even at perfect agreement, confirmation included
        (``payoff.best_possible_saving``): ``pilot * c_m >= best saving``.
        """
        if not self.prices:
            return self.candidates
        self._best_saving = {
            m: self._possible_saving(n_total, pilot_size, m) for m in self.candidates if m in self.prices
        }
        return [m for m in self.candidates if pilot_size * self.prices.get(m, math.inf) < self._best_saving.get(m, 0.0)]

    def _possible_saving(self, n_total: int, pilot_size: int, model: str) -> float:
        return best_possible_saving(
            n_total, pilot_size, self.config.accuracy_target, self.config.error_budget,
            self.prices[model], self.prices.get(self.reference, math.inf),
        )

    def _skip_reason(self, n_total: int, pilot_size: int) -> str:
        """Why profiling cannot pay for itself (empty when it may).

        Decided before any call from N, the target and (when given) prices: the
        pilot's candidate calls are extra spend (its reference calls answer
        their rows anyway), and no plan can save more than the best candidate
        could at perfect agreement once confirmed (``payoff.best_possible_saving``).
        """
        if self.config.method == "reference":
            return "method 'reference' asks for the reference on every row"
        if not self.candidates:
            return "no candidate model could pay back its pilot calls at these prices and N"
        if n_total < _MIN_ITEMS_PER_PILOT_ITEM * pilot_size:
            return (f"N = {n_total} is below {_MIN_ITEMS_PER_PILOT_ITEM} x the pilot size {pilot_size}: "
                    "too few rows left to save on")
        if self.prices:
            pilot_extra = pilot_size * sum(self.prices[m] for m in self.candidates)
            best_saving = max(self._best_saving[m] for m in self.candidates)
            if pilot_extra >= best_saving:
                return (f"the pilot's candidate calls (about ${pilot_extra:.4f}) cost more than any plan "
                        f"could save on the other {n_total - pilot_size} rows (at most ${best_saving:.4f})")
        return ""

    def _confirm(self, n_total, pilot: _Tally, confirm: _Tally, decision: Confirmation, start: int, max_more: int) -> float:
        """Run the confirmation look by look; return the budget share of the stopping look (inflated, ``looks.py``)."""
        if not decision.size:
            return 0.0
        looks = look_schedule(decision.size, max_more)
        # Correlated looks may each spend more than their share (``looks.py``); fixed before any confirmation row.
        inflation = schedule_inflation(looks, decision.alphas.values())
        looks = [(size, weight * inflation) for size, weight in looks]
        models = list(decision.alphas)
        called = sorted(decision.blend) or models
        pilot_counts = {m: (pilot.n[m], pilot.k[m]) for m in called}
        if decision.blend:
            pilot_counts = {models[0]: _blend_pilot_counts(decision.blend, pilot_counts)}
        for index, (size, weight) in enumerate(looks):
            self._stage("confirmation", range(len(self._positions), start + size), called, confirm, decision.blend)
            run_state = self._run_state(n_total, decision.blend)
            state = LookState(
                **run_state,
                pilot_counts=pilot_counts,
                counts={m: (confirm.n[m], confirm.k[m]) for m in models},
                alphas=decision.alphas,
                weight_now=weight,
                later_looks=tuple((later - size, w) for later, w in looks[index + 1 :]),
                confirm_cost=run_state["unit_costs"][self.reference] + sum(run_state["unit_costs"][m] for m in called),
            )
            if not continue_pays(state, self.config.method):
                return weight
        return weight

    # --- stages -------------------------------------------------------------
    def _stage(self, phase: str, positions: range, models: list[str], tally: _Tally, blend=None) -> None:
        batch = self.config.batch_size
        for start in range(positions.start, positions.stop, batch):
            chunk = list(range(start, min(start + batch, positions.stop)))
            answers = self._ask_all([self.reference, *models], chunk)
            ref = answers[self.reference]
            self._record_reference(chunk, ref)
            agree = {}
            for model in models:
                got = answers[model]
                # A failed candidate call counts as a disagreement (it is not left
                # out): the bound then covers every row routed to the model, so a
                # failed call in the apply phase may escalate to any model without
                # leaving a row whose agreement was never measured.
                agree[model] = got.ok & (got.keys == ref.keys)
                if model in tally.n:
                    tally.add(model, agree[model], ref.ok)
            if blend:
                tally.add(blend_name(blend), self._blend_flags(blend, chunk, agree), ref.ok)
            self._report(phase, tally)

    def _blend_flags(self, blend: dict[str, float], chunk: list[int], agree: dict[str, np.ndarray]) -> np.ndarray:
        """Each item's agreement under the blend: its split-hash member's (as the apply phase routes it)."""
        keys = self.row_keys(chunk) if self.row_keys is not None else [str(p) for p in chunk]
        members = [blend_member(blend, split_unit_hash(key, self.config.seed)) for key in keys]
        return np.array([agree[m][i] for i, m in enumerate(members)], dtype=bool)

    def _ask_all(self, models: list[str], chunk: list[int]) -> dict[str, AnswerArrays]:
        def ask(model: str) -> AnswerArrays:
            arrays = _as_arrays(self.answer_source(model, chunk), len(chunk), model)
            calls = self._calls[model]
            calls[0] += len(chunk)
            calls[1] += float(arrays.costs.sum())
            return arrays

        if self.max_parallel_models > 1 and len(models) > 1:
            with ThreadPoolExecutor(min(self.max_parallel_models, len(models))) as pool:
                results = list(pool.map(ask, models))
        else:
            results = [ask(m) for m in models]
        answers = dict(zip(models, results))
        costs = np.sum([a.costs for a in results], axis=0)
        self._item_costs.extend(costs.tolist())
        return answers

    def _record_reference(self, chunk: list[int], ref: AnswerArrays) -> None:
        self._positions.extend(chunk)
        self._ref_ok.extend(ref.ok.tolist())
        if ref.labels is not None:
            self._ref_labels.extend(ref.labels)
            self._ref_raws.extend(ref.raws)
            self._ref_errors.extend(ref.errors)

    def _decide(self, n_total: int, pilot: _Tally, max_more: int, models: list[str]) -> Confirmation:
        return decide_confirmation(self._summary(n_total, pilot, max_more, models), self.config.method)

    def _summary(self, n_total: int, pilot: _Tally, max_more: int, models: list[str]) -> PilotSummary:
        """The pilot counts of ``models``, and of those that left the pilot (drawn, never chosen)."""
        shown = [m for m in self.candidates if m in models or m in self._eliminated]
        return PilotSummary(
            **self._run_state(n_total),
            counts={m: (pilot.n[m], pilot.k[m]) for m in shown},
            max_more=max_more,
            excluded=tuple(self._eliminated),
        )

    def _run_state(self, n_total: int, blend=None) -> dict:
        """The fields of ``payoff.RunState`` as they stand now (with the blend's unit cost when given)."""
        return dict(
            unit_costs=self._unit_costs(blend),
            reference=self.reference,
            n_total=n_total,
            n_profiled=int(np.sum(self._ref_ok)),
            accuracy_target=self.config.accuracy_target,
            budget=self.config.error_budget,
        )

    def _unit_costs(self, blend=None) -> dict[str, float]:
        costs = {m: (c / n if n else self.prices.get(m, float("nan"))) for m, (n, c) in self._calls.items()}
        if blend:
            costs[blend_name(blend)] = sum(share * costs[m] for m, share in blend.items())
        return costs

    def _report(self, phase: str, tally: _Tally) -> None:
        if self.progress is None and not logger.isEnabledFor(logging.INFO):
            return
        budget = self.config.error_budget
        bounds = {
            m: (float(cp_lower(tally.k[m], tally.n[m], budget)), float(cp_upper(tally.k[m], tally.n[m], budget)))
            for m in tally.n
        }
        event = {
            "phase": phase,
            "items_done": len(self._positions),
            "spent": float(np.sum(self._item_costs)),
            "bounds": bounds,
        }
        logger.info(
            "SMART %s: %d items, spent $%.4f, bounds %s", phase, event["items_done"], event["spent"],
            {m: f"[{lo:.3f}, {hi:.3f}]" for m, (lo, hi) in bounds.items()},
        )
        if self.progress is not None:
            self.progress(event)

    # --- result -------------------------------------------------------------
    def _profile(self, n_total, alphas, pilot: _Tally, confirm: _Tally, pilot_size, confirm_size, weight=0.0,
                 reason: str = "", blend=None) -> Profile:
        positions = np.asarray(self._positions, dtype=np.int64)
        ref_ok = np.asarray(self._ref_ok, dtype=bool)
        target = float(remaining_target(self.config.accuracy_target, n_total, int(ref_ok.sum())))
        unit_costs = self._unit_costs(blend)
        budget = self.config.error_budget
        stats = {
            self.reference: ModelStats(
                self.reference, 0, 0, 1.0, 1.0, unit_costs[self.reference], "reference"
            )
        }
        for model in [*self._all_candidates, *([blend_name(blend)] if blend else [])]:
            n, k = confirm.n.get(model, 0), confirm.k.get(model, 0)
            pn, pk = pilot.n.get(model, 0), pilot.k.get(model, 0)
            alpha = alphas.get(model, 0.0)
            if model in alphas:
                lower = float(cp_lower(k, n, alpha * weight))
                upper = float(cp_upper(k, n, budget))
                status = "satisfied" if lower >= target else "invalid" if upper < target else "unknown"
            else:
                lower = 0.0
                upper = float(cp_upper(pk, pn, budget)) if pn else 1.0
                status = ("blended" if blend and model in blend else "invalid" if upper < target
                          else "dropped" if pn else "not profiled")
            stats[model] = ModelStats(
                model, n, k, lower, upper, unit_costs[model], status, alpha, alpha * weight, pn, pk
            )
        return Profile(
            n_total=n_total,
            reference=self.reference,
            accuracy_target=self.config.accuracy_target,
            stats=stats,
            positions=positions,
            item_costs=np.asarray(self._item_costs, dtype=float),
            reference_ok=ref_ok,
            reference_labels=self._ref_labels,
            reference_raws=self._ref_raws,
            reference_errors=self._ref_errors,
            pilot_size=pilot_size,
            confirmation_size=confirm_size,
            reason=reason,
            blend=dict(blend or {}),
        )


def _blend_pilot_counts(blend: dict[str, float], counts: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """Pilot counts standing in for the blend (for the pays-off rule's posterior only, never a bound)."""
    n = min(counts[m][0] for m in blend)
    rate = sum(share * counts[m][1] / max(counts[m][0], 1) for m, share in blend.items())
    return n, int(round(rate * n))


def _as_arrays(answers: Any, expected: int, model: str) -> AnswerArrays:
    """Accept AnswerArrays or a sequence of answer objects; check the length."""
    if isinstance(answers, AnswerArrays):
        arrays = answers
    else:
        answers = list(answers)
        ok = np.array([a.error is None for a in answers], dtype=bool)
        keys = np.empty(len(answers), dtype=object)
        keys[:] = [agreement_key(a.label, a.raw) if a.error is None else None for a in answers]
        arrays = AnswerArrays(
            keys=keys,
            costs=np.array([float(a.cost or 0.0) for a in answers], dtype=float),
            ok=ok & np.array([k is not None for k in keys], dtype=bool),
            labels=[a.label for a in answers],
            raws=[a.raw for a in answers],
            errors=[a.error for a in answers],
        )
    if len(arrays.costs) != expected:
        raise ValueError(
            f"answer source returned {len(arrays.costs)} answers for {expected} items of model {model!r}"
        )
    return arrays
