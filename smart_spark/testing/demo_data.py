"""A seeded, labelled demo dataset: short product reviews with sentiment labels.

Built from templates and word lists (no downloads), so the front-door job and
the quickstart notebook have varied text to classify::

    from smart_spark.testing.demo_data import demo_reviews
    rows = demo_reviews(3000, seed=0)          # list of dicts: id, review, category, sentiment
    df = spark.createDataFrame(demo_frame(3000))  # pandas DataFrame

``sentiment`` is the label the template was written for (positive / negative /
neutral); it is ground truth for the demo, not something SMART uses.
"""

from __future__ import annotations

import random
from typing import Any

LABELS = ("positive", "negative", "neutral")

PRODUCTS = {
    "kitchen": ["blender", "kettle", "toaster", "chef's knife", "frying pan", "coffee grinder", "rice cooker"],
    "electronics": ["headphones", "phone charger", "bluetooth speaker", "webcam", "e-reader", "smartwatch", "keyboard"],
    "outdoors": ["tent", "hiking boots", "water bottle", "headlamp", "sleeping bag", "camping stove"],
    "home": ["desk lamp", "vacuum cleaner", "pillow", "bath towel set", "air purifier", "office chair"],
    "toys": ["puzzle", "board game", "building blocks set", "remote control car", "plush bear"],
}
ASPECTS = ["build quality", "battery life", "price", "packaging", "delivery", "design", "size", "noise level",
           "instructions", "customer service", "finish", "weight"]
POSITIVE_ADJ = ["excellent", "great", "fantastic", "solid", "superb", "really good", "impressive", "lovely"]
NEGATIVE_ADJ = ["terrible", "poor", "disappointing", "flimsy", "awful", "cheap-feeling", "useless", "bad"]
NEUTRAL_ADJ = ["okay", "average", "fine", "acceptable", "standard", "as expected", "ordinary"]
DURATIONS = ["a week", "two weeks", "a month", "three months", "half a year", "a couple of days"]
WHO = ["my kids", "my partner", "me", "our office", "my parents", "the whole family"]

TEMPLATES = {
    "positive": [
        "I love this {product}. The {aspect} is {adj} and it works perfectly.",
        "Used the {product} for {duration} now and it is {adj}. Would buy again!",
        "{Adj} {product}, {who} use it every day. Five stars.",
        "The {aspect} of this {product} is {adj}. Exceeded my expectations.",
        "Bought it as a gift for {who} - the {product} is {adj} and arrived early.",
        "Honestly the best {product} I have owned; {aspect} is {adj}.",
    ],
    "negative": [
        "The {product} broke after {duration}. {Adj} {aspect}, avoid.",
        "Really {adj} {product}. The {aspect} is a joke and support never answered.",
        "Returned the {product} within {duration}: {adj} {aspect} and it smelled of plastic.",
        "Do not buy this {product}. {who} found the {aspect} {adj}. One star.",
        "Waste of money. The {aspect} on this {product} is {adj}.",
        "{Adj}. The {product} stopped working after {duration} and the refund took ages.",
    ],
    "neutral": [
        "The {product} does what it says. {Aspect} is {adj}, nothing special.",
        "Received the {product} after {duration}. It is {adj} for the price.",
        "{Adj} {product}. The {aspect} could be better but it is not bad either.",
        "It's a {product}. {who} use it sometimes; {aspect} is {adj}.",
        "Neither great nor terrible: the {product}'s {aspect} is {adj}.",
        "The {product} arrived as described. Haven't used it much yet, {aspect} seems {adj}.",
    ],
}
_ADJ = {"positive": POSITIVE_ADJ, "negative": NEGATIVE_ADJ, "neutral": NEUTRAL_ADJ}


def demo_reviews(n: int = 3000, seed: int = 0, *, blank_rate: float = 0.0) -> list[dict[str, Any]]:
    """``n`` seeded reviews as dicts ``{id, review, category, sentiment}``.

    ``blank_rate`` makes that share of reviews empty (``None``), to exercise the
    empty-text handling.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    rng = random.Random(seed)
    categories = sorted(PRODUCTS)
    rows = []
    for i in range(n):
        sentiment = rng.choices(LABELS, weights=(0.45, 0.3, 0.25))[0]
        category = rng.choice(categories)
        adj = rng.choice(_ADJ[sentiment])
        aspect = rng.choice(ASPECTS)
        text = rng.choice(TEMPLATES[sentiment]).format(
            product=rng.choice(PRODUCTS[category]),
            aspect=aspect,
            Aspect=aspect.capitalize(),
            adj=adj,
            Adj=adj.capitalize(),
            duration=rng.choice(DURATIONS),
            who=rng.choice(WHO),
        )
        if rng.random() < 0.15:
            text += rng.choice([" Shipping was quick.", " Box was dented.", " Ordered the blue one.",
                                " Second purchase.", " Price went up since."])
        if blank_rate and rng.random() < blank_rate:
            text = None
        rows.append({"id": i, "review": text, "category": category, "sentiment": sentiment})
    return rows


def demo_frame(n: int = 3000, seed: int = 0, **kwargs: Any):
    """:func:`demo_reviews` as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(demo_reviews(n, seed, **kwargs), columns=["id", "review", "category", "sentiment"])


def write_demo(path: str, n: int = 3000, seed: int = 0) -> str:
    """Write the demo set to ``path`` (format by extension: .csv, .json/.jsonl, .parquet)."""
    frame = demo_frame(n, seed)
    lower = str(path).lower()
    if lower.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif lower.endswith((".json", ".jsonl")):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


__all__ = ["LABELS", "demo_frame", "demo_reviews", "write_demo"]
