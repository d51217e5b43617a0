"""``SmartRun``: what a fit measured and decided, as the summaries and MLflow show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SmartRun:
    """Driver-side record of one fit (plain data; the MLflow logger and summaries read it)."""

    plan: Any
    profile: Any
    n_rows: int
    n_valid: int
    pool_size: int
    profiling_seconds: float
    progress: list[dict] = field(default_factory=list)
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    output_col: str = "prediction"
    reference: str = ""
    #: USD the fit paid (profiling answers bought now; answers reused from the store cost nothing).
    fit_paid: float = 0.0
    #: Profiling answers reused from the answer store instead of paid.
    fit_reused: int = 0
    profiled_keys: frozenset = frozenset()
    consumed_keys: frozenset = frozenset()
    #: Rows whose prompt exceeds maxPromptChars (truncated, errored or failing per oversizePolicy).
    oversize_rows: int = 0
    #: The certified confidence cascade the plan applies (``cascade_fit.CascadeFit.to_dict``), or None.
    cascade: dict | None = None
    #: Profiling cost beyond the plain profile's: the cascade's certification rows (0 without a cascade candidate).
    cascade_profiling_spend: float = 0.0

    @property
    def reference_unit_cost(self) -> float:
        value = self.plan.unit_costs.get(self.reference, 0.0) or 0.0
        return float(value) if value == value else 0.0

    @property
    def reference_only_cost(self) -> float:
        """Estimated USD for the reference on every valid row."""
        return self.reference_unit_cost * self.n_valid

    @property
    def expected_cost(self) -> float:
        """Profiling spend plus the plan's expected spend on the remaining rows."""
        return float(self.profile.spent) + self.cascade_profiling_spend + float(self.plan.expected_cost)

    def summary(self) -> str:
        ref = self.reference_only_cost
        lines = [
            f"SMART run: {self.n_rows} rows ({self.n_valid} with text), sample of {self.pool_size}, "
            f"profiling {self.profiling_seconds:.1f}s (paid now ${self.fit_paid:.4f}, "
            f"{self.fit_reused} answers reused from the answer store)",
            self.profile.summary(),
            self.plan.summary(),
            f"  expected total ${self.expected_cost:.4f} "
            f"(profiling ${self.profile.spent + self.cascade_profiling_spend:.4f}) "
            f"vs reference on all rows ${ref:.4f}"
            + (f" -> {ref / self.expected_cost:.1f}x cheaper" if self.expected_cost > 0 else ""),
        ]
        from smart_spark.spark.state import cascade_entries

        for c in reversed(cascade_entries(self.cascade)):
            kept = (" -> ".join(f"{s['model']} kept at confidence >= {s['threshold']:.6g}" for s in c["steps"])
                    if "steps" in c else f"{c['model']} answer kept at confidence >= {c['threshold']:.6g}")
            lines.insert(3, f"  cascade: {kept} "
                            f"(about {c['expected_kept_share']:.1%} of the rows left), else the reference; "
                            f"certified on {c['profiled_rows']} profiled rows at error budget {c['error_budget']:g}")
        if self.mlflow_run_id:
            lines.append(f"  MLflow run {self.mlflow_run_id}")
        return "\n".join(lines)
