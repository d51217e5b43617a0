"""The plan shipped to executors: which share of the remaining rows goes to which model.

Routing must give the same model for the same row in every process, on every
task retry and on re-evaluation of the DataFrame, so it hashes the row key with
a keyed BLAKE2b digest (Python's ``hash()`` is salted per process).

Routing and escalation semantics (what the guarantee covers):

- A row goes to ``route(key)``. If that model's call fails, the row is tried
  on ``escalation(model)`` in order: dearer plan models, then the reference.
  This is covered by the bound because profiling counts a candidate's failed
  call as a *disagreement*: a model's bound already assumes each of its failed
  rows is wrong, so whatever answer escalation finds can only help.
- A row whose reference call fails (after retries, or skipped at the spend
  cap) ends with no answer and counts against the target. The plan leaves
  ``failure_slack_rows`` such rows of room: as long as at most that many rows
  end without an answer, the promise still holds (the Spark layer counts them
  and fails with ``ErrorRateExceeded`` past it). The profiler measures the
  reference's failure rate (``reference_failure_rate``) so a run can see in
  advance whether the slack is likely to suffice.
- Profiled rows are exact only because each is a distinct row: the Spark layer
  makes keys unique when ``idCol`` is not, so one profiled answer never stands
  for several rows.
"""

from __future__ import annotations

import hashlib
import math
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
    #: Share of profiled rows whose reference call failed after retries.
    reference_failure_rate: float = 0.0
    #: Point estimates of each plan model's agreement (for the expected agreement).
    estimates: dict[str, float] = field(default_factory=dict)
    #: Why the plan is reference-only (empty otherwise); logged and sent to MLflow.
    reason: str = ""

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

    def route_units(self, units):
        """``route`` for many precomputed ``stable_unit_hash`` values at once (same answers).

        Returns model indices into ``sorted(self.fractions)``; the simulations use it.
        """
        import numpy as np

        ordered = sorted(self.fractions)
        edges = np.cumsum([self.fractions[m] for m in ordered])
        return np.minimum(np.searchsorted(edges, np.asarray(units, dtype=float), side="right"), len(ordered) - 1)

    def escalation(self, model: str) -> list[str]:
        """Models to try, in order, after ``model`` failed: dearer plan models, then the reference.

        Valid because a failed candidate call counted as a disagreement while
        profiling (see the module doc): the bound never relies on the answer
        escalation finds.
        """
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

    @property
    def failure_slack_rows(self) -> int:
        """Rows that may end with no answer (e.g. reference failures) while the promise holds.

        ``floor(N * (agreement_bound - accuracy_target))``: the margin by which
        the promised agreement exceeds the target, in rows.
        """
        return max(0, int(math.floor(self.n_total * (self.agreement_bound - self.accuracy_target) + 1e-9)))

    @property
    def expected_agreement(self) -> float:
        """Expected agreement over all rows: profiled rows exact, the rest at share-weighted estimates.

        An estimate, not a promise: the promise is ``agreement_bound``.
        """
        if not self.n_total:
            return 1.0
        remaining = sum(share * self.estimates.get(model, self.bounds.get(model, 1.0 if model == self.reference else 0.0))
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
        if self.reason:
            lines.append(f"  reference only: {self.reason}")
        lines.append(
            f"  agreement over all rows >= {self.agreement_bound:.4f} "
            f"with probability >= {self.confidence:.3f} (guaranteed); "
            f"expected {self.expected_agreement:.4f} (estimate)"
        )
        lines.append(
            f"  rows that may end without an answer while the promise holds: {self.failure_slack_rows}"
            f" (reference failed on {self.reference_failure_rate:.2%} of profiled rows)"
        )
        ref = self.reference_only_cost
        lines.append(
            f"  expected cost ${self.expected_cost:.4f} vs reference-only ${ref:.4f}"
            + (f" ({ref / self.expected_cost:.1f}x cheaper)" if self.expected_cost > 0 else "")
        )
        return "\n".join(lines)
