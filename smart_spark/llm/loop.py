"""A private asyncio event loop on a daemon thread, callable from synchronous code.

The batch interface is called from pandas UDFs, plain threads and notebooks
(where a loop is already running, so ``asyncio.run`` would fail). Running all
HTTP on one long-lived loop also lets the async OpenAI clients keep their
connection pools between batches; clients bound to a closed loop break.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Awaitable, Callable, Coroutine, TypeVar

T = TypeVar("T")

_CLEANUP_TIMEOUT_S = 5.0


class LoopThread:
    """Starts its loop lazily on first use; :meth:`stop` is idempotent."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self._name} is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_run_forever, args=(loop,), name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[object, object, T]) -> "Future[T]":
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()  # never awaited: avoid the "was never awaited" warning
            raise

    def run(self, coro: Coroutine[object, object, T]) -> T:
        """Run ``coro`` on the private loop and wait for its result (from any other thread)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(f"a synchronous call cannot be made from {self._name}'s own loop; await it")
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: do not leave the batch running
            raise

    def stop(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``cleanup`` on the loop (bounded wait), then stop and close the loop."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            # Garbage-collected on the loop thread itself: we cannot wait for
            # ourselves, so skip the cleanup; idle connections close with the loop.
            loop.call_soon(loop.stop)
            return
        if cleanup is not None:
            future = asyncio.run_coroutine_threadsafe(_as_coroutine(cleanup), loop)
            try:
                future.result(timeout=_CLEANUP_TIMEOUT_S)
            except Exception:  # best effort: closing idle connections must not fail close()
                future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_CLEANUP_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _as_coroutine(function: Callable[[], Awaitable[None]]) -> None:
    await function()
