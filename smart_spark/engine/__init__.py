"""The SMART method without Spark: bounds, profiler, pays-off rule, planner, plan, simulation."""

from smart_spark.engine.config import METHODS, SmartConfig
from smart_spark.engine.engine import SmartEngine, SmartResult, plan_from_profile
from smart_spark.engine.plan import Plan, stable_unit_hash
from smart_spark.engine.planner import MixSolution, Option, PlanningError, solve_mix
from smart_spark.engine.profiler import AnswerArrays, ModelStats, Profile, ProfiledItem, Profiler

__all__ = [
    "METHODS",
    "AnswerArrays",
    "MixSolution",
    "ModelStats",
    "Option",
    "Plan",
    "PlanningError",
    "Profile",
    "ProfiledItem",
    "Profiler",
    "SmartConfig",
    "SmartEngine",
    "SmartResult",
    "plan_from_profile",
    "solve_mix",
    "stable_unit_hash",
]
