"""Settings of one SMART run, validated up front with errors that name the field."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: ``reference``: the reference on everything (no profiling).
#: ``single``: profile until the cheapest promising model would be satisfied, then
#: that model alone on the rest (the paper's SMART without the pays-off rule).
#: ``single-early-stop``: the same, with the confirmation size chosen by the pays-off rule.
#: ``mix``: the multi-model mix with the pays-off rule (the default).
METHODS = ("reference", "single", "single-early-stop", "mix")


@dataclass(frozen=True)
class SmartConfig:
    """What the user promises and how hard the engine may work for it.

    ``accuracy_target``: share of all rows whose answer must equal the reference's.
    ``confidence``: probability with which the target must hold.
    ``pilot_size``: items of the exploratory pilot; ``None`` picks it from N
    (and lets it grow before a long confirmation, ``Profiler._grow_pilot``).
    ``max_profile``: upper limit on profiled items (pilot + confirmation); ``None``: N.
    ``batch_size``: items per profiling batch (one concurrent call per model each).
    """

    accuracy_target: float
    confidence: float = 0.95
    method: str = "mix"
    seed: int = 0
    pilot_size: int | None = None
    max_profile: int | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        _require_real("accuracy_target", self.accuracy_target)
        if not 0.0 < self.accuracy_target <= 1.0:
            raise ValueError(f"accuracy_target must be in (0, 1], got {self.accuracy_target}")
        _require_real("confidence", self.confidence)
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for name in ("pilot_size", "max_profile"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    @property
    def error_budget(self) -> float:
        """``1 - confidence``: the total probability the promise may fail."""
        return 1.0 - self.confidence


def _require_real(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
