"""Recording paid answers: one file (or one series of segments) per writer.

No two writers ever write to the same file, so concurrent writers (threads,
processes, executors on other hosts, speculative attempts) cannot lose each
other's answers. A writer id joins host, pid, a caller-given name (e.g. the
Spark task attempt) or the thread id, and a random suffix.

* Append mode (local, HDFS): ``put`` appends one record and flushes before it
  returns, so the answer survives a SIGKILL of the process from then on.
  ``close`` seals the log (``.log`` -> ``.done``) so compaction may take it.
* Segment mode (object stores, DBFS): ``put`` buffers; a segment object is
  written when ``flush_every`` answers are buffered, when the oldest buffered
  answer is ``flush_seconds`` old (a background thread checks), and on
  ``close``. Loss window: a writer killed without ``close`` loses at most the
  answers of its last ``flush_seconds`` (and fewer than ``flush_every``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING

from smart_spark.store.backends import AppendHandle
from smart_spark.store.index import OPEN_LOG, SEALED_LOG, SEGMENT
from smart_spark.store.records import KEY_HEX_LEN, StoredAnswer, encode_line, encode_payload

if TYPE_CHECKING:
    from smart_spark.store.answer_store import AnswerStore

_log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def safe_name(text: str, limit: int = 48) -> str:
    """``text`` reduced to characters safe in a file name on every filesystem."""
    return _UNSAFE.sub("_", text).strip("._")[:limit] or "x"


def new_writer_id(name: str | None = None) -> str:
    host = safe_name(socket.gethostname(), 32)
    who = safe_name(name) if name else f"t{threading.get_ident() % 10**8}"
    return f"{host}-{os.getpid()}-{who}-{uuid.uuid4().hex[:8]}"


class AnswerWriter:
    """Records answers for one task or thread group; ``put`` is thread-safe."""

    def __init__(
        self,
        store: AnswerStore,
        name: str | None = None,
        *,
        flush_every: int = 32,
        flush_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._backend = store.backend
        self._folder = store.answers_folder
        self.writer_id = new_writer_id(name)
        self._append = self._backend.supports_append
        self._flush_every = max(1, int(flush_every))
        self._flush_seconds = float(flush_seconds)
        self._lock = threading.Lock()
        self._handle: AppendHandle | None = None
        self._buffer: list[bytes] = []
        self._buffered_since = 0.0
        self._segments = 0
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self.written = 0

    def __enter__(self) -> AnswerWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def put(self, answer: StoredAnswer) -> None:
        """Record ``answer``; fills ``writer`` and ``paid_at`` (now) when left empty."""
        if len(answer.key) != KEY_HEX_LEN:
            raise ValueError(f"StoredAnswer.key must be a 64-hex answer_key, got {answer.key!r}")
        if not answer.writer or not answer.paid_at:
            answer = replace(answer, writer=answer.writer or self.writer_id, paid_at=answer.paid_at or time.time())
        payload = encode_payload(answer)
        line = encode_line(answer.key, payload)
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError(f"answer writer {self.writer_id} is closed")
            if self._append:
                self._append_line(line)
            else:
                self._buffer_line(line)
            self.written += 1
        self._store.index.add(bytes.fromhex(answer.key), payload)

    def flush(self) -> None:
        """Write buffered answers now (segment mode; a no-op in append mode)."""
        with self._lock:
            self._write_segment()

    def close(self) -> None:
        """Write what is buffered and seal the log. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._write_segment()
            if self._handle is not None:
                self._handle.close()
                self._handle = None
                log = self._backend.join(self._folder, self.writer_id + OPEN_LOG)
                self._backend.rename(log, self._backend.join(self._folder, self.writer_id + SEALED_LOG))

    def _append_line(self, line: bytes) -> None:
        if self._handle is None:
            self._handle = self._backend.open_append(self._backend.join(self._folder, self.writer_id + OPEN_LOG))
        self._handle.write(line)

    def _buffer_line(self, line: bytes) -> None:
        if not self._buffer:
            self._buffered_since = time.monotonic()
        self._buffer.append(line)
        if len(self._buffer) >= self._flush_every:
            self._write_segment()
        elif self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_on_time, name=f"answer-flush-{self.writer_id}", daemon=True)
            self._flusher.start()

    def _write_segment(self) -> None:
        if not self._buffer:
            return
        name = f"{self.writer_id}-{self._segments:06d}{SEGMENT}"
        self._backend.write_whole(self._backend.join(self._folder, name), b"".join(self._buffer))
        self._segments += 1
        self._buffer = []

    def _flush_on_time(self) -> None:
        period = max(0.05, self._flush_seconds / 4)
        while not self._closed.wait(period):
            with self._lock:
                if self._buffer and time.monotonic() - self._buffered_since >= self._flush_seconds:
                    try:
                        self._write_segment()
                    except Exception:  # kept in the buffer: retried next period, by put or by close
                        _log.warning("answer writer %s: segment write failed, will retry", self.writer_id, exc_info=True)
