"""Finite datasets for checking the cascade's guarantee by simulation.

A dataset is fixed (agreement flags and confidences per row); runs differ only
in the profiling sample, which is the randomness the promise is about. Scores
are ``calibrated`` (P[agree | c] = c), ``overconfident`` (the calibrated c
pushed to 1 - (1 - c) / 4), ``unrelated`` (independent of agreement) or
``sorted`` (calibrated, rows ordered with every disagreement first, which a
procedure taking the first rows would fall for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

SCORE_KINDS = ("calibrated", "overconfident", "unrelated", "sorted")
#: Beta prior concentration of the simulated confidences (mean = agreement rate).
CONCENTRATION = 4.0


@dataclass(frozen=True)
class SimulatedCascadeData:
    confidence: np.ndarray
    agrees: np.ndarray


def simulate_dataset(kind: str, n_rows: int, agreement: float, rng: np.random.Generator) -> SimulatedCascadeData:
    """One fixed dataset whose cheap model agrees with the reference at ``agreement`` on average."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"kind must be one of {SCORE_KINDS}, got {kind!r}")
    a, b = agreement * CONCENTRATION, (1.0 - agreement) * CONCENTRATION
    latent = stats.beta.rvs(a, b, size=n_rows, random_state=rng)
    agrees = rng.random(n_rows) < latent
    confidence = latent.copy()
    if kind == "overconfident":
        confidence = 1.0 - (1.0 - latent) / 4.0
    elif kind == "unrelated":
        confidence = rng.permutation(latent)
    if kind == "sorted":
        order = np.argsort(agrees, kind="stable")
        confidence, agrees = confidence[order], agrees[order]
    return SimulatedCascadeData(confidence=confidence, agrees=agrees)
