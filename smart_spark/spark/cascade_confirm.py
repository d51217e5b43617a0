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
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from smart_spark.spark.cascade_mix import escalated_answer, paid_item_costs, stands
from smart_spark.spark.state import cascade_entries

AnswerSource = Callable[[str, Sequence[int]], Sequence[Any]]


class CascadeAnswers:
    """``answer_source`` for the confirmation: cascade models answer as their cascades."""

    def __init__(self, answer_source: AnswerSource, reference: str, thresholds: Mapping[str, float]) -> None:
        self.source, self.reference, self.thresholds = answer_source, reference, dict(thresholds)
        self._reference_answers: dict[int, Any] = {}
        #: Per cascade model: rows asked, rows whose cheap answer stood.
        self.asked = {m: 0 for m in self.thresholds}
        self.kept = {m: 0 for m in self.thresholds}
        #: Each (model, row) answer's own cost, once: the escalated rows' reference calls are the reference's.
        self.paid: dict[tuple[str, int], float] = {}

    def __call__(self, model: str, positions: Sequence[int]) -> list[Any]:
        answers = list(self.source(model, positions))
        self.paid.update(((model, int(p)), float(a.cost or 0.0)) for p, a in zip(positions, answers))
        if model == self.reference:
            self._reference_answers.update(zip((int(p) for p in positions), answers))
            return answers
        threshold = self.thresholds.get(model)
        if threshold is None:
            return answers
        missing = [int(p) for p in positions if int(p) not in self._reference_answers]
        if missing:  # the confirmation asks the reference first; this only guards another order
            fresh = list(self.source(self.reference, missing))
            self._reference_answers.update(zip(missing, fresh))
            self.paid.update(((self.reference, p), float(a.cost or 0.0)) for p, a in zip(missing, fresh))
        out = []
        for position, answer in zip(positions, answers):
            self.asked[model] += 1
            if stands(answer, threshold):
                self.kept[model] += 1
                out.append(answer)
                continue
            out.append(escalated_answer(answer, self._reference_answers[int(position)], model))
        return out

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
        entries.append({
            "model": model, "threshold": float(entry["threshold"]), "share": share,
            "expected_kept_share": share * (0.0 if math.isnan(kept) else kept) * plan.n_remaining
            / max(plan.n_total, 1),
            "profiled_rows": int(sample_size), "error_budget": float(alphas.get(model, 0.0)),
        })
    return {"kind": "confirmed", "cascades": entries} if entries else None
