"""Datasets of a cheap model's score and the reference's answer (``id,label,proxy_score``).

The form BARGAIN's evaluation data comes in (``../shared/data/cascade/``): the cheap
model's answer is ``proxy_score >= 0.5``, its confidence ``max(p, 1 - p)``, and
``label`` is the reference model's answer (0/1 or False/True).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class CascadeData:
    """One dataset: the cheap answer and confidence, and the reference's answer, per row."""

    name: str
    ids: list[str]
    cheap: np.ndarray
    confidence: np.ndarray
    reference: np.ndarray

    @property
    def agrees(self) -> np.ndarray:
        return self.cheap == self.reference


def _to_label(value: str) -> int:
    text = value.strip().lower()
    if text in ("1", "true", "1.0"):
        return 1
    if text in ("0", "false", "0.0"):
        return 0
    raise ValueError(f"label must be 0/1 or False/True, got {value!r}")


def load_dataset(path: Path) -> CascadeData:
    """Read ``id,label,proxy_score`` (extra columns such as a pandas index are ignored)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "label", "proxy_score"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: no rows")
    score = np.array([float(r["proxy_score"]) for r in rows])
    if np.isnan(score).any():
        raise ValueError(f"{path}: proxy_score has NaN values")
    reference = np.array([_to_label(r["label"]) for r in rows])
    return CascadeData(
        name=path.stem,
        ids=[r["id"] for r in rows],
        cheap=(score >= 0.5).astype(int),
        confidence=np.maximum(score, 1.0 - score),
        reference=reference,
    )


def dataset_paths(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise ValueError(f"--data {path}: folder has no .csv files")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise ValueError(f"--data {path}: no such file or folder")
    return out
