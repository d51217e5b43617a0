"""The plan shipped to executors: which share of the remaining rows goes to which model.

Routing must give the same model for the same row in every process, on every
task retry and on re-evaluation of the DataFrame, so it hashes the row key with
a keyed BLAKE2b digest (Python's ``hash()`` is salted per process).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

_UNIT = float(2**64)


def stable_unit_hash(key: str, seed: int) -> float:
    """Map ``key`` to [0, 1) identically in every process and Python version."""
    digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8, key=str(seed).encode())
    return int.from_bytes(digest.digest(), "big") / _UNIT


@dataclass(frozen=True)
class Plan:
    """Shares per model for the rows not profiled, and the numbers behind them."""

    fractions: dict[str, float]
    reference: str
    accuracy_target: float
    confidence: float
    remaining_target: float
    n_total: int
    n_remaining: int
    unit_costs: dict[str, float]
    bounds: dict[str, float] = field(default_factory=dict)
    alphas: dict[str, float] = field(default_factory=dict)
    method: str = "mix"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.fractions:
            raise ValueError("a plan needs at least one model")
        total = sum(self.fractions.values())
        if abs(total - 1.0) > 1e-6 or any(s < 0 for s in self.fractions.values()):
            raise ValueError(f"plan fractions must be >= 0 and sum to 1, got {self.fractions}")

    # --- routing -----------------------------------------------------------
    @property
    def models_by_cost(self) -> list[str]:
        """Plan models, cheapest expected unit cost first (reference last on ties)."""
        return sorted(
            self.fractions,
            key=lambda m: (self.unit_costs.get(m, float("inf")), m == self.reference, m),
        )

    def route(self, key: str) -> str:
        """The model for a row key: a stable hash against the cumulative shares."""
        u = stable_unit_hash(key, self.seed)
        cumulative = 0.0
        ordered = sorted(self.fractions)
        for model in ordered:
            cumulative += self.fractions[model]
            if u < cumulative:
                return model
        return ordered[-1]

    def escalation(self, model: str) -> list[str]:
        """Models to try, in order, after ``model`` failed: dearer plan models, then the reference."""
        own_cost = self.unit_costs.get(model, 0.0)
        dearer = [
            m
            for m in self.models_by_cost
            if m not in (model, self.reference) and self.unit_costs.get(m, 0.0) >= own_cost
        ]
        return dearer + ([self.reference] if model != self.reference else [])

    @property
    def agreement_bound(self) -> float:
        """The promised agreement over all rows: profiled rows exact, the rest at the bounds.

        ``(n_profiled + R * sum(share * bound)) / N``; it is at least the
        accuracy target whenever the plan is feasible, and holds with the
        plan's confidence.
        """
        if not self.n_total:
            return 1.0
        remaining = sum(share * self.bounds.get(model, 1.0 if model == self.reference else 0.0)
                        for model, share in self.fractions.items())
        return (self.n_total - self.n_remaining + self.n_remaining * remaining) / self.n_total

    # --- costs -------------------------------------------------------------
    @property
    def expected_cost_per_item(self) -> float:
        return sum(s * self.unit_costs.get(m, 0.0) for m, s in self.fractions.items())

    @property
    def expected_cost(self) -> float:
        """Expected USD for the remaining rows under this plan."""
        return self.expected_cost_per_item * self.n_remaining

    @property
    def reference_only_cost(self) -> float:
        """Expected USD had the reference answered the remaining rows."""
        return self.unit_costs.get(self.reference, 0.0) * self.n_remaining

    # --- serialisation -----------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls(**json.loads(text))

    def summary(self) -> str:
        lines = [
            f"SMART plan ({self.method}): target {self.accuracy_target:.3f} at confidence "
            f"{self.confidence:.3f}; {self.n_remaining} of {self.n_total} rows left, "
            f"which must reach {self.remaining_target:.4f}",
        ]
        for model in self.models_by_cost:
            bound = self.bounds.get(model)
            lines.append(
                f"  {model:<28} share {self.fractions[model]:7.2%}  "
                f"unit cost ${self.unit_costs.get(model, 0.0):.6f}"
                + (f"  agreement >= {bound:.4f}" if bound is not None else "")
                + (f"  (alpha {self.alphas[model]:.4f})" if model in self.alphas else "")
            )
        lines.append(
            f"  agreement over all rows >= {self.agreement_bound:.4f} "
            f"with probability >= {self.confidence:.3f}"
        )
        ref = self.reference_only_cost
        lines.append(
            f"  expected cost ${self.expected_cost:.4f} vs reference-only ${ref:.4f}"
            + (f" ({ref / self.expected_cost:.1f}x cheaper)" if self.expected_cost > 0 else "")
        )
        return "\n".join(lines)
