"""Row keys and the seeded uniform sample that profiling draws from.

Row key: the SHA-256 (hex) of the text, prefixed with the ``idCol`` value when
given, computed by Spark (the same in every process). Rows with null or blank
text get a null key: they are never sampled nor called. Duplicate texts
(without ``idCol``) share a key: a profiled text's reference answer is reused
for its duplicates, and they all route to the same model.

The sample is ordered by key before the seeded shuffle, so the same data and
seed give the same sample however the input is partitioned (a rerun after a
crash profiles the same rows, whose answers are then in the answer store).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

logger = logging.getLogger("smart_spark")

KEY_COL = "__smart_key"
RESULT_COL = "__smart_result"


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def valid_text(text_col: str) -> Column:
    """True when the text is not null and not only whitespace (Unicode-aware)."""
    text = F.col(quote(text_col))
    return text.isNotNull() & ~text.rlike(r"(?U)^\s*$")


def oversized(text_col: str, max_prompt_chars: int | None, prompt_overhead: int) -> Column:
    """True when the row's prompt (``prompt_overhead`` characters plus the text) exceeds ``max_prompt_chars``."""
    if max_prompt_chars is None:
        return F.lit(False)
    too_long = F.length(F.col(quote(text_col))) > F.lit(max_prompt_chars - prompt_overhead)
    return F.coalesce(too_long, F.lit(False))


def key_column(text_col: str, id_col: str | None, excluded: Column | None = None) -> Column:
    """The row key: the SHA-256 of the text, prefixed by the ``idCol`` value when there is one.

    With ``idCol`` the key still includes the text's hash, so rows that share an
    id but differ in text never share an answer. Rows matching ``excluded``
    (e.g. oversized under ``oversizePolicy="error"``) get a null key like blank ones.
    """
    text = F.col(quote(text_col))
    key = F.sha2(text, 256)
    if id_col:
        key = F.coalesce(F.concat_ws("|", F.col(quote(id_col)).cast("string"), key), key)
    usable = valid_text(text_col) if excluded is None else valid_text(text_col) & ~excluded
    return F.when(usable, key)


def with_keys(df: DataFrame, text_col: str, id_col: str | None, excluded: Column | None = None) -> DataFrame:
    return df.withColumn(KEY_COL, key_column(text_col, id_col, excluded))


def fingerprint_columns(oversize: Column) -> list[Column]:
    """Aggregates that identify a keyed DataFrame's rows: count, rows with text, a hash of the keys;
    plus the number of ``oversize`` rows."""
    key = F.col(KEY_COL)
    return [
        F.sum(oversize.cast("long")).alias("oversize"),
        F.count(F.lit(1)).alias("n"),
        F.count(key).alias("valid"),
        F.coalesce(F.sum(F.when(key.isNotNull(), F.pmod(F.xxhash64(key), F.lit(2**31 - 1)))), F.lit(0)).alias("hash"),
    ]


@dataclass(frozen=True)
class PoolRow:
    key: str
    text: str


def sample_fraction(wanted: int, available: int, attempt: int = 0) -> float:
    """Bernoulli fraction that yields >= ``wanted`` rows with high probability (5 sigma + slack)."""
    if available <= 0 or wanted >= available:
        return 1.0
    expected = wanted + 5.0 * math.sqrt(wanted) + 20.0
    fraction = expected / available * (2.0**attempt)
    return 1.0 if fraction >= 0.5 else fraction


def draw_pool(keyed: DataFrame, text_col: str, n_valid: int, wanted: int, seed: int) -> list[PoolRow]:
    """A seeded uniform sample of distinct keys, in seeded random order, at most ``wanted`` long.

    Sampled across all partitions with ``DataFrame.sample`` (never the first
    rows), collected to the driver, ordered by key and shuffled with
    ``seed``. Tries a larger fraction when the sample came out short.
    """
    if wanted <= 0 or n_valid <= 0:
        return []
    rows = []
    for attempt in range(4):
        fraction = sample_fraction(wanted, n_valid, attempt)
        candidates = keyed.where(F.col(KEY_COL).isNotNull()).select(KEY_COL, quote(text_col))
        if fraction < 1.0:
            candidates = candidates.sample(withReplacement=False, fraction=fraction, seed=seed + attempt)
        rows = candidates.collect()
        distinct = len({r[0] for r in rows})
        if fraction >= 1.0 or distinct >= wanted:
            break
        logger.info("SMART sample came out short (%d < %d rows); drawing a larger one", distinct, wanted)
    rows.sort(key=lambda r: (r[0], r[1]))
    seen: set[str] = set()
    pool: list[PoolRow] = []
    for key, text in rows:
        if key in seen:
            continue
        seen.add(key)
        pool.append(PoolRow(key, text))
    random.Random(seed).shuffle(pool)
    return pool[:wanted]
