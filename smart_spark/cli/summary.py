"""What the classify job tells its user at the end, and when it must fail instead.

The summary only states what the run actually got: with rows left without an
answer it claims no agreement bound and no savings figure (both are about
answered rows), and a run answered by the simulated stand-in says so on the
first line. :func:`check_profiling` and :func:`check_error_rate` turn a run
that cannot keep its promise into an error with its own exit code.
"""

from __future__ import annotations

import math
from typing import Any

from smart_spark.errors import ErrorRateExceeded, ProfilingError


def check_profiling(run) -> None:
    """Raise :class:`ProfilingError` when profiling asked the reference and got no answer at all."""
    profile = run.profile
    asked = len(profile.positions)
    if asked and profile.n_profiled == 0:
        errors = [e for e in (profile.reference_errors or []) if e]
        cause = f": {errors[0]}" if errors else ""
        raise ProfilingError(
            f"the reference model {profile.reference} answered none of the {asked} sampled rows{cause}; "
            "no plan can be guaranteed, so nothing more was called"
        )


def count_unanswered(written, output_col: str) -> tuple[int, int, int]:
    """(rows with text, of them without any model's answer, of those the failures) in a written output.

    Rows the spend cap stopped are unanswered but not failures (the cap did what
    it was asked); both kinds stop the summary from claiming a bound or savings.
    """
    from pyspark.sql import functions as F

    from smart_spark.spark.apply import EMPTY_TEXT, SPEND_CAP  # errors that are not call failures

    def col(name: str):
        return F.col(f"`{name}`")

    error, pred, model = col(output_col + "_error"), col(output_col), col(output_col + "_model")
    has_text = error.isNull() | (error != F.lit(EMPTY_TEXT))
    unanswered = has_text & pred.isNull() & model.isNull()
    failed = unanswered & ~F.coalesce(error.contains(SPEND_CAP), F.lit(False))
    row = written.agg(
        F.sum(has_text.cast("long")).alias("valid"),
        F.sum(unanswered.cast("long")).alias("unanswered"),
        F.sum(failed.cast("long")).alias("failed"),
    ).first()
    return int(row["valid"] or 0), int(row["unanswered"] or 0), int(row["failed"] or 0)


def check_error_rate(valid: int, failed: int, max_error_rate: float, output: str) -> None:
    if valid and failed / valid > max_error_rate:
        raise ErrorRateExceeded(
            f"{failed} of {valid} rows with text ({failed / valid:.1%}) ended without an answer because every "
            f"model call failed, more than max_error_rate {max_error_rate:g}; the output at {output} was written "
            "with the reasons in its _error column"
        )


def summarize(model, written, config: dict[str, Any]) -> dict[str, Any]:
    run = model.appliedRun
    plan, profile = run.plan, run.profile
    figures = model.summarize(written)
    valid, unanswered, failed = count_unanswered(written, config["output_col"])
    expected = 0.0
    for m, f in plan.fractions.items():
        rate = 1.0 if m == plan.reference else getattr(profile.stats.get(m), "agreement_rate", float("nan"))
        expected += f * rate
    figures.update(
        rows_with_text=valid,
        unanswered=unanswered,
        failed=failed,
        remaining_target=plan.remaining_target,
        n_profiled=plan.n_total - plan.n_remaining,
        expected_agreement=expected,
        agreement_bound=plan.agreement_bound,
        accuracy_target=plan.accuracy_target,
        confidence=plan.confidence,
        fractions=dict(plan.fractions),
        mlflow_run_id=run.mlflow_run_id,
        mlflow_tracking_uri=run.mlflow_tracking_uri,
        output=config["output"],
        simulated=bool(config["stand_in"]),
    )
    return figures


def format_summary(s: dict[str, Any]) -> str:
    shares = ", ".join(f"{m} {f:.1%}" for m, f in sorted(s["fractions"].items(), key=lambda kv: -kv[1]) if f > 0)
    unanswered = s["unanswered"]
    lines = ["=== SMART classify: summary ==="]
    if s["simulated"]:
        lines.append("answers              SIMULATED by the local stand-in server (not a real LLM)")
    lines += [
        f"rows                 {s['rows']} ({s['null_predictions']} without a prediction, {unanswered} of them "
        f"unanswered: {s['failed']} failed calls, {unanswered - s['failed']} stopped by the spend cap)",
        f"realised spend       ${s['spend'] + s.get('fit_paid', 0.0):.4f} (fit ${s.get('fit_paid', 0.0):.4f}, "
        f"apply ${s['spend']:.4f}: the cost column, what this write paid)",
    ]
    if s.get("reference_only_cost"):
        lines.append(f"reference-only est.  ${s['reference_only_cost']:.4f}")
    savings = s.get("savings", float("nan"))
    reference_cost = s.get("reference_only_cost", float("nan"))
    if unanswered:
        lines.append(f"savings              not reported: {unanswered} rows have no answer")
    elif not (math.isfinite(reference_cost) and reference_cost > 0):
        lines.append("savings              not reported: the reference's cost per row was not measured (nothing profiled)")
    elif not math.isfinite(savings):
        lines.append("savings              not reported: nothing was spent")
    else:
        lines.append(f"savings              {savings:.1f}x cheaper than the reference alone")
    lines.append(f"plan                 {shares}")
    if unanswered:
        lines.append(
            f"agreement            target {s['accuracy_target']:g} at confidence {s['confidence']:g}: "
            f"NOT claimed, {unanswered} of {s['rows_with_text']} rows with text have no answer"
        )
    else:
        lines.append(
            f"agreement            target {s['accuracy_target']:g} at confidence {s['confidence']:g}; "
            f"the {s['rows'] - s['n_profiled']} unprofiled rows must reach "
            f"{s['remaining_target']:.4f}; agreement bound {s['agreement_bound']:.4f} "
            f"(holds with probability >= {s['confidence']:g}); expected agreement {s['expected_agreement']:.4f}"
        )
    lines += [
        "rows by model        " + ", ".join(f"{m}: {n}" for m, n in sorted(s["by_model"].items(), key=lambda kv: str(kv[0]))),
        f"output               {s['output']}",
    ]
    if s.get("mlflow_run_id"):
        lines.append(f"MLflow run           {s['mlflow_run_id']} at {s['mlflow_tracking_uri']}")
    else:
        lines.append("MLflow run           (not logged)")
    return "\n".join(lines)
