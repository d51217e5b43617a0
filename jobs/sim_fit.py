"""The fit's cascade procedure on one simulated profiling order, for the cascade simulations.

``sim_cascade_fit`` and ``sim_chain_guarantee`` both run
``spark.cascade_fit_procedure.fit_with_cascades`` on rows whose agreement with
the reference (and confidence, for models that give one) are fixed in advance;
this is the answer source and bookkeeping they share.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np

from smart_spark.spark.cascade_fit_procedure import CascadeFitOutcome, fit_with_cascades

#: The exact enumerating solver (the fit's cbc finds the same optimum; no subprocess per plan).
SOLVER = "enumerate"


def simulated_fit(agrees: Mapping[str, np.ndarray], confidences: Mapping[str, np.ndarray],
                  costs: Mapping[str, float], order: np.ndarray, reference: str,
                  **fit_options: Any) -> tuple[CascadeFitOutcome, np.ndarray, float]:
    """(the procedure's outcome, profiled row ids, total spent) on the rows in ``order``.

    Pool position ``p`` is row ``order[p]``; the reference always answers "a",
    any other model "a" where it agrees, else "b"; a model in ``confidences``
    reports that row's confidence. ``fit_options`` go to ``fit_with_cascades``.
    """
    answers: dict[tuple[str, int], object] = {}

    def source(model, positions):
        out = []
        for p in positions:
            row = order[p]
            ok = True if model == reference else bool(agrees[model][row])
            conf = float(confidences[model][row]) if model in confidences else None
            out.append(SimpleNamespace(label="a" if ok else "b", raw=None, error=None, cost=costs[model],
                                       confidence=conf))
            answers[(model, int(p))] = out[-1]
        return out

    n_rows = order.size
    pool = [SimpleNamespace(key=str(p)) for p in range(n_rows)]
    outcome = fit_with_cascades(source, answers, reference=reference, pool=pool, n_valid=n_rows, prices=costs,
                                solver=SOLVER, **fit_options)
    rows = order[np.array(sorted(int(k) for k in outcome.profiled), dtype=int)]
    return outcome, rows, sum(float(a.cost) for a in answers.values())
