"""What the simulation and benchmark jobs share: their settings grid, the binomial noise band and the CSV they write."""

from __future__ import annotations

import argparse
import csv
import math
from typing import Mapping, Sequence


def settings_parser(doc: str, *, seed: int) -> argparse.ArgumentParser:
    """The arguments every fit simulation takes: runs per setting, the N and confidence grid, the target, the seed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--n", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.8, 0.99])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--out")
    return parser


def noise_band(allowed: float, runs: int) -> float:
    """The highest violation rate consistent with ``allowed``: it plus 3 binomial standard deviations over ``runs``."""
    return allowed + 3 * math.sqrt(allowed * (1 - allowed) / runs)


def write_rows(path: str, rows: Sequence[Mapping[str, object]]) -> None:
    """One CSV row per dict, the first row's keys as the header."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
