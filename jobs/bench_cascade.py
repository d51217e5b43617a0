"""Confidence cascade against BARGAIN on data with a cheap model's score and the reference's answer.

    python -m jobs.bench_cascade --data ../shared/data/cascade --target 0.9 \
        --confidence 0.9 --runs 100 --out cascade.csv

PATH is a CSV with ``id,label,proxy_score`` (or a folder of them): the cheap
model answers ``proxy_score >= 0.5`` with confidence ``max(p, 1 - p)``; ``label``
is the reference's answer. Per dataset and target the certified cascade runs R
times with different seeds; one CSV row per dataset and target. Costs: reference
1, cheap model 1/16 per row (GPT-4o vs GPT-4o-mini list prices); every call is
counted, profiling included (ours pays the cheap model on the unprofiled rows only
when the cascade is used; BARGAIN scores every row with it). When the
``bargain`` package is installed (``pip install smart_spark[bench]``), BARGAIN_A
runs on the same data and seeds in the same run and is printed beside ours.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from smart_spark.engine.cascade import certify_cascade, disagreement_budget
from smart_spark.engine.cascade_data import CascadeData, dataset_paths, load_dataset
from jobs.sim_output import write_rows

CHEAP_COST = 1.0 / 16.0
REFERENCE_COST = 1.0


def oracle_kept(data: CascadeData, target: float) -> float:
    """Share kept by the best threshold known in advance (no profiling): the ceiling."""
    order = np.argsort(-data.confidence, kind="stable")
    wrong = np.cumsum(~data.agrees[order])
    conf = data.confidence[order]
    budget = disagreement_budget(conf.size, target)
    best = 0
    for prefix in range(conf.size, 0, -1):
        if wrong[prefix - 1] <= budget and (prefix == conf.size or conf[prefix - 1] > conf[prefix]):
            best = prefix
            break
    return best / conf.size


@dataclass(frozen=True)
class RunOutcome:
    kept: float  # share of rows whose final answer did not come from a reference call
    agreement: float  # share of rows whose final answer equals the reference's
    cost: float  # per row, reference = 1


def run_ours(data: CascadeData, target: float, confidence: float, seed: int) -> RunOutcome:
    agrees, conf = data.agrees, data.confidence
    result = certify_cascade(
        conf.size,
        lambda positions: (conf[positions], agrees[positions]),
        accuracy_target=target,
        error_budget=1.0 - confidence,
        rng=np.random.default_rng(seed),
        cheap_cost_ratio=CHEAP_COST / REFERENCE_COST,
    )
    kept = result.kept(conf)
    cheap_calls = conf.size if result.uses_cheap_model else result.sampled.size
    cost = (CHEAP_COST * cheap_calls + REFERENCE_COST * (conf.size - kept.sum())) / conf.size
    wrong = int((kept & ~agrees).sum())
    return RunOutcome(kept=float(kept.mean()), agreement=1.0 - wrong / agrees.size, cost=cost)


def run_bargain(data: CascadeData, target: float, confidence: float, seed: int) -> RunOutcome:
    """BARGAIN_A (accuracy target) with its own sampling; every oracle-answered row counted."""
    from BARGAIN import BARGAIN_A, Oracle, Proxy

    cheap, conf, reference = data.cheap, data.confidence, data.reference

    class ReplayProxy(Proxy):
        def proxy_func(self, input):  # noqa: A002 - BARGAIN's signature
            i = int(input)
            return int(cheap[i]), float(conf[i])

    class ReplayOracle(Oracle):
        def oracle_func(self, input, proxy_output):  # noqa: A002
            i = int(input)
            return int(reference[i]) == proxy_output, int(reference[i])

    method = BARGAIN_A(
        ReplayProxy(verbose=False, max_workers=1),
        ReplayOracle(verbose=False, max_workers=1),
        target=target,
        delta=1.0 - confidence,
        verbose=False,
        seed=seed,
    )
    records = [str(i) for i in range(cheap.size)]
    output, used_oracle = method.process(records, return_oracle_usage=True)
    used = np.asarray(used_oracle, dtype=bool)
    # Rows BARGAIN sampled but then answered from the proxy were still paid to the oracle.
    sampled = np.zeros(cheap.size, dtype=bool)
    sampled[[int(k) for k in method.oracle.preds_dict]] = True
    paid = used | sampled
    agreement = float(np.mean(np.asarray(output, dtype=int) == reference))
    kept = 1.0 - float(paid.mean())
    # BARGAIN scores every row with the proxy before sampling.
    return RunOutcome(kept=kept, agreement=agreement, cost=CHEAP_COST + REFERENCE_COST * (1.0 - kept))


def summarise(data: CascadeData, target: float, confidence: float, outcomes: list[RunOutcome]) -> dict:
    kept = np.array([o.kept for o in outcomes])
    agreement = np.array([o.agreement for o in outcomes])
    cost = np.array([o.cost for o in outcomes])
    return {
        "kept_from_reference": float(kept.mean()),
        "kept_standard_error": float(kept.std(ddof=1) / np.sqrt(kept.size)) if kept.size > 1 else float("nan"),
        "violation_rate": float(np.mean(agreement < target - 1e-12)),
        "savings": float(1.0 - cost.mean() / REFERENCE_COST),
        "mean_agreement": float(agreement.mean()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--target", type=float, nargs="+", required=True)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-bargain", action="store_true", help="skip BARGAIN even if installed")
    args = parser.parse_args(argv)
    try:
        import BARGAIN  # noqa: F401

        with_bargain = not args.no_bargain
    except ImportError:
        with_bargain = False
        print("bargain not installed (pip install smart_spark[bench]): ours only", file=sys.stderr)

    rows = []
    for path in dataset_paths(args.data):
        data = load_dataset(path)
        for target in args.target:
            ours = [run_ours(data, target, args.confidence, seed) for seed in range(args.runs)]
            row = {
                "dataset": data.name,
                "n": data.confidence.size,
                "target": target,
                "confidence": args.confidence,
                "runs": args.runs,
                **summarise(data, target, args.confidence, ours),
                "oracle_threshold_kept": oracle_kept(data, target),
            }
            if with_bargain:
                theirs = [run_bargain(data, target, args.confidence, s) for s in range(args.runs)]
                for key, value in summarise(data, target, args.confidence, theirs).items():
                    row[f"bargain_{key}"] = value
            rows.append(row)
            print(_format(row, with_bargain), flush=True)
    write_rows(args.out, rows)
    return 0


def _format(row: dict, with_bargain: bool) -> str:
    text = (
        f"{row['dataset']:<16} n={row['n']:<6} target={row['target']:.3f} "
        f"kept ours={row['kept_from_reference']:.3f}+-{row['kept_standard_error']:.3f} "
        f"(viol {row['violation_rate']:.3f}, savings {row['savings']:.3f})"
    )
    if with_bargain:
        text += (
            f"  BARGAIN={row['bargain_kept_from_reference']:.3f}+-{row['bargain_kept_standard_error']:.3f} "
            f"(viol {row['bargain_violation_rate']:.3f}, savings {row['bargain_savings']:.3f})"
        )
    return text + f"  known-threshold ceiling={row['oracle_threshold_kept']:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
