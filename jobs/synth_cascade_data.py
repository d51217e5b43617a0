"""Synthetic ``id,label,proxy_score`` files of the form of ``../shared/data/cascade/``, for bench_cascade.

    python -m jobs.synth_cascade_data --out /tmp/cascade_synth --n 20000 100000 \
        --agreement 0.85 0.92 0.97 --kinds calibrated overconfident weak

The acceptance check runs bench_cascade on datasets we do not have (larger N,
targets up to 0.99); these files stand in for them. Per row the cheap model's
confidence ``c`` in [0.5, 1] is drawn as ``0.5 + 0.5 * Beta`` with mean such that
the cheap model agrees with the reference on ``agreement`` of the rows on
average, and it agrees with probability:

- ``calibrated``: ``c`` (the score means what it says);
- ``overconfident``: the calibrated ``c``, reported pushed to ``1 - (1 - c) / 4``;
- ``weak``: the calibrated ``c`` on a random 30% of rows, a score independent of
  correctness on the rest (weakly informative).

``proxy_score`` is ``c`` when the cheap answer is 1, else ``1 - c``; ``label`` is
the reference's answer: the cheap answer where they agree, the other one otherwise.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

KINDS = ("calibrated", "overconfident", "weak")
#: Beta concentration of the confidences above 0.5 (lower: more spread out).
CONCENTRATION = 3.0
#: Share of rows whose score is informative in the ``weak`` kind.
WEAK_INFORMATIVE = 0.3


def synthesize(kind: str, n_rows: int, agreement: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(label, proxy_score) per row, the cheap model agreeing with the reference on about ``agreement``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0.5 < agreement < 1.0:
        raise ValueError(f"agreement must be in (0.5, 1), got {agreement}")
    mean = (agreement - 0.5) / 0.5
    true = 0.5 + 0.5 * stats.beta.rvs(mean * CONCENTRATION, (1 - mean) * CONCENTRATION, size=n_rows,
                                      random_state=rng)
    agrees = rng.random(n_rows) < true
    shown = true.copy()
    if kind == "overconfident":
        shown = 1.0 - (1.0 - true) / 4.0
    elif kind == "weak":
        noise = ~(rng.random(n_rows) < WEAK_INFORMATIVE)
        shown[noise] = rng.permutation(true)[noise]
    cheap = (rng.random(n_rows) < 0.5).astype(int)
    label = np.where(agrees, cheap, 1 - cheap)
    proxy_score = np.where(cheap == 1, shown, 1.0 - shown)
    return label, proxy_score


def write_dataset(path: Path, label: np.ndarray, proxy_score: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "proxy_score"])
        writer.writerows((i, int(y), f"{p:.6f}") for i, (y, p) in enumerate(zip(label, proxy_score)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the CSV files to")
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--agreement", type=float, nargs="+", default=[0.85, 0.92, 0.97])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for kind in args.kinds:
        for n_rows in args.n:
            for agreement in args.agreement:
                label, score = synthesize(kind, n_rows, agreement, rng)
                path = out / f"{kind}_n{n_rows}_a{round(agreement * 100)}.csv"
                write_dataset(path, label, score)
                cheap = (score >= 0.5).astype(int)
                print(f"{path}: {n_rows} rows, cheap agrees on {np.mean(cheap == label):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
