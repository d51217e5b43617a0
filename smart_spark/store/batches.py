"""Provider batches submitted but maybe not yet collected (issue 12's batch mode).

Each ``record_batch`` writes one small immutable JSON file (all or nothing:
rename or object PUT) with a checksum, so a job rerun after a crash can find
the batches it already paid for and wait for them instead of submitting again.
Recording the same ``(model, batch_id)`` again (e.g. with new ``meta`` such as
a status) adds a file; the latest one wins.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from smart_spark.errors import ConfigurationError
from smart_spark.store.writer import safe_name

if TYPE_CHECKING:
    from smart_spark.store.answer_store import AnswerStore

SUFFIX = ".json"


def record(store: AnswerStore, model: str, batch_id: str, keys: Sequence[str], meta: Mapping[str, Any]) -> None:
    document = {
        "model": model,
        "batch_id": batch_id,
        "keys": list(keys),
        "meta": dict(meta),
        "recorded_at": time.time(),
    }
    try:
        body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"record_batch({model!r}, {batch_id!r}): meta must be plain JSON values: {exc}") from exc
    data = b"%08x\n" % zlib.crc32(body) + body
    name = f"{safe_name(model)}--{safe_name(batch_id, 64)}--{time.time_ns()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
    backend = store.backend
    backend.makedirs(store.batches_folder)
    backend.write_whole(backend.join(store.batches_folder, name), data)


def read_all(store: AnswerStore) -> list[dict[str, Any]]:
    """Latest record of each batch, oldest first; unreadable or corrupt files are skipped."""
    backend = store.backend
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in backend.list_files(store.batches_folder):
        if entry.name.startswith(".") or not entry.name.endswith(SUFFIX):
            continue
        try:
            data = backend.read_from(backend.join(store.batches_folder, entry.name), 0)
        except OSError:
            continue
        document = parse(data)
        if document is None:
            continue
        ident = (document["model"], document["batch_id"])
        if ident not in latest or document["recorded_at"] >= latest[ident]["recorded_at"]:
            latest[ident] = document
    return sorted(latest.values(), key=lambda d: (d["recorded_at"], d["model"], d["batch_id"]))


def parse(data: bytes) -> dict[str, Any] | None:
    head, _, body = data.partition(b"\n")
    try:
        if int(head, 16) != zlib.crc32(body):
            return None
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not {"model", "batch_id", "keys", "meta", "recorded_at"} <= document.keys():
        return None
    return document
