"""Fit-time mix of plain models and a confidence cascade, planned by the engine's own profiler.

When the catalogue has a model with log-probabilities *and* at least one other
cheap model, the plain side of the fit (:mod:`smart_spark.spark.cascade_fit`'s
budget split) offers the engine that model as a cascade ``(model, threshold)``
beside the plain models, instead of the plain model:

1. The threshold is chosen on the rows the one-cascade certificate already
   profiled (the pool's first ``k`` rows, both models' answers paid): the one
   whose point-estimated mix with the reference costs least
   (``engine.cascade_options.pick_threshold``). Nothing more is paid for it.
2. The engine (``SmartEngine``: adaptive pilot, pays-off rules, confirmation,
   bounds at the routed group sizes, the mix planner) runs on the rest of the
   pool, ``pool[k:]``, for the rows outside the first ``k``, at the target those
   rows must reach. To it the cascade is one more model: its answer on a row is
   the cheap answer at or above the threshold, else the reference's (what the
   apply phase does: a cascade's unsure or failed rows go straight to the
   reference), at the cost of both calls.

Why the promise holds: ``k`` is a stopping time of the pool's random order (the
certificate stops from what it saw), so given the first ``k`` rows the rest of
the pool is a uniformly random order of the other rows. The threshold is fixed
from the first ``k`` rows, so on the other rows whether the cascade's final
answer equals the reference's is a fixed property of each row, and the
engine's guarantee covers the cascade like any model, on the rows it plans for.
The first ``k`` rows carry the reference's answer (exact), so the engine's
target for the others is ``(target N - k) / (N - k)``, and its promise over them
gives at least ``target N`` agreeing rows over all N.

One option per model: a model with log-probabilities is offered as its cascade
only (when the threshold chosen keeps every answered row, it is the plain model
and is offered plain), so the output's model column and the per-cascade kept
share stay unambiguous.

Chains (``engine.cascade_chain``): each other model with log-probabilities ``B``
also gives an option ``A>B`` (``A`` the cascade model): ``A``'s answer kept at
``conf_A >= t1``, else ``B``'s at ``conf_B >= t2``, else the reference's. ``B`` is
asked on the certificate's rows too (paid once, kept in ``answers``) and
``(t1, t2)`` chosen there, before the engine's rows, so to the engine the chain
is one more model, under its own share of the budget. Its rows are answered
by its models under their own names, so a cascade model that also answers in
a chain the plan uses has no realised kept share of its own (``summarize``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from smart_spark.engine.cascade_chain import (
    Steps,
    answered_by,
    chain_name,
    chain_row_costs,
    describe,
    pick_chain_thresholds,
)
from smart_spark.engine.cascade_options import pick_threshold
from smart_spark.llm.labels import agreement_key
from smart_spark.spark.cascade_apply import stands

logger = logging.getLogger("smart_spark")

AnswerSource = Callable[[str, Sequence[int]], Sequence[Any]]

#: Fewest certificate rows a threshold is chosen on (fewer: the model is offered plain).
MIN_THRESHOLD_ROWS = 40


def offers_cascade_mix(catalogue: Any, reference: str, method: str) -> bool:
    """True when the engine is offered a cascade beside plain models in the fit."""
    cheap = [s for s in catalogue if s.name != reference]
    return method == "mix" and len(cheap) >= 2 and any(getattr(s, "top_logprobs", 0) for s in cheap)


def chain_candidates(catalogue: Any, reference: str, first: str | None) -> list[str]:
    """The models with log-probabilities a chain ``first>B`` may go on to (not the reference, not ``first``)."""
    if first is None:
        return []
    return [s.name for s in catalogue if s.name not in (reference, first) and getattr(s, "top_logprobs", 0)]


def engine_with_cascade(
    answer_source: AnswerSource,
    answers: Mapping[tuple[str, int], Any],
    *,
    cascade_model: str,
    first_rows: int,
    models: Sequence[str],
    reference: str,
    n_valid: int,
    pool_size: int,
    config: Any,
    prices: Mapping[str, float],
    solver: str = "cbc",
    row_keys: Callable[[Sequence[int]], list[str]] | None = None,
    progress: Any = None,
    chain_models: Sequence[str] = (),
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The engine's result on ``pool[first_rows:]`` with ``cascade_model`` as a cascade (see the module doc).

    ``answers``: (model, pool position) -> answer already paid, the certificate's
    first ``first_rows`` rows among them. ``row_keys(pool positions)``: the rows'
    routing keys, so a blend is scored by the split hash production routes with.
    ``chain_models``: models ``B`` offered in a chain ``cascade_model>B`` (their
    answers to the first rows are paid here). Returns the engine's result with
    positions, totals and the target in terms of the whole pool and all
    ``n_valid`` rows, and ``{cascade_model: {"threshold", "kept_rate"}}`` (absent
    when the model is offered plain) plus ``{"A>B": {"threshold", "kept_rate",
    "steps", ...}}`` per chain offered.
    """
    from smart_spark.engine import SmartEngine
    from smart_spark.engine.engine import SmartResult

    k = min(int(first_rows), pool_size, n_valid)
    threshold, kept_rate = _threshold(answers, cascade_model, reference, k, prices, config.accuracy_target)
    cascade = math.isfinite(threshold)
    chains = {} if not cascade else {
        name: found for name, found in (
            _chain(answer_source, answers, [cascade_model, second], reference, k, prices, config.accuracy_target)
            for second in chain_models) if found}
    source = CascadeSource(answer_source, answers, cascade_model, reference, threshold if cascade else None, k,
                           chains={name: found["steps"] for name, found in chains.items()})
    exact = sum(1 for p in range(k) if _ok(answers.get((reference, p))))
    rest = n_valid - k
    target = min(1.0, max(0.0, (config.accuracy_target * n_valid - exact) / rest)) if rest else 0.0
    rest_prices = dict(prices)
    if cascade and cascade_model in prices and reference in prices:
        rest_prices[cascade_model] = prices[cascade_model] + (1.0 - kept_rate) * prices[reference]
    rest_prices.update({name: found["unit_cost"] for name, found in chains.items()})
    shifted_keys = None if row_keys is None else (lambda positions: row_keys([int(p) + k for p in positions]))
    engine = SmartEngine(dataclasses.replace(config, accuracy_target=target), list(models) + list(chains), reference,
                         solver=solver, prices=rest_prices, row_keys=shifted_keys)
    result = engine.run(rest, pool_size - k, source, progress=progress)
    if cascade:
        logger.info("SMART cascade beside plain models: %s kept at confidence >= %.6g (about %.1f%% of %d rows); "
                    "the engine planned the other %d rows", cascade_model, threshold, 100 * kept_rate, k, rest)
    for found in chains.values():
        logger.info("SMART chain of cascades offered: %s (about %.1f%% of %d rows kept from the reference)",
                    describe(found["steps"]), 100 * found["kept_rate"], k)
    profile = dataclasses.replace(result.profile, n_total=n_valid, accuracy_target=config.accuracy_target,
                                  positions=np.asarray(result.profile.positions, dtype=np.int64) + k,
                                  item_costs=paid_item_costs(source.paid, result.profile.positions))
    plan = dataclasses.replace(result.plan, n_total=n_valid, accuracy_target=config.accuracy_target)
    found: dict[str, dict[str, Any]] = {cascade_model: {"threshold": threshold, "kept_rate": kept_rate}} if cascade \
        else {}
    found.update(chains)
    return SmartResult(profile, plan), found


def _chain(answer_source: AnswerSource, answers: Mapping[tuple[str, int], Any], models: list[str], reference: str,
           k: int, prices: Mapping[str, float], target: float) -> tuple[str, dict[str, Any] | None]:
    """The chain of ``models`` with thresholds chosen on the first ``k`` rows (None: not offered).

    The later models' answers to those rows are paid here (the first model's
    and the reference's were paid by the certificate). Not offered when no
    threshold pair is expected to cost less than the reference, or when the
    first model would keep every row it answered (that is its plain model).
    """
    name = chain_name(models)
    rows = [p for p in range(k) if (models[0], p) in answers and _ok(answers.get((reference, p)))]
    if len(rows) < MIN_THRESHOLD_ROWS or any(m not in prices for m in [*models, reference]):
        return name, None
    got = {m: {p: answers[(m, p)] for p in rows if (m, p) in answers} for m in models}
    for model in models[1:]:
        missing = [p for p in rows if p not in got[model]]
        got[model].update(zip(missing, answer_source(model, missing)) if missing else ())
    ref_keys = [_key(answers[(reference, p)]) for p in rows]
    confidences = [np.array([_confidence(got[m][p]) for p in rows]) for m in models]
    agrees = [np.array([_key(got[m][p]) == r for p, r in zip(rows, ref_keys)], dtype=bool) for m in models]
    costs = [prices[m] for m in models]
    thresholds = pick_chain_thresholds(confidences, agrees, costs, prices[reference], target)
    answered = confidences[0][np.isfinite(confidences[0])]
    if thresholds is None or not answered.size or thresholds[0] <= answered.min():
        return name, None
    step = answered_by(confidences, thresholds)
    return name, {
        "threshold": thresholds[0], "kept_rate": float(np.mean(step < len(models))),
        "steps": tuple(zip(models, thresholds)),
        "step_kept_rates": [float(np.mean(step == i)) for i in range(len(models))],
        "unit_cost": float(np.mean(chain_row_costs(step, costs, prices[reference]))),
    }


class CascadeSource:
    """The engine's answer source on ``pool[offset:]``: the cascade model answers as its cascade.

    Every answer already paid (``answers``) is reused; a cascade answer below
    the threshold (or failed, or without a confidence) is replaced by the
    reference's answer to the row at the cost of both calls, which is the
    cascade's final answer and cost in the apply phase. ``threshold=None``:
    the model answers plain. ``chains``: option name -> steps; such an option
    answers as its chain (each model asked on the rows the one before did not
    keep, then the reference; the cost of every call made for the row).

    That cost is right for planning (the cascade's unit cost) but counts the
    reference twice on a profiled row the engine also asks the reference for:
    ``paid`` keeps each (model, engine position) answer's own cost once, for
    the profile's spend (:func:`paid_item_costs`).
    """

    def __init__(self, answer_source: AnswerSource, answers: Mapping[tuple[str, int], Any], model: str,
                 reference: str, threshold: float | None, offset: int,
                 chains: Mapping[str, Steps] | None = None) -> None:
        self.source, self.answers, self.reference, self.offset = answer_source, answers, reference, offset
        self.routes: dict[str, Steps] = dict(chains or {})
        if threshold is not None:
            self.routes[model] = ((model, threshold),)
        self._turn_taking = {reference, *self.routes, *(m for steps in self.routes.values() for m, _ in steps)}
        #: The engine asks models in parallel: the reference's, the cascades' and their models' calls take
        #: turns, so a row a cascade escalates is never asked of a model twice at once (paid twice).
        self._reference_turn = threading.Lock()
        self.paid: dict[tuple[str, int], float] = {}

    def __call__(self, model: str, positions: Sequence[int]) -> list[Any]:
        shifted = [int(p) + self.offset for p in positions]
        if not self.routes or model not in self._turn_taking:
            return self._ask(model, shifted)
        with self._reference_turn:
            steps = self.routes.get(model)
            if steps is None:
                return self._ask(model, shifted)
            asked: dict[int, list[Any]] = {p: [] for p in shifted}
            open_rows = shifted
            for step_model, threshold in steps:
                for p, a in zip(open_rows, self._ask(step_model, open_rows) if open_rows else ()):
                    asked[p].append(a)
                open_rows = [p for p in open_rows if not stands(asked[p][-1], threshold)]
            for p, a in zip(open_rows, self._ask(self.reference, open_rows) if open_rows else ()):
                asked[p].append(a)
        return [composed_answer(asked[p], model) for p in shifted]

    def _ask(self, model: str, positions: list[int]) -> list[Any]:
        missing = [p for p in positions if (model, p) not in self.answers]
        fresh = dict(zip(missing, self.source(model, missing))) if missing else {}
        out = [self.answers[(model, p)] if (model, p) in self.answers else fresh[p] for p in positions]
        self.paid.update(((model, p - self.offset), float(a.cost or 0.0)) for p, a in zip(positions, out))
        return out


def paid_item_costs(paid: Mapping[tuple[str, int], float], positions: Sequence[int]) -> np.ndarray:
    """USD per position: each model's answer to it counted once (an escalation's reference call is the reference's)."""
    per_position: dict[int, float] = {}
    for (_, position), cost in paid.items():
        per_position[position] = per_position.get(position, 0.0) + cost
    return np.array([per_position.get(int(p), 0.0) for p in positions], dtype=float)


def composed_answer(asked: Sequence[Any], option: str) -> Any:
    """A cascade's or chain's final answer to a row: the last answer asked, at the cost of every call made.

    A row kept by the first model is that model's answer as it is.
    """
    final = asked[-1]
    if len(asked) == 1:
        return final
    cost = sum(float(a.cost or 0.0) for a in asked)
    if dataclasses.is_dataclass(final):
        return dataclasses.replace(final, model=option, cost=cost)
    return SimpleNamespace(**{**vars(final), "model": option, "cost": cost})


def mix_cascades(plan: Any, cascades: Mapping[str, Mapping[str, float]], error_budget: float,
                 profile: Any = None) -> dict | None:
    """What the fitted state keeps (and MLflow logs) for the cascades the plan routes rows to (None: none)."""
    entries = []
    for model, cascade in sorted(cascades.items()):
        share = float(plan.fractions.get(model, 0.0))
        if share <= 0:
            continue
        stats = profile.stats.get(model) if profile is not None else None
        routed = share * plan.n_remaining / max(plan.n_total, 1)
        entry = {
            "model": model, "threshold": float(cascade["threshold"]), "share": share,
            "expected_kept_share": routed * float(cascade["kept_rate"]),
            "profiled_rows": int(stats.n + stats.pilot_n) if stats else 0,
            "error_budget": float(plan.alphas.get(model, 0.0)),
            "confirmation_rows": int(stats.n) if stats else 0,
            "confirmation_agreements": int(stats.agreements) if stats else 0,
        }
        if "steps" in cascade:  # a chain: each model's threshold and the share of all rows it is expected to keep
            entry["steps"] = [{"model": m, "threshold": float(t), "expected_kept_share": routed * float(r)}
                              for (m, t), r in zip(cascade["steps"], cascade["step_kept_rates"])]
        entries.append(entry)
    if not entries:
        return None
    return {"kind": "mix", "error_budget": error_budget, "cascades": entries}


def _threshold(answers, model, reference, k, prices, target) -> tuple[float, float]:
    """The threshold chosen on the first ``k`` rows and the share of them it keeps (inf: offer the model plain)."""
    rows = [p for p in range(k) if (model, p) in answers and _ok(answers.get((reference, p)))]
    if len(rows) < MIN_THRESHOLD_ROWS or model not in prices or reference not in prices:
        return math.inf, 0.0
    conf = np.array([_confidence(answers[(model, p)]) for p in rows])
    ref_keys = [_key(answers[(reference, p)]) for p in rows]
    agrees = np.array([_key(answers[(model, p)]) == r for p, r in zip(rows, ref_keys)], dtype=bool)
    t = pick_threshold(conf, agrees, prices[model], prices[reference], target)
    answered = conf[np.isfinite(conf)]
    if not math.isfinite(t) or not answered.size or t <= answered.min():
        return math.inf, 0.0  # no threshold pays, or the one chosen keeps every answered row: the plain model
    return float(t), float(np.mean(conf >= t))


def _confidence(answer: Any) -> float:
    value = getattr(answer, "confidence", None)
    if answer.error is not None or value is None or math.isnan(value):
        return -math.inf
    return float(value)


def _key(answer: Any) -> Any:
    return agreement_key(answer.label, answer.raw) if answer.error is None else None


def _ok(answer: Any) -> bool:
    return answer is not None and _key(answer) is not None
