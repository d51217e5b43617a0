"""A label's confidence from the token log-probabilities of a chat completion.

For a short classification answer the label is decided by the first token that
names one: we take the first answer position whose chosen token maps to a label
(skipping quotes, spaces and other formatting tokens), add up the probability of
the alternatives there by the label each maps to (``normalise_label``), and
return the mapped label's share of the mass on tokens that name *some* label.
Renormalising over label tokens removes mass on formatting variants that do not
decide anything ("Yes" vs " yes" both count for "yes"); tokens outside the top
``top_logprobs`` are unseen, which the share ignores (they are rare when the
model is sure, exactly where the cascade keeps answers).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from smart_spark.llm.labels import normalise_label


def label_confidence(token_logprobs: Sequence[Any] | None, label: str | None, labels: Sequence[str]) -> float | None:
    """Share of the label-naming probability mass on ``label``; None when unknown.

    ``token_logprobs``: the ``choices[0].logprobs.content`` list (objects or dicts
    with ``token``, ``logprob`` and ``top_logprobs``).
    """
    if label is None or not token_logprobs:
        return None
    for position in token_logprobs:
        if normalise_label(_field(position, "token"), labels) is None:
            continue
        mass: dict[str, float] = {}
        alternatives = _field(position, "top_logprobs") or [position]
        for alt in alternatives:
            alt_label = normalise_label(_field(alt, "token"), labels)
            if alt_label is not None:
                mass[alt_label] = mass.get(alt_label, 0.0) + math.exp(float(_field(alt, "logprob")))
        total = sum(mass.values())
        if total <= 0.0:
            return None
        return mass.get(label, 0.0) / total
    return None


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)
