"""Looking after a store: what is in it, merging small files, forgetting old answers.

Compaction is safe with writers running: it only takes files that can never
change again (sealed logs and segments, listed once at the start), writes
their winning records as one new segment (atomically: rename or object PUT),
and only then deletes exactly those files. Open logs, and any file sealed or
written after the listing, are left alone, so no concurrent answer is lost;
a reader that meets both the new segment and a source reads identical records.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from smart_spark.store.index import OPEN_LOG, SEGMENT, is_sealed, stem_of
from smart_spark.store.records import StoredAnswer, decode_payload, encode_line, parse_chunk, precedence

if TYPE_CHECKING:
    from smart_spark.store.answer_store import AnswerStore


def summary(store: AnswerStore) -> dict[str, Any]:
    index = store.index
    per_model = index.model_counts()
    files = [e for e in store.backend.list_files(store.answers_folder) if stem_of(e.name) is not None]
    return {
        "path": store.path,
        "filesystem": store.location.kind,
        "root": store.location.root,
        "answers": sum(per_model.values()),
        "answers_per_model": dict(sorted(per_model.items())),
        "files": len(files),
        "open_logs": sum(1 for e in files if e.name.endswith(OPEN_LOG)),
        "bytes": sum(e.size for e in files),
        "corrupt_lines_skipped": index.stats.corrupt_lines,
        "incomplete_tail_bytes": index.pending_tail_bytes(),
        "duplicate_payments": index.stats.duplicates,
        "unreadable_files": index.stats.unreadable_files,
        "batches": len(store.batches()),
    }


def compact(store: AnswerStore) -> dict[str, int]:
    backend = store.backend
    folder = store.answers_folder
    sources = sorted(e.name for e in backend.list_files(folder) if stem_of(e.name) is not None and is_sealed(e.name))
    if len(sources) < 2:
        return {"files_merged": 0, "answers": 0, "corrupt_lines_dropped": 0}
    answers: dict[bytes, tuple[bytes, StoredAnswer]] = {}
    corrupt = 0
    merged: list[str] = []
    for name in sources:
        try:
            chunk = parse_chunk(backend.read_from(backend.join(folder, name), 0), final=True)
        except FileNotFoundError:
            continue  # another compaction took it
        corrupt += chunk.corrupt
        for key, payload in chunk.records():
            try:
                answer = decode_payload(key, payload)
            except (ValueError, KeyError, TypeError):
                corrupt += 1
                continue
            current = answers.get(key)
            if current is None or precedence(answer) < precedence(current[1]):
                answers[key] = (payload, answer)
        merged.append(name)
    data = b"".join(encode_line(key.hex(), payload) for key, (payload, _) in sorted(answers.items()))
    target = f"compact-{time.time_ns()}-{uuid.uuid4().hex[:8]}{SEGMENT}"
    backend.write_whole(backend.join(folder, target), data)
    for name in merged:
        backend.delete(backend.join(folder, name))
    return {"files_merged": len(merged), "answers": len(answers), "corrupt_lines_dropped": corrupt}


def delete_older_than(store: AnswerStore, days: float) -> int:
    cutoff = time.time() - float(days) * 86400.0
    backend = store.backend
    deleted = 0
    for folder in (store.answers_folder, store.batches_folder):
        for entry in backend.list_files(folder):
            if entry.mtime and entry.mtime < cutoff:
                backend.delete(backend.join(folder, entry.name))
                deleted += 1
    return deleted
