"""Convert ``id,label,proxy_score`` data into a replay file the stand-in server serves.

    python -m smart_spark.testing.cascade_replay ../shared/data/cascade/court_opinion.csv replay.csv

The replay file has the row id as the query, the cheap model's answer and its
confidence (``<cheap>_answer``, ``<cheap>_confidence``: the server returns the
confidence as OpenAI log-probabilities when asked) and the reference's answer.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Sequence

from smart_spark.engine.cascade_data import load_dataset

#: Label text for the 0/1 answers of the data.
LABELS = ("no", "yes")


def convert(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    cheap: str = "cheap",
    reference: str = "reference",
) -> int:
    """Write the replay file; returns the number of rows."""
    data = load_dataset(Path(source))
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", f"{cheap}_answer", f"{cheap}_confidence", f"{reference}_answer"])
        for row_id, answer, confidence, truth in zip(data.ids, data.cheap, data.confidence, data.reference):
            writer.writerow([row_id, LABELS[answer], repr(float(confidence)), LABELS[truth]])
    return int(data.cheap.size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--cheap", default="cheap", help="model name of the cheap model")
    parser.add_argument("--reference", default="reference", help="model name of the reference")
    args = parser.parse_args(argv)
    rows = convert(args.source, args.target, cheap=args.cheap, reference=args.reference)
    print(f"wrote {rows} rows to {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
