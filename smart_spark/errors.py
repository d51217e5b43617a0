"""The errors smart_spark raises on purpose, one class per way a run can fail.

Every class carries the process exit code the job (``jobs/classify.py``) maps it
to, so a scheduler can tell "fix your config" from "the provider is down" from
"the promise could not be kept" without parsing messages:

====  ===================================  ==========================================
code  class                                meaning
====  ===================================  ==========================================
2     :class:`ConfigurationError`          bad params, config, input or saved model
3     :class:`PreflightError`              endpoint, model or key unusable; nothing paid
4     :class:`ProfilingError`              profiling could not get the reference's answers
5     :class:`ErrorRateExceeded`           too many rows ended without an answer
6     :class:`DriftError`                  a reused plan no longer holds (``onDrift="fail"``)
====  ===================================  ==========================================

Errors raised inside a Spark task reach the driver wrapped in a Java exception;
:func:`find_smart_error` recovers the original class from the message, which
always starts with the class's ``marker``.
"""

from __future__ import annotations


class SmartSparkError(RuntimeError):
    """Base class; ``exit_code`` is what the job exits with."""

    exit_code = 1

    @classmethod
    def marker(cls) -> str:
        return f"[{cls.__name__}]"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.marker()} {message}")


class ConfigurationError(SmartSparkError, ValueError):
    """A parameter, config file, input schema or saved model is unusable."""

    exit_code = 2


class PreflightError(SmartSparkError):
    """A check made before the first paid call failed (endpoint, model, key, output)."""

    exit_code = 3


class ProfilingError(SmartSparkError):
    """Profiling could not measure what the plan needs (e.g. the reference never answered)."""

    exit_code = 4


class ErrorRateExceeded(SmartSparkError):
    """More rows than ``maxErrorRate`` allows ended in the error column."""

    exit_code = 5


class DriftError(SmartSparkError):
    """A loaded plan failed its confirmation on new data and ``onDrift`` is ``"fail"``."""

    exit_code = 6


_ALL: tuple[type[SmartSparkError], ...] = (
    ConfigurationError,
    PreflightError,
    ProfilingError,
    ErrorRateExceeded,
    DriftError,
)


def find_smart_error(exc: BaseException) -> SmartSparkError | None:
    """The smart_spark error behind ``exc``, also when Spark wrapped it in a task failure.

    Returns ``exc`` itself when it is one; otherwise looks for a class marker in
    the text of ``exc`` and its causes and rebuilds that error with the text
    that follows the marker (first line only: Spark appends stack traces).
    """
    if isinstance(exc, SmartSparkError):
        return exc
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        for cls in _ALL:
            at = text.find(cls.marker())
            if at >= 0:
                rest = text[at + len(cls.marker()) :].strip().splitlines()
                return cls(rest[0] if rest else "")
        current = current.__cause__ or current.__context__
    return None


__all__ = [
    "ConfigurationError",
    "DriftError",
    "ErrorRateExceeded",
    "PreflightError",
    "ProfilingError",
    "SmartSparkError",
    "find_smart_error",
]
