"""The on-line apply phase of one task: its rows in pieces, the next piece's calls queued before this one drains.

A task answers its rows in pieces of ``batchSize`` (bounded memory; the answer
store and the spend cap work per piece). Answered one after the other, each
piece would leave the concurrency slots idle twice: while its rows are triaged,
keyed and looked up in the store (no call in flight yet), and while its last
calls finish one by one. Measured on ``jobs.bench_spark``, those gaps were most
of the distance to the ideal throughput. So the next piece is prepared and its
calls queued (behind this piece's, on the client's per-model concurrency limit)
on a helper thread while this piece's calls run; frames still come out in input
order. Two pieces in flight at once never pay twice for one prompt
(:class:`smart_spark.spark.calls.SharedPayments`).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

from smart_spark.spark.apply import ApplySpec

#: Pieces answered at once per task: the one being yielded and the next.
PIECES_IN_FLIGHT = 2


def apply_partition(spec: ApplySpec, batches: Iterable[tuple[Any, Any]], batch_size: int, guard: Any) -> Iterator[Any]:
    """One on-line task: Arrow batches of (keys, texts) in, one answered frame per piece out, in order."""
    from smart_spark.spark.apply import process_batch
    from smart_spark.spark.worker_heap import settle_heap

    settle_heap()
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(max_workers=PIECES_IN_FLIGHT, thread_name_prefix="smart-apply-piece")
    try:
        for keys, texts in _pieces(batches, batch_size):
            pending.append(pool.submit(process_batch, spec, keys, texts))
            if len(pending) == PIECES_IN_FLIGHT:
                frame = pending.popleft().result()
                guard.add(frame)
                yield frame
        while pending:
            frame = pending.popleft().result()
            guard.add(frame)
            yield frame
    finally:
        # On an error or an early close, pieces not started are dropped; one already calling finishes
        # (its answers reach the answer store, so a rerun does not pay for them again).
        pool.shutdown(wait=True, cancel_futures=True)
    guard.check()


def _pieces(batches: Iterable[tuple[Any, Any]], size: int) -> Iterator[tuple[list, list]]:
    for keys, texts in batches:
        keys, texts = keys.tolist(), texts.tolist()
        for start in range(0, len(keys), size):
            yield keys[start : start + size], texts[start : start + size]
