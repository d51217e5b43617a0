"""One paid answer, and its one-line, checksummed form on disk.

A record is one line::

    <crc32 of the rest, 8 hex>\\t<answer key, 64 hex>\\t<compact JSON>\\n

A line is written with one write call, so a reader can meet at most one
incomplete line at the end of a file whose writer is still running or was
killed. Lines whose checksum, key or JSON does not check out are skipped and
counted, never trusted: a torn or corrupted line cannot change an answer.
The JSON uses short field names because the index keeps each record's JSON
bytes in memory (see ``index.py``).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

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
        raw=fields.get("r", label),
        prompt_tokens=fields["pt"],
        completion_tokens=fields["ct"],
        cost=fields["c"],
        confidence=confidence,
        paid_at=fields["t"],
        writer=fields["w"],
    )


def precedence(payload: bytes) -> tuple[float, str, bytes]:
    """Order among records of one key: earliest payment first, then writer, then bytes.

    Every process that sees the same records picks the same winner, whatever
    order it read the files in.
    """
    fields = json.loads(payload)
    return (float(fields["t"]), str(fields["w"]), payload)


@dataclass
class ParsedChunk:
    """The complete, valid records of a byte chunk, and what was skipped."""

    records: list[tuple[bytes, bytes]]
    consumed: int
    corrupt: int


def parse_chunk(data: bytes, *, final: bool = False) -> ParsedChunk:
    """Split ``data`` into checked records.

    Bytes after the last newline are an incomplete line: not consumed (a later
    read continues there) unless ``final`` is set, when they count as corrupt.
    """
    end = data.rfind(b"\n") + 1
    records: list[tuple[bytes, bytes]] = []
    corrupt = 0
    crc32 = zlib.crc32
    append = records.append
    for line in data[:end].split(b"\n")[:-1]:
        if len(line) <= _HEADER_LEN or line[8:9] != b"\t" or line[_HEADER_LEN - 1 : _HEADER_LEN] != b"\t":
            if line:
                corrupt += 1
            continue
        try:
            if int(line[:8], 16) != crc32(line[9:]):
                corrupt += 1
                continue
            key = bytes.fromhex(line[9 : _HEADER_LEN - 1].decode("ascii"))
        except ValueError:
            corrupt += 1
            continue
        if len(key) != KEY_HEX_LEN // 2:
            corrupt += 1
            continue
        append((key, line[_HEADER_LEN:]))
    if final and end < len(data):
        corrupt += 1
        end = len(data)
    return ParsedChunk(records, end, corrupt)
