"""Executor side of cascades and chains: the models a row tries, and when an answer stands.

Kept free of the engine's imports (numpy, the planner): the apply UDF loads it
in every Python worker.

A row routed to

- a plain model tries it, then :meth:`Plan.escalation` (dearer plan models, the
  reference) when a call fails; every answer stands;
- a cascade model (``ApplySpec.cascades``: model -> threshold) tries it, then
  the reference; the cheap answer stands only at or above its threshold;
- a chain option (``ApplySpec.chains``: option name -> ((model, threshold), ...))
  tries its models in order, each answer standing only at or above its step's
  threshold, then the reference.

A cascade's or chain's unsure or failed rows go on along the chain and then
straight to the reference (never down the plan's escalation list): that is
exactly what their agreement flags counted when they were certified.
"""

from __future__ import annotations

import math
from typing import Any, Optional

#: One step of a row's way: the model asked and the confidence its answer needs (None: any answer stands).
Step = tuple[str, Optional[float]]


def row_steps(spec: Any, plan: Any, first: str) -> list[Step]:
    """The models a row routed to ``first`` tries, in order, with each answer's threshold."""
    chain = spec.chains.get(first)
    if chain is not None:
        return [(model, float(threshold)) for model, threshold in chain] + [(plan.reference, None)]
    threshold = spec.cascades.get(first)
    if threshold is not None:
        return [(first, float(threshold)), (plan.reference, None)]
    # a failed plain call goes on to dearer plan models (not chain options: they are no model) and the reference
    return [(first, None)] + [(model, None) for model in plan.escalation(first) if model not in spec.chains]


def stands(answer: Any, threshold: float | None) -> bool:
    """The answer is kept: answered and, under a threshold, with a confidence at or above it."""
    if answer.error is not None:
        return False
    if threshold is None:
        return True
    confidence = getattr(answer, "confidence", None)
    return confidence is not None and not math.isnan(confidence) and confidence >= threshold
