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

Two callers of one process may ask at once (the on-line apply phase answers a
task's next piece while the current one finishes, :mod:`smart_spark.spark.online_calls`):
:class:`SharedPayments` lets a prompt that one of them is paying for, or paid for after
the other looked the store up, be bought once and shared.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
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
        asking = SHARED_PAYMENTS.open()  # before the lookup: what is paid from now on stays shared
        try:
            return self._ask(groups)
        finally:
            SHARED_PAYMENTS.close(asking)

    def _ask(self, groups: Mapping[str, Sequence[str]]) -> dict[str, list[Answer]]:
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
                    out[model][j] = _unpaid_copy(answer, model)
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
        if key is None:
            return await self._buy(model, prompt, key, writer)
        shared = SHARED_PAYMENTS.begin(key)
        if shared is not None:  # another caller of this process is buying (or just bought) it
            answer = await asyncio.wrap_future(shared) if isinstance(shared, Future) else shared
            return _unpaid_copy(answer, model)
        answer = None
        try:
            answer = await self._buy(model, prompt, key, writer)
            return answer
        finally:
            SHARED_PAYMENTS.finish(key, answer)

    async def _buy(self, model: str, prompt: str, key: str | None, writer: Any) -> Answer:
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


class SharedPayments:
    """This process's answers being bought, and those bought since a running :meth:`PayingCaller.ask` looked the store up.

    A caller opens an ask before its store lookup and closes it when done. Another
    caller asking for a key being paid waits for that payment; once paid (and
    written to the store) the answer stays until every ask open at that moment
    closed: later asks find it in the store. Failed calls are not kept (the next ask
    calls again, as the store has nothing). Thread-safe; a wait is a concurrent
    future, created only when someone waits (awaitable on any loop).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._paid_count = 0
        self._asks: dict[int, int] = {}  # open ask -> payments finished when it opened
        # key -> None (being paid, nobody waiting), a Future (being paid, waited for) or the paid Answer
        self._entries: dict[str, Future | Answer | None] = {}
        self._paid: collections.deque[tuple[int, str]] = collections.deque()  # (payment n, key), oldest first

    def open(self) -> int:
        with self._lock:
            ask = next(self._ids)
            self._asks[ask] = self._paid_count
            return ask

    def close(self, ask: int) -> None:
        with self._lock:
            self._asks.pop(ask, None)
            self._forget_seen()

    def begin(self, key: str) -> Future | Answer | None:
        """None when the caller is to pay for ``key`` (then :meth:`finish`); else the answer or a future of it."""
        with self._lock:
            if key not in self._entries:
                self._entries[key] = None
                return None
            entry = self._entries[key]
            if entry is None:
                entry = self._entries[key] = Future()
            return entry

    def finish(self, key: str, answer: Answer | None) -> None:
        """The payer's answer (None: its call raised, e.g. cancelled) to everyone waiting for ``key``."""
        with self._lock:
            waiting = self._entries.pop(key, None)
            if answer is not None and answer.error is None:
                self._entries[key] = answer
                self._paid_count += 1
                self._paid.append((self._paid_count, key))
                self._forget_seen()
        if isinstance(waiting, Future):
            if answer is None:
                answer = Answer("", None, None, 0.0, "the call paying for this prompt raised; not called again", False)
            waiting.set_result(answer)

    def _forget_seen(self) -> None:
        """Drop answers paid before every open ask looked the store up (they find them there)."""
        oldest = min(self._asks.values(), default=self._paid_count)
        while self._paid and self._paid[0][0] <= oldest:
            del self._entries[self._paid.popleft()[1]]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


#: One per process: the apply pieces of a task and any other callers share it.
SHARED_PAYMENTS = SharedPayments()


def _unpaid_copy(answer: Answer, model: str) -> Answer:
    """``answer`` for another row asking ``model`` the same prompt: same label and cost, not paid again."""
    return Answer(model, answer.label, answer.raw, answer.cost, answer.error, False,
                  confidence=answer.confidence)


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
