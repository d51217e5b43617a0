"""Per-model request bookkeeping of the stand-in server.

Tests use it to prove the client's accounting: every retry shows up as a
request, and ``answered_count(model, prompt) == 1`` shows no answer was paid
for twice.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict


class RequestCounters:
    """Thread-safe counts of requests, answers, faults and distinct prompts per model.

    ``per_prompt=False`` keeps counts per model only (``distinct_prompts`` and
    :meth:`answered_count` are then unknown: -1): a million-row benchmark would
    otherwise hold every prompt in the process that runs the server.
    """

    def __init__(self, per_prompt: bool = True) -> None:
        self._lock = threading.Lock()
        self._per_prompt = per_prompt
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._answered: Counter[tuple[str, str]] = Counter()
            self._prompts: defaultdict[str, set[str]] = defaultdict(set)

    def request(self, model: str, prompt: str) -> None:
        with self._lock:
            self._requests[model] += 1
            if self._per_prompt:
                self._prompts[model].add(prompt)

    def fault(self, model: str) -> None:
        with self._lock:
            self._faults[model] += 1

    def answered(self, model: str, prompt: str) -> None:
        with self._lock:
            self._answered[(model, prompt if self._per_prompt else "")] += 1

    def answered_count(self, model: str, prompt: str) -> int:
        if not self._per_prompt:
            return -1
        with self._lock:
            return self._answered[(model, prompt)]

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            answered: Counter[str] = Counter()
            for (model, _), count in self._answered.items():
                answered[model] += count
            return {
                model: {
                    "requests": self._requests[model],
                    "answered": answered[model],
                    "distinct_prompts": len(self._prompts[model]) if self._per_prompt else -1,
                    "faults": self._faults[model],
                }
                for model in sorted(self._requests)
            }
