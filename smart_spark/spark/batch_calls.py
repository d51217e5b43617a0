"""The apply phase in batch mode (``executionMode="batch"``): one provider batch per model, paid once.

:class:`BatchPayingCaller` is a :class:`~smart_spark.spark.calls.PayingCaller`
whose calls go through the provider's Batch API
(:class:`~smart_spark.llm.batch.BatchClient`) instead of concurrent on-line
calls; everything before the call is the same (the answer store is read first,
duplicate prompts are asked once). For each model of one round of the apply
phase it

1. reserves each line's worst case at the batch price (``batch_discount``) in
   the spend budget, so the cap holds; lines that no longer fit are not sent;
2. submits the lines as batches, recording each batch id in the answer store
   the moment it exists (``AnswerStore.record_batch``), and first waits for
   batches an earlier attempt or run recorded for the same answers
   (``AnswerStore.batches``): a task retried or a job rerun after a crash
   waits for what it already paid for instead of submitting again;
3. writes every answer to the answer store as soon as its batch is collected;
4. retries lines that failed inside a batch (and the lines of a rejected or
   expired batch that got no answer) on-line, through the ordinary on-line
   path with its budget reservation at the full price; a line that still
   fails is an error, which the apply phase escalates like any failed call.

A line whose batch is still running when the wait ends (``batch_max_wait_s``)
comes back *pending*: its row gets an error saying a rerun resumes the wait,
and it is neither escalated nor retried on-line (its batch may still answer,
and buying it again would pay twice).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Mapping, Sequence

from smart_spark.spark.apply import SPEND_CAP, Answer, ApplySpec
from smart_spark.spark.calls import PayingCaller

logger = logging.getLogger("smart_spark")


class BatchPayingCaller(PayingCaller):
    """A :class:`PayingCaller` that buys through the Batch API; see the module docstring.

    ``client`` is the on-line client used for the retries of failed lines.
    """

    def __init__(self, spec: ApplySpec, client: Any, *, budget: Any = None, store: Any = None) -> None:
        from smart_spark.llm.batch import BatchClient

        super().__init__(spec, client, budget=budget, store=store)
        self.batches = BatchClient(
            spec.catalogue(), list(spec.labels), max_tokens=spec.max_tokens, system_prompt=spec.system_prompt,
            recorder=store.record_batch if store is not None else None,
            recorded=store.batches if store is not None else None,
            poll_interval_s=spec.batch_poll_s, max_wait_s=spec.batch_max_wait_s, timeout=max(spec.timeout, 60.0),
        )

    def close(self) -> None:
        self.batches.close()

    def submit(self, groups: Mapping[str, Sequence[str]]) -> None:
        """Send ``{model: prompts}`` as provider batches now, without waiting (answers already stored are not sent).

        :meth:`ask` on the same prompts later waits for these recorded batches. No spend
        budget here: :func:`apply_partition` only submits ahead when the job has no cap.
        """
        for model, prompts in groups.items():
            keys = [self.key(model, p) for p in prompts]
            stored = self._lookup(keys)
            missing = [p for p, k in zip(prompts, keys) if k is None or k not in stored]
            if missing:
                self.batches.submit(model, missing)

    def _pay(self, calls: list[tuple[str, str, str | None]]) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(calls)
        by_model: dict[str, list[int]] = {}
        for j, (model, _, _) in enumerate(calls):
            by_model.setdefault(model, []).append(j)
        # The models' batches run side by side: the task waits for the slowest, not for their sum.
        with ThreadPoolExecutor(max_workers=len(by_model), thread_name_prefix="smart-batch") as pool:
            futures = [pool.submit(self._pay_in_batches, m, rows, calls, answers) for m, rows in by_model.items()]
            retry = [j for future in futures for j in future.result()]
        if retry:
            logger.info("SMART apply (batch): %d lines failed in their batch; retrying them on-line", len(retry))
            online = super()._pay([calls[j] for j in retry])
            for j, answer in zip(retry, online):
                if answer.error is not None:
                    answer = Answer(answer.model, None, None, answer.cost,
                                    f"{answers[j].error}; then on-line: {answer.error}", False, answer.spent)
                answers[j] = answer
        return answers  # type: ignore[return-value]

    def _pay_in_batches(self, model: str, rows: list[int], calls, answers: list[Answer | None]) -> list[int]:
        """Fill ``answers`` for ``rows`` of one model through the Batch API; returns the rows to retry on-line."""
        factor = self.spec.catalogue()[model].batch_discount or 1.0
        reserved: dict[int, float] = {}
        for j in rows:
            cost = self.budget.reserve(model, calls[j][1], factor) if self.budget is not None else 0.0
            if cost is None:
                answers[j] = Answer(model, None, None, 0.0, f"{SPEND_CAP}; not called", False)
            else:
                reserved[j] = cost
        sent = list(reserved)
        if not sent:
            return []
        results = self.batches.complete_batch(model, [calls[j][1] for j in sent])
        retry: list[int] = []
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(self.store.writer(self._writer_label)) if self.store is not None else None
            for j, result in zip(sent, results):
                cost = float(result.cost or 0.0)
                with self._lock:
                    self.spent += cost
                if self.budget is not None:
                    self.budget.settle(reserved[j], cost)
                if result.error is None:
                    key = calls[j][2]
                    if writer is not None and key is not None:
                        self._record(writer, key, model, result)
                    answers[j] = Answer(model, result.label, result.raw, cost, None, True, cost,
                                        confidence=result.confidence)
                elif self.batches.key(model, calls[j][1]) in self.batches.pending:
                    answers[j] = Answer(model, None, None, 0.0, result.error, False, cost, pending=True)
                else:
                    answers[j] = Answer(model, None, None, 0.0, result.error, False, cost)
                    retry.append(j)
        return retry


def apply_partition(spec: ApplySpec, batches: Iterable[tuple[Any, Any]], guard: Any) -> Iterator[Any]:
    """One batch-mode task: its Arrow batches in, one answered frame per Arrow batch out, in order.

    Streamed (with an answer store and no spend cap): each Arrow batch's first-choice
    calls are submitted as provider batches as soon as it is read (ids recorded in the
    store), and its rows are spilled to a local file; once every batch is out, the rows
    are read back one Arrow batch at a time and answered by :func:`process_batch`, whose
    caller waits for the recorded batches instead of resubmitting. So the task holds one
    Arrow batch in memory while the provider works, and all its batches run at once.

    With a spend cap the whole partition is answered in one go (its lines are reserved
    against the cap before any is sent, which submitting ahead chunk by chunk could
    not guarantee); without a store nothing would find the batches submitted ahead.
    """
    from smart_spark.spark.apply import process_batch, submit_ahead

    if not spec.answers_path or spec.row_budget is not None:
        sizes, keys, texts = [], [], []
        for batch_keys, batch_texts in batches:
            sizes.append(len(batch_keys))
            keys += batch_keys.tolist()
            texts += batch_texts.tolist()
        frame = process_batch(spec, keys, texts)
        start = 0
        for size in sizes:
            piece = frame.iloc[start : start + size].reset_index(drop=True)
            start += size
            guard.add(piece)
            yield piece
        guard.check()
        return
    with tempfile.TemporaryDirectory(prefix="smart-batch-rows-", dir=_local_dir()) as folder:
        path = os.path.join(folder, "rows.pickle")
        chunks = 0
        with open(path, "wb") as spill:
            for batch_keys, batch_texts in batches:
                keys, texts = batch_keys.tolist(), batch_texts.tolist()
                submit_ahead(spec, keys, texts)
                pickle.dump((keys, texts), spill, protocol=pickle.HIGHEST_PROTOCOL)
                chunks += 1
        with open(path, "rb") as spill:
            for _ in range(chunks):
                keys, texts = pickle.load(spill)  # our own file, written just above
                frame = process_batch(spec, keys, texts)
                guard.add(frame)
                yield frame
    guard.check()


def _local_dir() -> str | None:
    """The executor's first Spark local directory (where Spark spills too), else the temp dir."""
    local = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")[0].strip()
    return local if local and os.path.isdir(local) else None
