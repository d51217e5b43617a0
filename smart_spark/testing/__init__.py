"""A local OpenAI-compatible stand-in LLM server for tests, benchmarks and demos.

Backends replay recorded answers (:class:`ReplayBackend`) or simulate models
with set agreement rates (:class:`SimulatedBackend`); :class:`FaultConfig`
injects rate limits, server errors, timeouts and broken responses.
"""

from smart_spark.testing.backends import (
    Answer,
    Backend,
    BackendError,
    ReplayBackend,
    SimulatedBackend,
    SimulatedModel,
)
from smart_spark.testing.faults import FaultConfig

__all__ = [
    "Answer",
    "Backend",
    "BackendError",
    "FaultConfig",
    "ReplayBackend",
    "SimulatedBackend",
    "SimulatedModel",
    "StandInServer",
    "with_base_url",
]


def __getattr__(name: str):
    # Imported lazily so `python -m smart_spark.testing.server` does not find the
    # module already imported by its package (runpy warns about that).
    if name in ("StandInServer", "with_base_url"):
        from smart_spark.testing import server

        return getattr(server, name)
    raise AttributeError(f"module 'smart_spark.testing' has no attribute {name!r}")
