"""The in-memory view of a store folder, refreshed incrementally.

A long-lived process (a Spark Python worker serving many batches) keeps one
index per store. Each refresh lists the folder once and reads only what is
new: files it has not seen, and the bytes appended to files it has read
before, from the offset where it stopped. An incomplete last line (a writer
mid-write, or one killed mid-write) is left unread until it is complete; in a
sealed file it counts as corrupt.

Memory: per record the index keeps the 32-byte key and the record's compact
JSON as ``bytes`` (about 100 to 200 bytes for a short label); answers are
decoded only when looked up. ``jobs/bench_store.py`` measures it.

Duplicates (two writers raced and both paid for one key) are resolved by
:func:`records.precedence`: earliest ``paid_at``, then writer id, then bytes,
so every process that has read the same records returns the same answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from smart_spark.store.backends import Backend, FileEntry
from smart_spark.store.records import parse_chunk, precedence

#: Per-writer log still being appended to.
OPEN_LOG = ".log"
#: A log whose writer closed it (renamed from ``.log``): complete, never appended to again.
SEALED_LOG = ".done"
#: An immutable segment (object stores, compaction output).
SEGMENT = ".seg"
ANSWER_SUFFIXES = (OPEN_LOG, SEALED_LOG, SEGMENT)


def stem_of(name: str) -> str | None:
    """The writer-unique part of a store file name, or None for files that hold no answers.

    A log keeps its stem when sealed (``x.log`` -> ``x.done``), so a reader
    continues from its offset instead of reading the file again.
    """
    if name.startswith("."):
        return None  # temporary files written aside before a rename
    for suffix in ANSWER_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def is_sealed(name: str) -> bool:
    return name.endswith((SEALED_LOG, SEGMENT))


@dataclass
class IndexStats:
    records_read: int = 0
    corrupt_lines: int = 0
    duplicates: int = 0
    bytes_read: int = 0
    unreadable_files: int = 0


def merge_record(answers: dict[bytes, bytes], key: bytes, payload: bytes) -> bool:
    """Put one record into ``answers``; True when it met a different record of the same key."""
    current = answers.get(key)
    if current is None:
        answers[key] = payload
        return False
    if current == payload:
        return False
    if precedence(payload) < precedence(current):
        answers[key] = payload
    return True


class AnswerIndex:
    """Every valid answer in one store folder, keyed by the raw 32-byte answer key."""

    def __init__(self, backend: Backend, folder: str) -> None:
        self._backend = backend
        self._folder = folder
        self._answers: dict[bytes, bytes] = {}
        self._offsets: dict[str, int] = {}
        self._pending_tail: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stats = IndexStats()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: bytes) -> bytes | None:
        return self._answers.get(key)

    def add(self, key: bytes, payload: bytes) -> None:
        """Record an answer this process just wrote (seen before the next refresh)."""
        with self._lock:
            if merge_record(self._answers, key, payload):
                self.stats.duplicates += 1

    def items(self) -> list[tuple[bytes, bytes]]:
        with self._lock:
            return list(self._answers.items())

    def pending_tail_bytes(self) -> int:
        """Bytes of incomplete last lines in open logs (a running or killed writer)."""
        return sum(self._pending_tail.values())

    def refresh(self) -> int:
        """Read what is new in the folder; returns how many records were read."""
        entries = self._backend.list_files(self._folder)
        with self._lock:
            before = self.stats.records_read
            for entry in sorted(entries, key=lambda e: e.name):
                self._read_new(entry)
            return self.stats.records_read - before

    def _read_new(self, entry: FileEntry) -> None:
        stem = stem_of(entry.name)
        if stem is None:
            return
        offset = self._offsets.get(stem, 0)
        if entry.size < offset:
            offset = 0  # a different file took this name: read it again (identical records merge)
        if entry.size == offset:
            return
        sealed = is_sealed(entry.name)
        try:
            data = self._backend.read_from(self._backend.join(self._folder, entry.name), offset)
        except FileNotFoundError:
            return  # renamed (sealed) or compacted away since the listing: seen next refresh
        except OSError:
            self.stats.unreadable_files += 1
            return
        chunk = parse_chunk(data, final=sealed)
        for key, payload in chunk.records:
            if merge_record(self._answers, key, payload):
                self.stats.duplicates += 1
        self.stats.records_read += len(chunk.records)
        self.stats.corrupt_lines += chunk.corrupt
        self.stats.bytes_read += chunk.consumed
        self._offsets[stem] = offset + chunk.consumed
        tail = len(data) - chunk.consumed
        if tail:
            self._pending_tail[stem] = tail
        else:
            self._pending_tail.pop(stem, None)
