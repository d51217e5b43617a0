"""The run chart: each model's agreement bounds against the target, the chosen shares, the costs."""

from __future__ import annotations

import math
from typing import Any


def plan_figure(run: Any):
    """A matplotlib Figure (Agg backend, no display needed) for a :class:`SmartRun`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    plan, profile = run.plan, run.profile
    stats = sorted(profile.stats.values(), key=lambda s: (s.unit_cost if math.isfinite(s.unit_cost) else 0.0))
    names = [s.model for s in stats]
    fig = Figure(figsize=(13, max(3.5, 0.45 * len(names) + 1.5)))
    ax_bounds, ax_shares, ax_cost = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 2, 2]})

    ys = list(range(len(names)))
    for y, s in zip(ys, stats):
        lower = 1.0 if s.status == "reference" else s.lower
        upper = 1.0 if s.status == "reference" else s.upper
        colour = {"satisfied": "tab:green", "reference": "tab:blue", "invalid": "tab:red"}.get(s.status, "tab:grey")
        ax_bounds.plot([lower, upper], [y, y], color=colour, linewidth=4, solid_capstyle="butt")
        rate = s.agreement_rate
        if rate == rate:  # not NaN
            ax_bounds.plot([rate], [y], "k|", markersize=12)
        plan_bound = plan.bounds.get(s.model)
        if plan_bound is not None and s.model != plan.reference:
            ax_bounds.plot([plan_bound], [y], "k<", markersize=6)
    ax_bounds.axvline(plan.accuracy_target, color="black", linestyle="--", label=f"target {plan.accuracy_target:g}")
    if 0 < plan.remaining_target <= 1:
        ax_bounds.axvline(plan.remaining_target, color="tab:orange", linestyle=":",
                          label=f"remaining target {plan.remaining_target:.3f}")
    ax_bounds.set_yticks(ys, [f"{n} ({s.status})" for n, s in zip(names, stats)], fontsize=8)
    ax_bounds.set_xlim(0, 1.02)
    ax_bounds.set_xlabel("agreement with the reference (bar: bounds, |: observed, <: bound used by the plan)")
    ax_bounds.legend(loc="lower left", fontsize=8)
    ax_bounds.set_title("agreement bounds")

    shares = [plan.fractions.get(n, 0.0) for n in names]
    ax_shares.barh(ys, shares, color="tab:purple")
    for y, share in zip(ys, shares):
        if share > 0:
            ax_shares.text(share, y, f" {share:.1%}", va="center", fontsize=8)
    ax_shares.set_yticks(ys, [""] * len(ys))
    ax_shares.set_xlim(0, 1.15)
    ax_shares.set_title(f"chosen shares of the {plan.n_remaining} remaining rows")

    labels = ["profiling", "apply (expected)", "total (expected)", "reference only"]
    values = [profile.spent, plan.expected_cost, run.expected_cost, run.reference_only_cost]
    ax_cost.bar(range(4), values, color=["tab:grey", "tab:purple", "tab:green", "tab:blue"])
    ax_cost.set_xticks(range(4), labels, rotation=20, fontsize=8)
    ax_cost.set_ylabel("USD")
    ax_cost.set_title("expected cost vs reference only")
    for x, v in enumerate(values):
        ax_cost.text(x, v, f"${v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(
        f"SMART {plan.method}: target {plan.accuracy_target:g} at confidence {plan.confidence:g}, "
        f"N={plan.n_total}, reference {plan.reference}"
    )
    fig.tight_layout()
    return fig
