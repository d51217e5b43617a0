"""What ``SmartLLMClassifier.fit`` learns, as plain data that survives save/load.

:class:`FittedState` is the whole fitted state of a
:class:`~smart_spark.spark.model.SmartLLMClassifierModel`: the plan, the
profile, the reference's answers to the profiled rows, what the model was
fitted *with* (text column, labels, prompt: applying it to data prepared
differently is an error) and what it was fitted *on* (row counts and a hash of
the row keys: the same data is applied directly, new data is confirmed first).

It is saved as one JSON line next to the params (``<path>/state``) with a
format version; a saved model from another format version is refused with a
:class:`~smart_spark.errors.ConfigurationError`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from smart_spark.errors import ConfigurationError

#: Bump when the saved layout changes in a way older readers cannot follow.
FORMAT_VERSION = 1
#: A state with a certified confidence cascade is saved as version 2: a reader of
#: version 1 would apply the cascade model to every row without its threshold, so
#: it must refuse. Without a cascade the layout is version 1 (older readers still load it).
CASCADE_FORMAT_VERSION = 2
#: A state with a chain of cascades (an option ``A>B`` whose models are asked in
#: turn) is version 3: a version-2 reader would route rows to the option's name as
#: if it were a model.
CHAIN_FORMAT_VERSION = 3
READABLE_VERSIONS = (FORMAT_VERSION, CASCADE_FORMAT_VERSION, CHAIN_FORMAT_VERSION)


@dataclass(frozen=True)
class ProfiledAnswer:
    """The reference's answer to a profiled row key (``error`` set: the reference failed).

    ``answers``: when the reference failed, the other models' answers from
    profiling (model -> (label, raw)), reused instead of paying for them again.
    """

    label: str | None
    raw: str | None
    error: str | None = None
    answers: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class DataFingerprint:
    """Identifies the rows a model was fitted on without keeping them."""

    n_rows: int
    n_valid: int
    key_hash: int

    def matches(self, other: "DataFingerprint | None") -> bool:
        return other is not None and dataclasses.astuple(self) == dataclasses.astuple(other)


def cascade_entries(cascade: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The cascades a state applies, one dict each (``model``, ``threshold``, ``expected_kept_share``, ...).

    A state holds either one certified cascade (``spark.cascade_fit``: the dict
    itself) or the cascades of a mix of plain models and cascades
    (``spark.cascade_mix``: a dict with their list under ``"cascades"``).
    """
    if not cascade:
        return []
    if "cascades" in cascade:
        return [dict(c) for c in cascade["cascades"]]
    return [dict(cascade)]


@dataclass(frozen=True)
class FittedState:
    """Everything a fitted model applies; see the module docstring."""

    plan_json: str
    profile: dict[str, Any]
    profiled: Mapping[str, ProfiledAnswer]
    #: What the model was fitted with (textCol, labels, promptTemplate, systemPrompt, referenceModel, maxTokens).
    fitted_with: Mapping[str, Any]
    data: DataFingerprint
    pool_size: int = 0
    n_rows: int = 0
    n_valid: int = 0
    profiling_seconds: float = 0.0
    format_version: int = FORMAT_VERSION
    #: The certified cascade the plan applies (``smart_spark.spark.cascade_fit``), or None.
    cascade: Mapping[str, Any] | None = None

    @property
    def saved_version(self) -> int:
        """The format version this state is saved with (see ``CASCADE_FORMAT_VERSION``)."""
        if self.chains:
            return CHAIN_FORMAT_VERSION
        return CASCADE_FORMAT_VERSION if self.cascade else self.format_version

    @property
    def cascades(self) -> dict[str, float]:
        """Model -> certified threshold, what the apply phase needs (empty: no cascade)."""
        return {str(c["model"]): float(c["threshold"]) for c in cascade_entries(self.cascade) if "steps" not in c}

    @property
    def chains(self) -> dict[str, tuple[tuple[str, float], ...]]:
        """Chain option -> its (model, threshold) steps in order, what the apply phase needs (empty: none)."""
        return {str(c["model"]): tuple((str(s["model"]), float(s["threshold"])) for s in c["steps"])
                for c in cascade_entries(self.cascade) if "steps" in c}

    # ------------------------------------------------------------ views
    def plan(self):
        from smart_spark.engine.plan import Plan

        return Plan.from_json(self.plan_json)

    def profile_object(self):
        return profile_from_dict(self.profile)

    # ------------------------------------------------------ persistence
    def to_json(self) -> str:
        body = {
            "format_version": self.saved_version,
            "plan": json.loads(self.plan_json),
            "profile": self.profile,
            "profiled": {k: [a.label, a.raw, a.error, {m: list(v) for m, v in a.answers.items()}]
                         for k, a in self.profiled.items()},
            "fitted_with": dict(self.fitted_with),
            "data": dataclasses.asdict(self.data),
            "pool_size": self.pool_size,
            "n_rows": self.n_rows,
            "n_valid": self.n_valid,
            "profiling_seconds": self.profiling_seconds,
            "cascade": dict(self.cascade) if self.cascade else None,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str = "saved model") -> "FittedState":
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: the fitted state is not valid JSON ({exc})") from None
        version = body.get("format_version") if isinstance(body, dict) else None
        if version not in READABLE_VERSIONS:
            raise ConfigurationError(
                f"{where}: saved with format version {version!r}, this smart_spark reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; fit the model again with this version"
            )
        return cls(
            plan_json=json.dumps(body["plan"], sort_keys=True),
            profile=body["profile"],
            profiled={k: ProfiledAnswer(v[0], v[1], v[2], {m: tuple(a) for m, a in v[3].items()})
                      for k, v in body["profiled"].items()},
            fitted_with=body["fitted_with"],
            data=DataFingerprint(**body["data"]),
            pool_size=int(body["pool_size"]),
            n_rows=int(body["n_rows"]),
            n_valid=int(body["n_valid"]),
            profiling_seconds=float(body["profiling_seconds"]),
            cascade=body.get("cascade"),
        )


# ------------------------------------------------------------------ profile <-> dict
def profile_to_dict(profile: Any) -> dict[str, Any]:
    """A JSON-able copy of an engine ``Profile`` (arrays as lists, stats as dicts)."""
    import numpy as np

    out: dict[str, Any] = {}
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        if isinstance(value, np.ndarray):
            value = {"__array__": value.tolist(), "dtype": str(value.dtype)}
        elif f.name == "stats":
            value = {m: dataclasses.asdict(s) for m, s in value.items()}
        out[f.name] = value
    return out


def profile_from_dict(data: Mapping[str, Any]):
    import numpy as np

    from smart_spark.engine.profiler import ModelStats, Profile

    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict) and "__array__" in value:
            value = np.asarray(value["__array__"], dtype=value["dtype"])
        elif name == "stats":
            value = {m: ModelStats(**s) for m, s in value.items()}
        kwargs[name] = value
    return Profile(**kwargs)
