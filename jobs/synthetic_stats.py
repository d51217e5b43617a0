"""Write statistics files shaped like the paper's (plus their prices) to test the engine beyond its grid.

The acceptance check of issue 10 runs statistics files we do not have, with
more models and other N; these stand in for them:

- ``overruling_like``: the 12 OVERRULING models (agreement with gpt-4, mean
  recorded cost per row) at N = 2,160 and 21,600;
- ``many_models``: 8 candidates spread over cost and agreement, N = 20,000 and 300,000;
- ``small_n``: 5 candidates at N = 1,000 and 3,000.

Each model's cost per item is its ``input_price_per_1k`` (1,000 prompt tokens
per item, no completion), so the catalogue written next to the CSV prices it.

    python -m jobs.synthetic_stats            # writes jobs/stats/*.csv and jobs/stats/synthetic_prices.yaml
    python -m jobs.reproduce_paper --stats jobs/stats/many_models.csv --prices jobs/stats/synthetic_prices.yaml \\
        --reference ref --methods mix --trials 10 --ceiling
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "stats"
REFERENCE = ("ref", 1.0, 0.00895)
OVERRULING_LIKE = (
    ("gptneox_20B", 0.718, 0.000479), ("gptj_6B", 0.473, 6.85e-05), ("fairseq_gpt_13B", 0.599, 0.000202),
    ("text-davinci-002", 0.969, 0.00587), ("text-curie-001", 0.726, 0.000587), ("gpt-3.5-turbo", 0.948, 0.000597),
    ("j1-jumbo", 0.755, 0.0055), ("j1-grande", 0.686, 0.00096), ("j1-large", 0.728, 0.00036),
    ("xlarge", 0.909, 0.00318), ("medium", 0.485, 0.00318),
)
MANY = (
    ("tiny", 0.62, 0.00005), ("small", 0.81, 0.00012), ("small-chat", 0.86, 0.00025), ("mid", 0.91, 0.0006),
    ("mid-chat", 0.93, 0.0009), ("large", 0.955, 0.0021), ("large-old", 0.9, 0.003), ("xl", 0.975, 0.004),
)
SMALL = (
    ("s1", 0.7, 0.0001), ("s2", 0.88, 0.0003), ("s3", 0.93, 0.0006), ("s4", 0.96, 0.0015), ("s5", 0.85, 0.002),
)
FILES = {
    "overruling_like": ((2_160, 21_600), OVERRULING_LIKE),
    "many_models": ((20_000, 300_000), MANY),
    "small_n": ((1_000, 3_000), SMALL),
}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    priced: dict[str, float] = {}
    for name, (sizes, models) in FILES.items():
        lines = ["dataset,nr_items,model,nr_prompt_tokens,nr_completion_tokens,cost,nr_processed,conformity"]
        for n in sizes:
            for model, rate, cost in (*models, REFERENCE):
                priced[model] = cost
                lines.append(f"{name}_{n},{n},{model},100000,0,{100 * cost:.6g},100,{rate}")
        (OUT / f"{name}.csv").write_text("\n".join(lines) + "\n")
    catalogue = ["# Prices for jobs/stats/*.csv (written by jobs/synthetic_stats.py): USD per item = input price per 1k.",
                 "models:"]
    for model, cost in priced.items():
        catalogue += [f"  - name: {model}", f"    input_price_per_1k: {cost:.8f}", "    output_price_per_1k: 0"]
    (OUT / "synthetic_prices.yaml").write_text("\n".join(catalogue) + "\n")
    print(f"wrote {len(FILES)} statistics files and synthetic_prices.yaml to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
