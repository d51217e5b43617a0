"""Feed the cascade from an answer source (the LLM client, the answer store, a replay).

``answer_source(model, positions) -> answers`` is the profiler's convention
(``profiler.py``): objects with ``label``, ``raw``, ``error`` and, for a model
whose catalogue entry asks for log-probabilities, ``confidence``. A failed cheap
call or an answer without a confidence gets confidence ``-inf`` (it is never kept
above any real threshold); a failed reference call counts as a disagreement, the
side that can only make the certificate stricter.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from smart_spark.llm.labels import agreement_key

AnswerSource = Callable[[str, Sequence[int]], Sequence[Any]]


def cascade_profile(
    answer_source: AnswerSource, cheap: str, reference: str
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The ``profile(positions) -> (confidence, agrees)`` callable :func:`certify_cascade` pays through."""

    def profile(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = [int(p) for p in positions]
        cheap_answers = list(answer_source(cheap, rows))
        reference_answers = list(answer_source(reference, rows))
        if len(cheap_answers) != len(rows) or len(reference_answers) != len(rows):
            raise ValueError(
                f"answer source returned {len(cheap_answers)}/{len(reference_answers)} answers "
                f"for {len(rows)} rows of models {cheap!r}/{reference!r}"
            )
        confidence = np.array([_confidence(a) for a in cheap_answers], dtype=float)
        agrees = np.array([_agree(c, r) for c, r in zip(cheap_answers, reference_answers)], dtype=bool)
        return confidence, agrees

    return profile


def _confidence(answer: Any) -> float:
    value = getattr(answer, "confidence", None)
    if answer.error is not None or value is None or math.isnan(value):
        return -math.inf
    return float(value)


def _agree(cheap: Any, reference: Any) -> bool:
    if cheap.error is not None or reference.error is not None:
        return False
    key = agreement_key(cheap.label, cheap.raw)
    return key is not None and key == agreement_key(reference.label, reference.raw)
