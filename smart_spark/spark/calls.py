"""Paying for answers at most once: stored answers first, then calls, each recorded as soon as paid.

:class:`PayingCaller` is what the apply phase (and profiling) asks for answers.
For each (model, prompt) it

1. looks the answer up in the answer store (any earlier evaluation, task
   attempt, job run or profiling that paid for it) -> reused, cost 0;
2. asks the same prompt only once per call to :meth:`PayingCaller.ask` (duplicates reuse it);
3. otherwise reserves the call's worst case in the :class:`~smart_spark.llm.spend.SpendBudget`
   (if any), calls the model, settles the budget and, when an answer came back,
   writes it to the store before returning -- one prompt at a time, so a process
   killed mid-batch loses at most the calls in flight (the client's concurrency).

Failed calls are not stored: a later evaluation tries them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any, Mapping, Sequence

from smart_spark.spark.apply import SPEND_CAP, Answer, ApplySpec

logger = logging.getLogger("smart_spark")


class PayingCaller:
    """Answers prompts for several models at once; see the module docstring."""

    def __init__(self, spec: ApplySpec, client: Any, *, budget: Any = None, store: Any = None) -> None:
        self.spec = spec
        self.client = client
        self.budget = budget
        self.store = store
        #: USD paid by this caller's calls, and answers reused instead of paid (driver-side tallies).
        self.spent = 0.0
        self.reused = 0
        self._lock = threading.Lock()
        #: Who paid, as recorded with each answer (one caller serves one task: named once, not per answer).
        self._writer_label = _writer_name()

    # ------------------------------------------------------------- API
    def ask(self, groups: Mapping[str, Sequence[str]]) -> dict[str, list[Answer]]:
        """``{model: prompts}`` -> ``{model: answers}`` in the same order."""
        keys = {m: [self.key(m, p) for p in prompts] for m, prompts in groups.items()}
        stored = self._lookup([k for ks in keys.values() for k in ks])
        out: dict[str, list[Answer | None]] = {m: [None] * len(p) for m, p in groups.items()}
        to_call: dict[tuple[str, str], list[int]] = {}
        key_of: dict[tuple[str, str], str | None] = {}
        for model, prompts in groups.items():
            for j, (prompt, key) in enumerate(zip(prompts, keys[model])):
                hit = stored.get(key) if key is not None else None
                if hit is not None:
                    out[model][j] = self._reused(model, hit)
                    with self._lock:
                        self.reused += 1
                else:
                    to_call.setdefault((model, prompt), []).append(j)
                    key_of[(model, prompt)] = key
        if to_call:
            paid = self._pay([(m, p, key_of[(m, p)]) for m, p in to_call])
            for (model, prompt), answer in zip(to_call, paid):
                first, *copies = to_call[(model, prompt)]
                out[model][first] = answer
                for j in copies:
                    out[model][j] = Answer(model, answer.label, answer.raw, answer.cost, answer.error, False,
                                           confidence=answer.confidence)
        return {m: list(a) for m, a in out.items()}  # type: ignore[arg-type]

    def close(self) -> None:
        """Release what this caller opened itself (the on-line client is the worker's, cached)."""

    def key(self, model: str, prompt: str) -> str | None:
        if self.store is None:
            return None
        from smart_spark.store import answer_key

        return answer_key(model, prompt, system_prompt=self.spec.system_prompt, max_tokens=self.spec.max_tokens)

    # ------------------------------------------------------- internals
    def _lookup(self, keys: list[str | None]) -> dict[str, Any]:
        if self.store is None:
            return {}
        return self.store.lookup({k for k in keys if k is not None})

    def _reused(self, model: str, stored: Any) -> Answer:
        from smart_spark.llm.labels import normalise_label

        label = normalise_label(stored.raw, self.spec.labels) if stored.raw is not None else stored.label
        return Answer(model, label, stored.raw, float(stored.cost), None, False,
                      confidence=getattr(stored, "confidence", None))

    def _pay(self, calls: list[tuple[str, str, str | None]]) -> list[Answer]:
        """Buy an answer for each ``(model, prompt, store key)``, in order (on-line, concurrently).

        On the client's own event loop when it has one (no cross-thread hop per call)."""
        run_on_client_loop = getattr(self.client, "run_coroutine", None)
        if run_on_client_loop is not None:
            return run_on_client_loop(self._call_all(calls))
        return _run_coroutine(self._call_all(calls))

    async def _call_all(self, calls: list[tuple[str, str, str | None]]) -> list[Answer]:
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(self.store.writer(self._writer_label)) if self.store is not None else None
            return list(await asyncio.gather(*(self._call_one(m, p, k, writer) for m, p, k in calls)))

    async def _call_one(self, model: str, prompt: str, key: str | None, writer: Any) -> Answer:
        reserved = 0.0
        if self.budget is not None:
            reserved = self.budget.reserve(model, prompt)
            if reserved is None:
                return Answer(model, None, None, 0.0, f"{SPEND_CAP}; not called", False)
        try:
            one = getattr(self.client, "acomplete_one", None)  # test doubles may only have acomplete_batch
            result = await one(model, prompt) if one is not None else (await self.client.acomplete_batch(model, [prompt]))[0]
        except Exception as exc:  # e.g. the key's env var is missing on this executor
            if self.budget is not None:
                self.budget.settle(reserved, 0.0)
            return Answer(model, None, None, 0.0, f"{type(exc).__name__}: {exc}", False)
        cost = float(result.cost or 0.0)
        with self._lock:
            self.spent += cost
        if self.budget is not None:
            self.budget.settle(reserved, cost)
        if result.error is None and writer is not None and key is not None:
            self._record(writer, key, model, result)
        return Answer(model, result.label, result.raw, cost, result.error, result.error is None, cost,
                      getattr(result, "confidence", None))

    def _record(self, writer: Any, key: str, model: str, result: Any) -> None:
        from smart_spark.store import StoredAnswer

        writer.put(StoredAnswer(
            key=key, model=model, label=result.label, raw=result.raw,
            prompt_tokens=int(result.prompt_tokens), completion_tokens=int(result.completion_tokens),
            cost=float(result.cost or 0.0), confidence=getattr(result, "confidence", None),
            paid_at=time.time(), writer=self._writer_label,
        ))


def _run_coroutine(coro: Any) -> Any:
    """``asyncio.run`` that also works where this thread already runs an event loop.

    Jupyter and Databricks notebooks run one in the driver's main thread, where
    ``asyncio.run`` refuses to start; there the coroutine runs on a fresh loop in
    a short-lived helper thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-calls") as pool:
        return pool.submit(asyncio.run, coro).result()


def _writer_name() -> str:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        task = f" stage {ctx.stageId()} partition {ctx.partitionId()} attempt {ctx.attemptNumber()}" if ctx else ""
    except Exception:  # pragma: no cover - outside Spark
        task = ""
    return f"{socket.gethostname()}/{os.getpid()}{task}"
