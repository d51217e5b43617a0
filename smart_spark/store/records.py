"""One paid answer, and its one-line, checksummed form on disk.

A record is one line::

    <crc32 of the rest, 8 hex>\\t<answer key, 64 hex>\\t<compact JSON>\\n

A line is written with one write call, so a reader can meet at most one
incomplete line at the end of a file whose writer is still running or was
killed. Lines whose checksum, key or JSON does not check out are skipped and
counted, never trusted: a torn or corrupted line cannot change an answer.
The JSON uses short field names to keep files small (about 200 bytes per
answer with a short label).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

KEY_HEX_LEN = 64
_HEADER_LEN = 8 + 1 + KEY_HEX_LEN + 1  # crc, tab, key, tab


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as it was paid for: what the model said, what it cost, who paid."""

    key: str
    model: str
    label: str | None
    raw: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    confidence: float | None = None
    paid_at: float = 0.0
    writer: str = ""


def encode_payload(answer: StoredAnswer) -> bytes:
    """The JSON part of a record; ``raw`` is left out when it equals the label (the common case)."""
    fields: dict[str, Any] = {
        "m": answer.model,
        "l": answer.label,
        "pt": int(answer.prompt_tokens),
        "ct": int(answer.completion_tokens),
        "c": float(answer.cost),
        "t": float(answer.paid_at),
        "w": answer.writer,
    }
    if answer.raw != answer.label:
        if answer.raw is None:
            fields["rn"] = True
        else:
            fields["r"] = answer.raw
    if answer.confidence is not None:
        fields["cf"] = float(answer.confidence)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_line(key: str, payload: bytes) -> bytes:
    """A complete record line (with its checksum and trailing newline)."""
    body = key.encode("ascii") + b"\t" + payload
    return b"%08x\t" % zlib.crc32(body) + body + b"\n"


def decode_payload(key: bytes, payload: bytes) -> StoredAnswer:
    """Rebuild the answer from its key (32 raw bytes) and its JSON bytes."""
    fields = json.loads(payload)
    label = fields["l"]
    confidence = fields.get("cf")
    return StoredAnswer(
        key=key.hex(),
        model=fields["m"],
        label=label,
        raw=None if fields.get("rn") else fields.get("r", label),
        prompt_tokens=fields["pt"],
        completion_tokens=fields["ct"],
        cost=fields["c"],
        confidence=confidence,
        paid_at=fields["t"],
        writer=fields["w"],
    )


def precedence(answer: StoredAnswer) -> tuple[Any, ...]:
    """Order among records of one key: earliest payment first, then writer, then content.

    A total order on what a record says, so every process that sees the same
    records picks the same winner, whatever order it read the files in.
    """
    return (
        answer.paid_at,
        answer.writer,
        answer.model,
        answer.label is None,
        answer.label or "",
        answer.raw is None,
        answer.raw or "",
        answer.prompt_tokens,
        answer.completion_tokens,
        answer.cost,
        answer.confidence is None,
        answer.confidence or 0.0,
    )


@dataclass
class ParsedChunk:
    """The complete, valid records of a byte chunk, and what was skipped.

    ``keys`` holds the raw 32-byte keys (numpy ``V32``); ``payloads`` the
    records' JSON, one per line, in the same order. Nothing per record is a
    Python object, so loading a million answers does not churn the heap.
    """

    keys: np.ndarray
    payloads: bytes
    consumed: int
    corrupt: int

    @property
    def count(self) -> int:
        return len(self.keys)

    def records(self) -> list[tuple[bytes, bytes]]:
        """``(key, payload)`` pairs (for the few callers that want Python objects)."""
        if not self.count:
            return []
        return list(zip((bytes(k) for k in self.keys), self.payloads.split(b"\n")))


_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def _hex_decode(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of hex digits -> (rows of bytes, rows that were all valid hex)."""
    nibbles = _HEX[digits]
    valid = (nibbles != 255).all(axis=1)
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2], valid


#: Lines are checked in pieces of about this many bytes, bounding the temporary arrays.
PIECE_BYTES = 4 << 20


def parse_chunk(data: bytes, *, final: bool = False) -> ParsedChunk:
    """Split ``data`` into checked records (vectorised; only the checksum is per line).

    Bytes after the last newline are an incomplete line: not consumed (a later
    read continues there) unless ``final`` is set, when they count as corrupt.
    """
    end = data.rfind(b"\n") + 1
    corrupt = 1 if final and end < len(data) else 0
    keys: list[np.ndarray] = []
    payloads: list[bytes] = []
    start = 0
    while start < end:
        stop = data.rfind(b"\n", start, start + PIECE_BYTES) + 1 if start + PIECE_BYTES < end else end
        if stop <= start:  # one line longer than a piece
            stop = data.index(b"\n", start) + 1
        piece_keys, piece_payloads, piece_corrupt = _parse_piece(data, start, stop)
        corrupt += piece_corrupt
        if len(piece_keys):
            keys.append(piece_keys)
            payloads.append(piece_payloads)
        start = stop
    all_keys = np.concatenate(keys) if keys else np.empty(0, dtype="V32")
    return ParsedChunk(all_keys, b"\n".join(payloads), len(data) if final else end, corrupt)


def _parse_piece(data: bytes, offset: int, stop: int) -> tuple[np.ndarray, bytes, int]:
    """Checked records of ``data[offset:stop]`` (which ends with a newline)."""
    buf = np.frombuffer(data, dtype=np.uint8, count=stop - offset, offset=offset)
    size = len(buf)
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    lengths = ends - starts
    shaped = (lengths > _HEADER_LEN) & (buf[np.minimum(starts + 8, size - 1)] == 9)
    shaped &= buf[np.minimum(starts + _HEADER_LEN - 1, size - 1)] == 9
    corrupt = int(np.count_nonzero(~shaped & (lengths > 0)))
    starts, ends = starts[shaped], ends[shaped]
    if not len(starts):
        return np.empty(0, dtype="V32"), b"", corrupt
    header = np.lib.stride_tricks.sliding_window_view(buf, _HEADER_LEN - 1)[starts]
    crc_bytes, crc_ok = _hex_decode(header[:, :8])
    keys, key_ok = _hex_decode(header[:, 9:])
    stated = crc_bytes.astype(np.uint32)
    stated = (stated[:, 0] << 24) | (stated[:, 1] << 16) | (stated[:, 2] << 8) | stated[:, 3]
    view = memoryview(data)[offset:stop]
    crc32 = zlib.crc32
    actual = np.fromiter((crc32(view[a + 9 : b]) for a, b in zip(starts.tolist(), ends.tolist())), dtype=np.uint32, count=len(starts))
    good = crc_ok & key_ok & (stated == actual)
    corrupt += int(np.count_nonzero(~good))
    starts, ends, keys = starts[good], ends[good], keys[good]
    if not len(starts):
        return np.empty(0, dtype="V32"), b"", corrupt
    mark = np.zeros(size + 1, dtype=np.int8)
    mark[starts + _HEADER_LEN] = 1  # payload starts and line ends are all distinct positions
    mark[ends + 1] -= 1
    payloads = buf[np.cumsum(mark[:-1], dtype=np.int8) > 0].tobytes()[:-1]
    return np.ascontiguousarray(keys).view("V32").ravel(), payloads, corrupt
