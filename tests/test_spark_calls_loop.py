"""Paying for answers works where the driver thread already runs an event loop (Jupyter, Databricks)."""

import asyncio

from smart_spark.spark.calls import _run_coroutine


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def test_coroutine_runs_without_a_running_loop():
    assert _run_coroutine(_answer()) == 42


def test_coroutine_runs_inside_a_running_loop():
    async def notebook_cell() -> int:  # a notebook cell runs inside the kernel's loop
        return _run_coroutine(_answer())

    assert asyncio.run(notebook_cell()) == 42
