"""The durable answer store: every paid answer is recorded once and read back by any later evaluation.

Layout under the store root (any filesystem, see ``location.py``)::

    <root>/answers/<writer>.log          open per-writer log (local, HDFS), appended per answer
    <root>/answers/<writer>.done         the same log, sealed when its writer closed
    <root>/answers/<writer>-<n>.seg      immutable segment (object stores, DBFS)
    <root>/answers/compact-<...>.seg     the output of ``compact``
    <root>/answers/.<name>.tmp           written aside before a rename; ignored by readers
    <root>/batches/<model>--<batch>--<...>.json   one recorded provider batch (issue 12)

Nothing in the store is ever rewritten in place; deleting the whole folder
forgets every answer (later runs pay again), which is the way to clean up
between unrelated runs. ``python -m smart_spark.store PATH --summary`` shows
what is there.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from smart_spark.errors import ConfigurationError, PreflightError
from smart_spark.store import batches as _batches
from smart_spark.store import maintenance
from smart_spark.store.backends import Backend
from smart_spark.store.index import AnswerIndex
from smart_spark.store.location import Location, resolve
from smart_spark.store.records import StoredAnswer
from smart_spark.store.writer import AnswerWriter, safe_name

ANSWERS = "answers"
BATCHES = "batches"


def default_store_path(app_id: str) -> str:
    """Application-scoped store under the local temp dir: never pays twice within one application.

    Per host: executors on other hosts have their own copy (use ``answersPath``
    on shared storage to share answers across hosts and runs).
    """
    return os.path.join(tempfile.gettempdir(), "smart_spark-answers", safe_name(app_id, 96))


class AnswerStore:
    """Answers paid by any writer in any process, keyed by :func:`answer_key`.

    ``path`` is a local folder or a URI (``file://``, ``dbfs:/``, ``s3a://``,
    ``s3://``, ``gs://``, ``hdfs://``, ``abfss://``). ``filesystem`` (a
    ``pyarrow.fs.FileSystem``) and ``append`` override the filesystem and the
    durability mode (tests, unusual mounts). ``min_refresh_seconds`` bounds how
    often ``lookup`` lists the folder when a key is missing (default: always on
    append filesystems, at most once a second on object stores, where a LIST is
    a paid request).
    """

    def __init__(
        self,
        path: str,
        *,
        filesystem: Any = None,
        append: bool | None = None,
        min_refresh_seconds: float | None = None,
    ) -> None:
        self.path = path
        self._options = dict(filesystem=filesystem, append=append, min_refresh_seconds=min_refresh_seconds)
        self.location: Location = resolve(path, filesystem=filesystem, append=append)
        self._backend: Backend | None = None
        self._index: AnswerIndex | None = None
        self._open_lock = threading.Lock()
        self._min_refresh = min_refresh_seconds
        self._last_refresh = float("-inf")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its path and options: an executor opens its own index."""
        return (_rebuild, (self.path, self._options))

    def __repr__(self) -> str:
        return f"AnswerStore({self.path!r}, kind={self.location.kind!r})"

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._open_lock:
                if self._backend is None:
                    self._backend = self.location.open()
        return self._backend

    @property
    def answers_folder(self) -> str:
        return self.backend.join(self.location.root, ANSWERS)

    @property
    def batches_folder(self) -> str:
        return self.backend.join(self.location.root, BATCHES)

    @property
    def index(self) -> AnswerIndex:
        if self._index is None:
            backend, folder = self.backend, self.answers_folder
            with self._open_lock:
                if self._index is None:
                    self._index = AnswerIndex(backend, folder)
        return self._index

    def check_writable(self) -> None:
        """Create the layout and write, read back and delete a probe; PreflightError naming the path if any step fails."""
        where = f"answersPath {self.path!r}" + (f" ({self.location.root})" if self.location.root != self.path else "")
        try:
            backend = self.backend
            backend.makedirs(self.answers_folder)
            backend.makedirs(self.batches_folder)
            probe = backend.join(self.answers_folder, f".probe-{uuid.uuid4().hex}")
            payload = b"smart_spark answer store probe\n"
            backend.write_whole(probe, payload)
            readback = backend.read_from(probe, 0)
            backend.delete(probe)
        except PreflightError:
            raise
        except Exception as exc:
            raise PreflightError(f"{where} is not writable: {type(exc).__name__}: {exc}") from exc
        if readback != payload:
            raise PreflightError(f"{where}: a probe file read back different bytes than were written")

    def refresh(self) -> int:
        """Read every answer written since the last refresh; returns how many records were new."""
        self._last_refresh = time.monotonic()
        return self.index.refresh()

    def lookup(self, keys: Iterable[str]) -> dict[str, StoredAnswer]:
        """The stored answers among ``keys`` (hex answer keys); missing keys are absent.

        Refreshes first when a key is not yet known, so answers committed by
        any writer in any process are seen.
        """
        wanted = {k: _raw_key(k) for k in keys}
        found = self._find(wanted)
        if len(found) < len(wanted) and self._refresh_due():
            self.refresh()
            found = self._find(wanted)
        return found

    def writer(self, name: str | None = None, *, flush_every: int = 32, flush_seconds: float = 5.0) -> AnswerWriter:
        """A writer of its own file(s); name it after the task attempt for audits."""
        self.backend.makedirs(self.answers_folder)
        return AnswerWriter(self, name, flush_every=flush_every, flush_seconds=flush_seconds)

    def summary(self) -> dict[str, Any]:
        """Answers per model, files, bytes, corrupt lines skipped, duplicates, batches."""
        self.refresh()
        return maintenance.summary(self)

    def compact(self) -> dict[str, int]:
        """Merge sealed logs and segments into one segment; safe with writers running."""
        return maintenance.compact(self)

    def delete_older_than(self, days: float) -> int:
        """Delete store files last written more than ``days`` ago; returns how many."""
        return maintenance.delete_older_than(self, days)

    def record_batch(self, model: str, batch_id: str, keys: Sequence[str], meta: Mapping[str, Any]) -> None:
        """Record a submitted provider batch, so a rerun can resume waiting for it instead of paying again."""
        _batches.record(self, model, batch_id, keys, meta)

    def batches(self) -> list[dict[str, Any]]:
        """Recorded batches (``model``, ``batch_id``, ``keys``, ``meta``, ``recorded_at``), latest record per batch."""
        return _batches.read_all(self)

    def _find(self, wanted: Mapping[str, bytes]) -> dict[str, StoredAnswer]:
        hex_keys = list(wanted)
        answers = self.index.get_many([wanted[k] for k in hex_keys])
        return {k: a for k, a in zip(hex_keys, answers) if a is not None}

    def _refresh_due(self) -> bool:
        interval = self._min_refresh
        if interval is None:
            interval = 0.0 if self.backend.supports_append else 1.0
        return time.monotonic() - self._last_refresh >= interval


def _raw_key(hex_key: str) -> bytes:
    try:
        raw = bytes.fromhex(hex_key)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(f"answer store lookup: {hex_key!r} is not an answer_key (64 hex digits)")
    return raw


def _rebuild(path: str, options: dict[str, Any]) -> AnswerStore:
    return AnswerStore(path, **options)
