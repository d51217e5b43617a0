"""What the simulation and benchmark jobs share: the binomial noise band and the CSV they write."""

from __future__ import annotations

import csv
import math
from typing import Mapping, Sequence


def noise_band(allowed: float, runs: int) -> float:
    """The highest violation rate consistent with ``allowed``: it plus 3 binomial standard deviations over ``runs``."""
    return allowed + 3 * math.sqrt(allowed * (1 - allowed) / runs)


def write_rows(path: str, rows: Sequence[Mapping[str, object]]) -> None:
    """One CSV row per dict, the first row's keys as the header."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
