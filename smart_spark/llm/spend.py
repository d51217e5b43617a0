"""The one owner of spending: a hard USD cap that calls in flight can never overshoot.

Before each call, :meth:`SpendBudget.reserve` sets aside the call's worst-case
cost (the catalogue's own :meth:`~smart_spark.catalogue.ModelSpec.cost` of an
upper estimate of the prompt's tokens and ``max_tokens`` completion tokens);
the call is sent only if the reservation fits under the cap. When the call
returns, :meth:`SpendBudget.settle` replaces the reservation by what the call
actually cost. So however many calls run at once, committed + reserved never
exceeds the cap, and the cap holds up to the token estimate (about 3 characters
per token, the same rule for every model, plus 8 tokens of chat framing).
Thread-safe.
"""

from __future__ import annotations

import threading

from smart_spark.catalogue import ModelCatalogue

#: Characters per token assumed for the worst case (real tokenisers give more characters per token).
CHARS_PER_TOKEN = 3
#: Tokens of chat framing (role markers) added to every prompt.
FRAMING_TOKENS = 8


def estimated_prompt_tokens(prompt: str, system_prompt: str | None = None) -> int:
    chars = len(prompt) + len(system_prompt or "")
    return -(-chars // CHARS_PER_TOKEN) + FRAMING_TOKENS


class SpendBudget:
    """A USD budget shared by every call of one phase (profiling, or one apply batch)."""

    def __init__(self, limit: float, catalogue: ModelCatalogue, max_tokens: int, system_prompt: str | None = None):
        if limit < 0:
            raise ValueError(f"a spend budget must be >= 0 USD, got {limit!r}")
        self.limit = float(limit)
        self._catalogue = catalogue
        self._max_tokens = max_tokens
        self._system_prompt = system_prompt
        self._committed = 0.0
        self._reserved = 0.0
        self._lock = threading.Lock()

    @property
    def spent(self) -> float:
        """USD actually charged by settled calls."""
        return self._committed

    def worst_case(self, model: str, prompt: str, price_factor: float = 1.0) -> float:
        """``price_factor``: the share of the on-line price the call pays (a Batch API line: ``batch_discount``)."""
        spec = self._catalogue[model]
        return spec.cost(estimated_prompt_tokens(prompt, self._system_prompt), self._max_tokens) * price_factor

    def reserve(self, model: str, prompt: str, price_factor: float = 1.0) -> float | None:
        """Set aside the worst case of one call; None when it no longer fits (do not call)."""
        cost = self.worst_case(model, prompt, price_factor)
        with self._lock:
            if self._committed + self._reserved + cost > self.limit + 1e-15:
                return None
            self._reserved += cost
            return cost

    def settle(self, reserved: float, actual: float) -> None:
        """The call that reserved ``reserved`` cost ``actual``."""
        with self._lock:
            self._reserved -= reserved
            self._committed += float(actual)
