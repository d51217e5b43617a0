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

Blends: a plan may certify two models as *one* (``blend``: member -> share
within the blend, fixed on the pilot). The blend's rows are one block of the
route hash; inside it a second, independent hash of the key
(:func:`split_unit_hash`) picks the member. Profiling scores each confirmation
row by the member the same split hash picks for it, so the blend is a single
model with one agreement flag per row and one exact bound at its full alpha
(``engine/blend.py``); no union bound over the pair.
"""

from __future__ import annotations

import hashlib
import math
import json
from dataclasses import asdict, dataclass, field

_UNIT = float(2**64)


def stable_unit_hash(key: str, seed: int) -> float:
    """Map ``key`` to [0, 1) identically in every process and Python version."""
    return _unit_hash(key, str(seed))


def split_unit_hash(key: str, seed: int) -> float:
    """The hash that picks a blend's member: like :func:`stable_unit_hash`, under another BLAKE2b key.

    A different key makes it independent of the route hash, so the member
    chosen inside the blend's block is as random as the block itself.
    """
    return _unit_hash(key, f"blend-split-{seed}")


def _unit_hash(key: str, salt: str) -> float:
    digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8, key=salt.encode())
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
    #: Models certified together as one (member -> share within the blend, summing to 1); empty: none.
    blend: dict[str, float] = field(default_factory=dict)
    #: The blend's one lower bound on its agreement (its members have no bound of their own).
    blend_bound: float = 0.0

    def __post_init__(self) -> None:
        if not self.fractions:
            raise ValueError("a plan needs at least one model")
        total = sum(self.fractions.values())
        if abs(total - 1.0) > 1e-6 or any(s < 0 for s in self.fractions.values()):
            raise ValueError(f"plan fractions must be >= 0 and sum to 1, got {self.fractions}")
        if self.blend:
            inside = sum(self.blend.values())
            if set(self.blend) - set(self.fractions) or abs(inside - 1.0) > 1e-6 or len(self.blend) < 2:
                raise ValueError(f"plan blend must name >= 2 plan models with shares summing to 1, got {self.blend}")

    # --- routing -----------------------------------------------------------
    def _groups(self) -> list[tuple[str, float]]:
        """Route-hash blocks in order: each plan model, the blend's members as one block."""
        groups = {m: x for m, x in self.fractions.items() if m not in self.blend}
        if self.blend:
            groups[blend_name(self.blend)] = sum(self.fractions[m] for m in self.blend)
        return sorted(groups.items())

    @property
    def models_by_cost(self) -> list[str]:
        """Plan models, cheapest expected unit cost first (reference last on ties)."""
        return sorted(
            self.fractions,
            key=lambda m: (self.unit_costs.get(m, float("inf")), m == self.reference, m),
        )

    def route(self, key: str) -> str:
        """The model for a row key: a stable hash against the cumulative shares.

        A blend is one block of that hash; :func:`split_unit_hash` then picks its member.
        """
        group = _pick(self._groups(), stable_unit_hash(key, self.seed))
        if self.blend and group == blend_name(self.blend):
            return blend_member(self.blend, split_unit_hash(key, self.seed))
        return group

    def route_units(self, units, split_units=None):
        """``route`` for many precomputed hash values at once (same answers).

        ``units``: ``stable_unit_hash`` of each key; ``split_units``: its
        ``split_unit_hash`` (needed only when the plan has a blend). Returns
        model indices into ``sorted(self.fractions)``; the simulations use it.
        """
        import numpy as np

        groups = self._groups()
        edges = np.cumsum([share for _, share in groups])
        picked = np.minimum(np.searchsorted(edges, np.asarray(units, dtype=float), side="right"), len(groups) - 1)
        ordered = sorted(self.fractions)
        names = np.array([ordered.index(g) if g in self.fractions else -1 for g, _ in groups])
        out = names[picked]
        if self.blend:
            if split_units is None:
                raise ValueError("a plan with a blend routes with split_units (split_unit_hash of each key)")
            members = sorted(self.blend)
            inner = np.cumsum([self.blend[m] for m in members])
            which = np.minimum(np.searchsorted(inner, np.asarray(split_units, dtype=float), side="right"), len(members) - 1)
            member_index = np.array([ordered.index(m) for m in members])[which]
            out = np.where(out < 0, member_index, out)
        return out

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
        remaining = sum(share * self._bound_of(model) for model, share in self.fractions.items())
        return (self.n_total - self.n_remaining + self.n_remaining * remaining) / self.n_total

    def _bound_of(self, model: str) -> float:
        if model in self.blend:
            return self.blend_bound
        return self.bounds.get(model, 1.0 if model == self.reference else 0.0)

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
        remaining = sum(share * self.estimates.get(model, self._bound_of(model))
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
        if self.blend:
            lines.append(
                f"  blend {blend_name(self.blend)} certified as one model: agreement >= {self.blend_bound:.4f}"
                f" (members picked by a second hash: "
                + ", ".join(f"{m} {x:.0%}" for m, x in sorted(self.blend.items())) + ")"
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


def blend_name(blend) -> str:
    """The name a blend goes by in plans, profiles and logs: its members joined by ``+``."""
    return "+".join(sorted(blend))


def blend_member(blend: dict[str, float], split_unit: float) -> str:
    """The member of ``blend`` a row with this ``split_unit_hash`` goes to."""
    return _pick(sorted(blend.items()), split_unit)


def _pick(groups: list[tuple[str, float]], u: float) -> str:
    cumulative = 0.0
    for name, share in groups:
        cumulative += share
        if u < cumulative:
            return name
    return groups[-1][0]
