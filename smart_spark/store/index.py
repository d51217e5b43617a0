"""The in-memory view of a store folder, refreshed incrementally.

A long-lived process (a Spark Python worker serving many batches) keeps one
index per store. Each refresh lists the folder once and reads only what is
new: files it has not seen, and the bytes appended to files it has read
before, from the offset where it stopped. An incomplete last line (a writer
mid-write, or one killed mid-write) is left unread until it is complete; in a
sealed file it counts as corrupt.

The answers themselves live in an :class:`~smart_spark.store.table.AnswerTable`
(about 100 bytes per answer); answers this process just wrote wait in a small
dict until the next refresh moves them into the table. Duplicates (two
writers raced and both paid for one key) are resolved by
:func:`records.precedence`, so every process that has read the same records
returns the same answer.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from smart_spark.store.backends import Backend, FileEntry
from smart_spark.store.records import StoredAnswer, decode_payload, parse_chunk, precedence
from smart_spark.store.table import AnswerTable

#: Per-writer log still being appended to.
OPEN_LOG = ".log"
#: A log whose writer closed it (renamed from ``.log``): complete, never appended to again.
SEALED_LOG = ".done"
#: An immutable segment (object stores, compaction output).
SEGMENT = ".seg"
ANSWER_SUFFIXES = (OPEN_LOG, SEALED_LOG, SEGMENT)
#: After reading this much in one refresh, hand the load's freed buffers back to the OS.
TRIM_AFTER_BYTES = 8 << 20
#: Bytes read from a file at a time: bounds the memory a load needs beyond the index itself.
READ_WINDOW = 8 << 20


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


def release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    A large load frees many window-sized buffers; glibc keeps them mapped, which
    would count two to three times the index's own size against the worker.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


@dataclass
class IndexStats:
    records_read: int = 0
    corrupt_lines: int = 0
    duplicates: int = 0
    bytes_read: int = 0
    unreadable_files: int = 0


class AnswerIndex:
    """Every valid answer in one store folder, keyed by the raw 32-byte answer key."""

    def __init__(self, backend: Backend, folder: str) -> None:
        self._backend = backend
        self._folder = folder
        self._table = AnswerTable()
        self._recent: dict[bytes, bytes] = {}
        self._offsets: dict[str, int] = {}
        self._pending_tail: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stats = IndexStats()

    def __len__(self) -> int:
        with self._lock:
            self._absorb_recent()
            return len(self._table)

    def get_many(self, keys: list[bytes]) -> list[StoredAnswer | None]:
        """The winning answer of each key, None when unknown."""
        with self._lock:
            found = self._table.get_many(keys)
            if self._recent:
                for i, key in enumerate(keys):
                    payload = self._recent.get(key)
                    if payload is not None:
                        mine = decode_payload(key, payload)
                        current = found[i]
                        if current is None or precedence(mine) < precedence(current):
                            found[i] = mine
            return found

    def add(self, key: bytes, payload: bytes) -> None:
        """Record an answer this process just wrote (seen before the next refresh)."""
        with self._lock:
            self._recent[key] = payload

    def model_counts(self) -> dict[str, int]:
        with self._lock:
            self._absorb_recent()
            counts = self._table.model_counts()
            self.stats.duplicates = self._table.duplicates
            return counts

    def pending_tail_bytes(self) -> int:
        """Bytes of incomplete last lines in open logs (a running or killed writer)."""
        return sum(self._pending_tail.values())

    def refresh(self) -> int:
        """Read what is new in the folder; returns how many records were read."""
        entries = self._backend.list_files(self._folder)
        with self._lock:
            before, bytes_before = self.stats.records_read, self.stats.bytes_read
            for entry in sorted(entries, key=lambda e: e.name):
                self._read_new(entry)
            self._absorb_recent()
            self.stats.duplicates = self._table.duplicates
            if self.stats.bytes_read - bytes_before >= TRIM_AFTER_BYTES:
                release_free_heap()
            return self.stats.records_read - before

    def _absorb_recent(self) -> None:
        if self._recent:
            self._table.add(np.frombuffer(b"".join(self._recent), dtype="V32"), b"\n".join(self._recent.values()))
            self._recent = {}

    def _read_new(self, entry: FileEntry) -> None:
        """Read a file from where this index stopped, a window at a time (bounded memory)."""
        stem = stem_of(entry.name)
        if stem is None:
            return
        offset = self._offsets.get(stem, 0)
        if entry.size < offset:
            offset = 0  # a different file took this name: read it again (identical records merge)
        sealed = is_sealed(entry.name)
        path = self._backend.join(self._folder, entry.name)
        window = READ_WINDOW
        while offset < entry.size:
            try:
                data = self._backend.read_from(path, offset, window)
            except FileNotFoundError:
                return  # renamed (sealed) or compacted away since the listing: seen next refresh
            except OSError:
                self.stats.unreadable_files += 1
                return
            last = offset + len(data) >= entry.size or len(data) < window
            chunk = parse_chunk(data, final=sealed and last)
            self.stats.corrupt_lines += chunk.corrupt + self._table.add(chunk.keys, chunk.payloads)
            self.stats.records_read += chunk.count
            self.stats.bytes_read += chunk.consumed
            offset += chunk.consumed
            self._offsets[stem] = offset
            if last:
                break
            if chunk.consumed == 0:
                window *= 2  # one line longer than the window
        tail = entry.size - offset
        if tail > 0:
            self._pending_tail[stem] = tail
        else:
            self._pending_tail.pop(stem, None)
