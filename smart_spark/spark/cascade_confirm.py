"""Day two for a plan with confidence cascades: confirm it, thresholds included, on a fresh sample.

With its threshold fixed (saved with the model), whether a cascade's final
answer equals the reference's is a fixed property of each new row: the cheap
answer when its confidence is at or above the threshold, else the reference's
(the apply phase escalates it straight to the reference). So a cascade is one
more model to :func:`smart_spark.engine.confirm.confirm_plan`, whose argument
(everything adaptive fixed before a new row is seen, one Clopper-Pearson bound
per model on the fresh sample, union bound) covers it unchanged. Nothing is
chosen from the new rows but the shares, as for a plain plan.

:class:`CascadeAnswers` wraps the confirmation's answer source so a cascade
model's rows read as the cascade's final answers: an answer below the
threshold (or failed, or without a confidence) is replaced by the reference's
answer to the same row, which the confirmation asked first, at the cost of
both calls, so the planner sees the cascade's real unit cost. The money paid
counts that reference call once (:meth:`CascadeAnswers.paid_result`).

A chain of cascades (``A>B``, its thresholds saved) is confirmed the same way:
its answer on a new row is ``A``'s when it stands, else ``B``'s when it stands,
else the reference's, a fixed property of the row once the thresholds are.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from smart_spark.engine.cascade_chain import Steps
from smart_spark.spark.cascade_apply import stands
from smart_spark.spark.cascade_mix import composed_answer, paid_item_costs
from smart_spark.spark.state import cascade_entries

AnswerSource = Callable[[str, Sequence[int]], Sequence[Any]]


class CascadeAnswers:
    """``answer_source`` for the confirmation: cascade models and chains answer as their cascades."""

    def __init__(self, answer_source: AnswerSource, reference: str, thresholds: Mapping[str, float],
                 chains: Mapping[str, Steps] | None = None) -> None:
        self.source, self.reference = answer_source, reference
        self.routes: dict[str, Steps] = {m: ((m, float(t)),) for m, t in thresholds.items()}
        self.routes.update(chains or {})
        #: Per cascade or chain: rows asked, rows whose answer stood (not the reference's).
        self.asked = {m: 0 for m in self.routes}
        self.kept = {m: 0 for m in self.routes}
        #: Each (model, row) answer's own cost, once: the escalated rows' reference calls are the reference's.
        self.paid: dict[tuple[str, int], float] = {}
        self._answers: dict[tuple[str, int], Any] = {}

    def __call__(self, model: str, positions: Sequence[int]) -> list[Any]:
        steps = self.routes.get(model)
        if steps is None:
            return self._ask(model, [int(p) for p in positions])
        asked: dict[int, list[Any]] = {int(p): [] for p in positions}
        open_rows = [int(p) for p in positions]
        for step_model, threshold in steps:
            for p, a in zip(open_rows, self._ask(step_model, open_rows) if open_rows else ()):
                asked[p].append(a)
            open_rows = [p for p in open_rows if not stands(asked[p][-1], threshold)]
        for p, a in zip(open_rows, self._ask(self.reference, open_rows) if open_rows else ()):
            asked[p].append(a)  # the confirmation asks the reference first: already bought
        self.asked[model] += len(positions)
        self.kept[model] += len(positions) - len(open_rows)
        return [composed_answer(asked[int(p)], model) for p in positions]

    def _ask(self, model: str, positions: list[int]) -> list[Any]:
        """Ask ``model`` once per row (an escalated row's reference answer, or a chain model's, may be bought)."""
        missing = [p for p in positions if (model, p) not in self._answers]
        if missing:
            fresh = list(self.source(model, missing))
            self._answers.update(((model, p), a) for p, a in zip(missing, fresh))
            self.paid.update(((model, p), float(a.cost or 0.0)) for p, a in zip(missing, fresh))
        return [self._answers[(model, p)] for p in positions]

    def kept_rate(self, model: str) -> float:
        return self.kept[model] / self.asked[model] if self.asked.get(model) else float("nan")

    def paid_result(self, result: Any) -> Any:
        """``confirm_plan``'s result with its spend as paid (its item costs count an escalation's reference twice)."""
        profile = dataclasses.replace(result.profile,
                                      item_costs=paid_item_costs(self.paid, result.profile.positions))
        return dataclasses.replace(result, profile=profile, spent=profile.spent)


def cascade_rates(state: Any, profile_counts: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Day one's (items, agreements) per plan model, the cascades' own counts in place of their plain model's.

    They only size the confirmation sample (never enter a bound). A single
    certified cascade saved no counts: its plan's point estimate over its
    certification rows stands in.
    """
    plan = state.plan()
    counts = dict(profile_counts)
    for entry in cascade_entries(state.cascade):
        model = entry["model"]
        if "confirmation_rows" in entry:
            counts[model] = (int(entry["confirmation_rows"]), int(entry["confirmation_agreements"]))
        elif model in plan.estimates and entry.get("profiled_rows"):
            n = int(entry["profiled_rows"])
            counts[model] = (n, int(round(float(plan.estimates[model]) * n)))
    return counts


def confirmed_cascades(state: Any, plan: Any, answers: CascadeAnswers, sample_size: int,
                       alphas: Mapping[str, float]) -> dict | None:
    """The cascades the confirmed plan still routes rows to, with the confirmation's numbers (None: none)."""
    entries = []
    for entry in cascade_entries(state.cascade):
        model = entry["model"]
        share = float(plan.fractions.get(model, 0.0))
        if share <= 0:
            continue
        kept = answers.kept_rate(model)
        confirmed = {
            "model": model, "threshold": float(entry["threshold"]), "share": share,
            "expected_kept_share": share * (0.0 if math.isnan(kept) else kept) * plan.n_remaining
            / max(plan.n_total, 1),
            "profiled_rows": int(sample_size), "error_budget": float(alphas.get(model, 0.0)),
        }
        if "steps" in entry:  # a chain keeps its steps (the apply phase asks its models in turn)
            confirmed["steps"] = [{"model": s["model"], "threshold": float(s["threshold"])} for s in entry["steps"]]
        entries.append(confirmed)
    return {"kind": "confirmed", "cascades": entries} if entries else None
