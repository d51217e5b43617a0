"""The model catalogue: which LLMs may answer, what they cost, how to reach them.

A catalogue is plain data (no client objects, no secrets) so it can be put in a
Spark param, pickled to executors and saved with a pipeline. It holds the
*name* of the environment variable with each model's API key, never the key.

YAML shape (prices per 1M tokens, as providers publish them)::

    models:
      - name: gpt-4o-mini
        input_price_per_1m: 0.15
        output_price_per_1m: 0.60
        request_fee: 0.0              # optional, USD per request
        base_url: https://api.openai.com/v1   # optional
        api_key_env: OPENAI_API_KEY   # optional: the NAME of the env var
        max_concurrency: 16           # optional
        rpm: 500                      # optional: the account's requests per minute for this model
        tpm: 200000                   # optional: the account's tokens per minute for this model
        batch_discount: 0.5           # optional: Batch API price as a share of the on-line price
        preflight: models             # optional: how the free pre-run check reaches the model
                                      # (models: GET /models lists it; request: one tiny paid
                                      # chat request; none: only the key is checked)
        top_logprobs: 5               # optional: model returns log-probabilities
                                      # (asked for, turned into a label confidence)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

PER_MILLION = 1_000_000.0
DEFAULT_MAX_CONCURRENCY = 16

# YAML key -> (field, tokens per priced unit). Prices are divided by the unit
# (not multiplied by its inverse) so per-1M figures round-trip exactly.
_PRICE_KEYS = {
    "input_price_per_1m": ("input_price_per_token", PER_MILLION),
    "output_price_per_1m": ("output_price_per_token", PER_MILLION),
    "input_price_per_1k": ("input_price_per_token", 1000.0),
    "output_price_per_1k": ("output_price_per_token", 1000.0),
    "input_price_per_token": ("input_price_per_token", 1.0),
    "output_price_per_token": ("output_price_per_token", 1.0),
}
PREFLIGHT_MODES = ("models", "request", "none")
_OTHER_KEYS = {"name", "request_fee", "base_url", "api_key_env", "max_concurrency", "preflight", "top_logprobs",
               "rpm", "tpm", "batch_discount"}
MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs


class CatalogueError(ValueError):
    """A model catalogue is malformed (the message names the model and field)."""


@dataclass(frozen=True)
class ModelSpec:
    """One LLM the operator may call.

    Prices are stored per token (USD) so cost arithmetic never rescales; use
    :meth:`from_dict` to read the per-1M form found in YAML files.
    """

    name: str
    input_price_per_token: float
    output_price_per_token: float
    request_fee: float = 0.0
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    #: Account limits (requests / tokens per minute) the whole job must stay under; None: not declared.
    rpm: float | None = None
    tpm: float | None = None
    #: Batch API price as a share of the on-line price (0 < d <= 1); None: no batch price known (pays 1.0).
    batch_discount: float | None = None
    preflight: str = "models"
    top_logprobs: int = 0  # > 0: ask for log-probabilities (confidence cascades); 0: model has none

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CatalogueError("model name must be a non-empty string")
        for field_name in ("input_price_per_token", "output_price_per_token", "request_fee"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise CatalogueError(
                    f"model {self.name!r}: {field_name} must be a finite number >= 0, got {value!r}"
                )
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise CatalogueError(
                f"model {self.name!r}: max_concurrency must be an integer >= 1, "
                f"got {self.max_concurrency!r}"
            )
        for field_name in ("rpm", "tpm"):
            value = getattr(self, field_name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
            ):
                raise CatalogueError(f"model {self.name!r}: {field_name} must be a number > 0 per minute, got {value!r}")
        discount = self.batch_discount
        if discount is not None and (
            isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0 < discount <= 1
        ):
            raise CatalogueError(f"model {self.name!r}: batch_discount must be in (0, 1], got {discount!r}")
        if self.preflight not in PREFLIGHT_MODES:
            raise CatalogueError(
                f"model {self.name!r}: preflight must be one of {list(PREFLIGHT_MODES)}, got {self.preflight!r}"
            )
        if (
            isinstance(self.top_logprobs, bool)
            or not isinstance(self.top_logprobs, int)
            or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS
        ):
            raise CatalogueError(
                f"model {self.name!r}: top_logprobs must be an integer in 0..{MAX_TOP_LOGPROBS}, "
                f"got {self.top_logprobs!r}"
            )
        if self.api_key_env is not None and not _looks_like_env_var_name(self.api_key_env):
            # Refuse anything that is not an env var *name*: a pasted key must not
            # end up in params, saved pipelines or MLflow.
            raise CatalogueError(
                f"model {self.name!r}: api_key_env must be the NAME of an environment "
                "variable (letters, digits, underscores), not a key"
            )

    def cost(self, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> float:
        """USD for one call's reported usage (plus the per-request fee)."""
        return (
            prompt_tokens * self.input_price_per_token
            + completion_tokens * self.output_price_per_token
            + requests * self.request_fee
        )

    def batch_cost(self, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> float:
        """USD for one call answered through the Batch API (the on-line price times ``batch_discount``)."""
        return self.cost(prompt_tokens, completion_tokens, requests) * (self.batch_discount or 1.0)

    def api_key(self) -> str | None:
        """The key from the environment at call time (never stored on the spec)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def required_api_key(self) -> str | None:
        """:meth:`api_key`, or a RuntimeError naming the variable when the entry names one that is unset."""
        key = self.api_key()
        if self.api_key_env and not key:
            raise RuntimeError(
                f"model {self.name!r}: environment variable {self.api_key_env} (its api_key_env) is not set"
            )
        return key

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> "ModelSpec":
        """Build from a YAML/JSON entry; prices per 1M, per 1K or per token."""
        if not isinstance(entry, Mapping):
            raise CatalogueError(f"a model entry must be a mapping, got {entry!r}")
        name = entry.get("name")
        unknown = set(entry) - set(_PRICE_KEYS) - _OTHER_KEYS
        if unknown:
            raise CatalogueError(f"model {name!r}: unknown field(s) {sorted(unknown)}")
        prices: dict[str, float] = {}
        for key, (target, unit) in _PRICE_KEYS.items():
            if key in entry:
                if target in prices:
                    raise CatalogueError(f"model {name!r}: {target} given twice")
                value = entry[key]
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise CatalogueError(f"model {name!r}: {key} must be a number, got {value!r}")
                prices[target] = float(value) / unit
        for target in ("input_price_per_token", "output_price_per_token"):
            if target not in prices:
                raise CatalogueError(
                    f"model {name!r}: missing price {target.replace('_per_token', '_per_1m')}"
                )
        return cls(
            name=name,
            request_fee=float(entry.get("request_fee", 0.0) or 0.0),
            base_url=entry.get("base_url"),
            api_key_env=entry.get("api_key_env"),
            max_concurrency=int(entry.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
            rpm=entry.get("rpm"),
            tpm=entry.get("tpm"),
            batch_discount=entry.get("batch_discount"),
            preflight=entry.get("preflight", "models"),
            top_logprobs=entry.get("top_logprobs", 0),
            **prices,
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (prices per 1M tokens); round-trips through from_dict."""
        data = asdict(self)
        data["input_price_per_1m"] = data.pop("input_price_per_token") * PER_MILLION
        data["output_price_per_1m"] = data.pop("output_price_per_token") * PER_MILLION
        if data["preflight"] == "models":
            del data["preflight"]  # the default; older readers do not know the key
        if not data["top_logprobs"]:
            del data["top_logprobs"]  # models without log-probabilities keep today's YAML form
        return {k: v for k, v in data.items() if v is not None}


def _looks_like_env_var_name(value: str) -> bool:
    return bool(value) and value.replace("_", "a").isalnum() and not value[0].isdigit()


@dataclass(frozen=True)
class ModelCatalogue:
    """An ordered, validated set of :class:`ModelSpec` with unique names."""

    models: tuple[ModelSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise CatalogueError("the model catalogue is empty")
        seen: set[str] = set()
        for spec in self.models:
            if not isinstance(spec, ModelSpec):
                raise CatalogueError(f"catalogue entries must be ModelSpec, got {spec!r}")
            if spec.name in seen:
                raise CatalogueError(f"duplicate model name {spec.name!r} in the catalogue")
            seen.add(spec.name)

    def __iter__(self):
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, name: object) -> bool:
        return any(spec.name == name for spec in self.models)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.models]

    def redact_keys(self, text: str) -> str:
        """``text`` with every model's API key (read from its environment variable) replaced by
        ``[REDACTED]``: provider error bodies may echo a key back, and no key may reach a log or column."""
        for spec in self.models:
            key = spec.api_key()
            if key and len(key) >= 4:
                text = text.replace(key, "[REDACTED]")
        return text

    def __getitem__(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(f"model {name!r} is not in the catalogue (known: {self.names})")

    def require(self, name: str, role: str = "reference model") -> ModelSpec:
        """The spec of ``name``, or a CatalogueError naming the role and the choices."""
        if name not in self:
            raise CatalogueError(f"{role} {name!r} is not in the catalogue (known: {self.names})")
        return self[name]

    @classmethod
    def from_dicts(cls, entries: Iterable[Mapping[str, Any]]) -> "ModelCatalogue":
        return cls(tuple(ModelSpec.from_dict(entry) for entry in entries))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "ModelCatalogue":
        """Load ``models:`` from a YAML file (a job config with that key works too)."""
        try:
            document = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise CatalogueError(f"model catalogue file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise CatalogueError(f"model catalogue {path} is not valid YAML: {exc}") from None
        if not isinstance(document, Mapping) or not isinstance(document.get("models"), list):
            raise CatalogueError(f"{path}: expected a top-level 'models:' list")
        return cls.from_dicts(document["models"])

    def to_dicts(self) -> list[dict[str, Any]]:
        return [spec.to_dict() for spec in self.models]

    def to_yaml(self) -> str:
        return yaml.safe_dump({"models": self.to_dicts()}, sort_keys=False)


def load_catalogue(source: "ModelCatalogue | str | os.PathLike[str] | Iterable[Any]") -> ModelCatalogue:
    """Accept a catalogue, a YAML path, or a list of ModelSpec / dict entries."""
    if isinstance(source, ModelCatalogue):
        return source
    if isinstance(source, (str, os.PathLike)):
        return ModelCatalogue.from_yaml(source)
    entries = list(source)
    return ModelCatalogue(
        tuple(e if isinstance(e, ModelSpec) else ModelSpec.from_dict(e) for e in entries)
    )
