"""Answers in memory as a few sorted numpy blocks: about 100 bytes per answer.

A Python dict of ``bytes -> bytes`` costs about 340 bytes per answer
(``jobs/bench_store.py``); a Spark Python worker serving a 1M-row job would
hold 1M of them. Here each answer is one row of a fixed-width record array
(key, model/writer/label/raw as codes into shared string tables, tokens,
cost, time, confidence) plus an 8-byte key prefix used for binary search.

New records arrive in blocks (one per refresh). Blocks are merged so their
sizes stay geometric (a log-structured merge), so a lookup binary-searches a
handful of sorted arrays. Records of one key are resolved with
:func:`records.precedence` when blocks merge and at lookup, so the winner
does not depend on the order records were read in.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from smart_spark.store.records import StoredAnswer, decode_payload, precedence

ROW = np.dtype(
    [
        ("k", "V32"),
        ("m", "<i4"),
        ("w", "<i4"),
        ("l", "<i4"),
        ("r", "<i4"),
        ("pt", "<i8"),
        ("ct", "<i8"),
        ("c", "<f8"),
        ("t", "<f8"),
        ("cf", "<f8"),
    ]
)
NONE = -1  # string code for None
SAME_AS_LABEL = -2  # raw code: the raw text equals the label
_MAX_BLOCKS = 12


class StringTable:
    """Each distinct model, writer, label and raw text stored once, referred to by an int code."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.values: list[str] = []

    def code(self, value: str | None) -> int:
        if value is None:
            return NONE
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code

    def value(self, code: int) -> str | None:
        return None if code < 0 else self.values[code]

    def codes_of(self, column: Any) -> np.ndarray:
        """Codes for a pyarrow string column (nulls -> NONE)."""
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column).combine_chunks()
        mapping = np.array([self.code(v) for v in encoded.dictionary.to_pylist()] + [NONE], dtype=np.int32)
        indices = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
        return mapping[indices]


class Block:
    """Rows sorted by key prefix, at most one row per key."""

    __slots__ = ("prefix", "rows")

    def __init__(self, prefix: np.ndarray, rows: np.ndarray) -> None:
        self.prefix = prefix
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)


def _prefixes(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 32)[:, :8].copy().view("<u8").ravel()


class AnswerTable:
    """Every known answer, keyed by the raw 32-byte answer key."""

    def __init__(self) -> None:
        self.strings = StringTable()
        self.blocks: list[Block] = []
        self.duplicates = 0

    def add(self, keys: np.ndarray, payloads: bytes) -> int:
        """Add checked records (``V32`` keys, one JSON payload per line); returns how many payloads were unusable."""
        if not len(keys):
            return 0
        rows, bad = self._rows(keys, payloads)
        if len(rows):
            self.blocks.append(self._sorted_unique(rows))
            self._merge_tail()
        return bad

    def consolidate(self) -> None:
        """Merge every block into one (exact counts for summaries)."""
        if len(self.blocks) > 1:
            self.blocks = [self._sorted_unique(np.concatenate([b.rows for b in self.blocks]))]

    def __len__(self) -> int:
        self.consolidate()
        return sum(len(b) for b in self.blocks)

    def model_counts(self) -> dict[str, int]:
        self.consolidate()
        counts: dict[str, int] = {}
        for block in self.blocks:
            codes, n = np.unique(block.rows["m"], return_counts=True)
            for code, count in zip(codes.tolist(), n.tolist()):
                name = self.strings.value(code) or ""
                counts[name] = counts.get(name, 0) + count
        return counts

    def get_many(self, keys: Sequence[bytes]) -> list[StoredAnswer | None]:
        """The winning answer of each key (None when unknown); vectorised per block."""
        if not keys:
            return []
        found: list[StoredAnswer | None] = [None] * len(keys)
        wanted = np.frombuffer(b"".join(keys), dtype="V32")
        wanted_prefix = _prefixes(wanted)
        for block in self.blocks:
            left = np.searchsorted(block.prefix, wanted_prefix, side="left")
            right = np.searchsorted(block.prefix, wanted_prefix, side="right")
            hits = np.flatnonzero(right > left)
            if not len(hits):
                continue
            queries, positions = self._matches(block, wanted, hits, left, right)
            for query, answer in zip(queries, self._answers(block.rows[positions])):
                current = found[query]
                if current is None or precedence(answer) < precedence(current):
                    found[query] = answer
        return found

    @staticmethod
    def _matches(block: Block, wanted: np.ndarray, hits: np.ndarray, left: np.ndarray, right: np.ndarray) -> tuple[list[int], np.ndarray]:
        """(query index, row position) of every full-key match among prefix hits."""
        single = hits[right[hits] - left[hits] == 1]
        same = block.rows["k"][left[single]] == wanted[single]
        queries = single[same].tolist()
        positions = left[single][same].tolist()
        for query in hits[right[hits] - left[hits] > 1].tolist():  # 64-bit prefix collision: compare keys
            for at in range(int(left[query]), int(right[query])):
                if block.rows["k"][at] == wanted[query]:
                    queries.append(query)
                    positions.append(at)
        return queries, np.asarray(positions, dtype=np.int64)

    def _answers(self, rows: np.ndarray) -> list[StoredAnswer]:
        """Rows -> answers, column by column (numpy row access is slow)."""
        value = self.strings.value
        answers = []
        for k, m, w, l, r, pt, ct, c, t, cf in zip(
            rows["k"].tolist(), rows["m"].tolist(), rows["w"].tolist(), rows["l"].tolist(), rows["r"].tolist(),
            rows["pt"].tolist(), rows["ct"].tolist(), rows["c"].tolist(), rows["t"].tolist(), rows["cf"].tolist(),
        ):
            label = value(l)
            answers.append(
                StoredAnswer(
                    key=k.hex(), model=value(m) or "", label=label, raw=label if r == SAME_AS_LABEL else value(r),
                    prompt_tokens=pt, completion_tokens=ct, cost=c, confidence=None if cf != cf else cf,
                    paid_at=t, writer=value(w) or "",
                )
            )
        return answers

    def _rows(self, keys: np.ndarray, payloads: bytes) -> tuple[np.ndarray, int]:
        try:
            return self._rows_arrow(keys, payloads), 0
        except Exception:  # a payload pyarrow will not take: sort them out one by one
            return self._rows_python(keys, payloads)

    def _rows_arrow(self, keys: np.ndarray, payloads: bytes) -> np.ndarray:
        """All payloads parsed at once by pyarrow's JSON reader (the fast path)."""
        import pyarrow as pa
        import pyarrow.json as pj

        # The system allocator gives the parse buffers back; mimalloc/jemalloc pools keep them.
        table = pj.read_json(
            io.BytesIO(payloads),
            read_options=pj.ReadOptions(block_size=1 << 24),
            parse_options=pj.ParseOptions(explicit_schema=_arrow_schema(), unexpected_field_behavior="ignore"),
            memory_pool=pa.system_memory_pool(),
        )
        if table.num_rows != len(keys):
            raise ValueError("payload count mismatch")
        for required in ("m", "pt", "ct", "c", "t", "w"):
            if table.column(required).null_count:
                raise ValueError(f"missing {required}")
        rows = np.empty(len(keys), dtype=ROW)
        rows["k"] = keys
        rows["m"] = self.strings.codes_of(table.column("m"))
        rows["w"] = self.strings.codes_of(table.column("w"))
        rows["l"] = self.strings.codes_of(table.column("l"))
        raw = self.strings.codes_of(table.column("r"))
        raw_none = table.column("rn").combine_chunks().fill_null(False).to_numpy(zero_copy_only=False)
        rows["r"] = np.where(raw_none, NONE, np.where(raw == NONE, SAME_AS_LABEL, raw))
        for name in ("pt", "ct", "c", "t"):
            rows[name] = table.column(name).to_numpy()
        rows["cf"] = table.column("cf").combine_chunks().fill_null(math.nan).to_numpy(zero_copy_only=False)
        return rows

    def _rows_python(self, keys: np.ndarray, payloads: bytes) -> tuple[np.ndarray, int]:
        """Record by record, skipping payloads that do not decode (a writer bug, not a torn line)."""
        rows = np.empty(len(keys), dtype=ROW)
        n = bad = 0
        lines = payloads.split(b"\n")
        if len(lines) != len(keys):
            return rows[:0], len(keys)
        for key, payload in zip((bytes(k) for k in keys), lines):
            try:
                a = decode_payload(key, payload)
                raw = SAME_AS_LABEL if a.raw == a.label else self.strings.code(a.raw)
                conf = math.nan if a.confidence is None else float(a.confidence)
                rows[n] = (key, self.strings.code(a.model), self.strings.code(a.writer), self.strings.code(a.label), raw,
                           int(a.prompt_tokens), int(a.completion_tokens), float(a.cost), float(a.paid_at), conf)
            except (ValueError, KeyError, TypeError, json.JSONDecodeError, OverflowError):
                bad += 1
                continue
            n += 1
        return rows[:n], bad

    def _sorted_unique(self, rows: np.ndarray) -> Block:
        """Sort by key prefix and keep one row per key (the precedence winner)."""
        prefix = _prefixes(rows["k"])
        order = np.argsort(prefix, kind="stable")
        rows, prefix = rows[order], prefix[order]
        same = np.flatnonzero(prefix[1:] == prefix[:-1])
        if len(same):
            keep = np.ones(len(rows), dtype=bool)
            for start in self._duplicate_groups(same):
                end = start + 1
                while end < len(rows) and prefix[end] == prefix[start]:
                    end += 1
                self._resolve(rows, keep, start, end)
            rows, prefix = rows[keep], prefix[keep]
        return Block(prefix, rows)

    @staticmethod
    def _duplicate_groups(same: np.ndarray) -> list[int]:
        """First index of each run of equal prefixes."""
        starts = same[np.concatenate(([True], same[1:] != same[:-1] + 1))]
        return starts.tolist()

    def _resolve(self, rows: np.ndarray, keep: np.ndarray, start: int, end: int) -> None:
        by_key: dict[bytes, list[int]] = {}
        for at in range(start, end):
            by_key.setdefault(bytes(rows[at]["k"]), []).append(at)
        for positions in by_key.values():
            if len(positions) < 2:
                continue
            if len({rows[at].tobytes() for at in positions}) == 1:  # one record read twice (e.g. our own write)
                for at in positions[1:]:
                    keep[at] = False
                continue
            answers = dict(zip(positions, self._answers(rows[positions])))
            winner = min(positions, key=lambda at: precedence(answers[at]))
            distinct = {answers[at] for at in positions}
            self.duplicates += len(distinct) - 1
            for at in positions:
                keep[at] = at == winner

    def _merge_tail(self) -> None:
        blocks = self.blocks
        while len(blocks) > 1 and (len(blocks[-2]) <= 2 * len(blocks[-1]) or len(blocks) > _MAX_BLOCKS):
            last = blocks.pop()
            previous = blocks.pop()
            blocks.append(self._sorted_unique(np.concatenate([previous.rows, last.rows])))


_SCHEMA: Any = None


def _arrow_schema() -> Any:
    global _SCHEMA
    if _SCHEMA is None:
        import pyarrow as pa

        _SCHEMA = pa.schema(
            [
                ("m", pa.string()),
                ("l", pa.string()),
                ("r", pa.string()),
                ("rn", pa.bool_()),
                ("pt", pa.int64()),
                ("ct", pa.int64()),
                ("c", pa.float64()),
                ("t", pa.float64()),
                ("w", pa.string()),
                ("cf", pa.float64()),
            ]
        )
    return _SCHEMA
