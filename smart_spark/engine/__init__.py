"""The SMART method without Spark: bounds, profiler, pays-off rule, planner, plan, simulation.

Names are imported on first use (PEP 562), so ``smart_spark.engine.plan`` — all
an executor needs to route rows — loads without scipy and pulp, which take
seconds to import in every fresh Python worker.
"""

from importlib import import_module

_EXPORTS = {
    "METHODS": "config",
    "SmartConfig": "config",
    "SmartEngine": "engine",
    "SmartResult": "engine",
    "plan_from_profile": "engine",
    "Plan": "plan",
    "stable_unit_hash": "plan",
    "MixSolution": "planner",
    "Option": "planner",
    "PlanningError": "planner",
    "solve_mix": "planner",
    "AnswerArrays": "profiler",
    "ModelStats": "profiler",
    "Profile": "profiler",
    "ProfiledItem": "profiler",
    "Profiler": "profiler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'smart_spark.engine' has no attribute {name!r}")
    value = getattr(import_module(f"smart_spark.engine.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
