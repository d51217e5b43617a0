"""The error classes keep their exit codes and survive Spark's wrapping of task failures."""

import pytest

from smart_spark.errors import (
    ConfigurationError,
    DriftError,
    ErrorRateExceeded,
    PreflightError,
    ProfilingError,
    find_smart_error,
)


@pytest.mark.parametrize(
    "cls, code",
    [(ConfigurationError, 2), (PreflightError, 3), (ProfilingError, 4), (ErrorRateExceeded, 5), (DriftError, 6)],
)
def test_exit_codes_are_distinct_and_stable(cls, code):
    assert cls.exit_code == code
    assert str(cls("boom")).startswith(cls.marker())


def test_error_found_inside_a_wrapped_task_failure():
    inner = ErrorRateExceeded("42 of 100 rows failed on gpt-4o-mini: connection refused")
    wrapped = RuntimeError(f"Job aborted due to stage failure: Task 3 failed: PythonException: {inner}\n  at ...")
    found = find_smart_error(wrapped)
    assert isinstance(found, ErrorRateExceeded)
    assert "42 of 100 rows failed on gpt-4o-mini" in str(found)
    assert "at ..." not in str(found)


def test_error_found_through_the_cause_chain_and_none_for_others():
    try:
        try:
            raise DriftError("gpt-3.5-turbo agreement dropped")
        except DriftError as exc:
            raise RuntimeError("py4j wrapper") from exc
    except RuntimeError as outer:
        assert isinstance(find_smart_error(outer), DriftError)
    assert find_smart_error(ValueError("plain")) is None


def test_configuration_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        raise ConfigurationError("labels must have at least two labels")
