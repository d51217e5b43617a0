"""Free checks that every model can be called, made before the first paid call.

A job that finds out mid-run that a key is missing, an endpoint is down or a
model name is misspelt has already paid for profiling, and may even "succeed"
with empty predictions. :func:`check_models` finds all of these up front:

* the API key variable (``api_key_env``) of each model is set;
* each endpoint answers, and each model is known to it -- how is the
  catalogue entry's ``preflight`` field:

  ``models`` (default)
      ``GET {base_url}/models`` once per endpoint (free on OpenAI, Azure
      OpenAI, vLLM, LiteLLM, the stand-in server) and the model's name must
      be listed;
  ``request``
      one chat request with ``max_tokens=1`` (a fraction of a cent, so
      opt-in) for providers without ``/models``;
  ``none``
      only the key is checked.

Every problem found is reported in one :class:`~smart_spark.errors.PreflightError`
(one line, so it survives Spark's task-failure wrapping), each naming the model
and the real cause in the words of :mod:`smart_spark.llm.failures`.
"""

from __future__ import annotations

import logging
from typing import Sequence

import openai

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.errors import PreflightError
from smart_spark.llm.failures import classify_failure

log = logging.getLogger(__name__)

_PLACEHOLDER_API_KEY = "not-needed"  # local servers ignore it; the SDK refuses to start without one
_LISTED_SHOWN = 20  # model ids quoted when a model is missing from a long list


def check_models(catalogue: ModelCatalogue, names: Sequence[str], *, timeout: float = 10.0) -> None:
    """Raise :class:`PreflightError` unless every model in ``names`` can be called.

    Nothing is paid unless a model's catalogue entry says ``preflight: request``.
    """
    problems: list[str] = []
    by_endpoint: dict[tuple[str | None, str | None], list[ModelSpec]] = {}
    for name in dict.fromkeys(names):
        if name not in catalogue:
            problems.append(f"model {name!r} is not in the catalogue (known: {catalogue.names})")
            continue
        spec = catalogue[name]
        if spec.api_key_env and not spec.api_key():
            problems.append(f"model {name!r}: environment variable {spec.api_key_env} (its api_key_env) is not set")
        elif spec.preflight == "request":
            with _sdk_client(spec, timeout) as client:
                problem = _tiny_request(client, spec, timeout)
            if problem:
                problems.append(problem)
        elif spec.preflight == "models":
            by_endpoint.setdefault((spec.base_url, spec.api_key_env), []).append(spec)
    for specs in by_endpoint.values():
        with _sdk_client(specs[0], timeout) as client:
            problems.extend(_check_listed(client, specs, timeout))
    if problems:
        problems = [catalogue.redact_keys(p) for p in problems]
        raise PreflightError("; ".join(problems) + " (checked before any paid call: nothing was paid)")
    log.info("preflight: %d model(s) reachable and known to their endpoints", len(set(names)))


def _sdk_client(spec: ModelSpec, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=spec.api_key() or _PLACEHOLDER_API_KEY, base_url=spec.base_url, max_retries=0, timeout=timeout
    )


def _check_listed(client: openai.OpenAI, specs: list[ModelSpec], timeout: float) -> list[str]:
    """Problems of ``specs`` (one endpoint, one key) found with one ``GET /models``."""
    names = [spec.name for spec in specs]
    endpoint = specs[0].base_url or "the default OpenAI endpoint"
    try:
        listed = {model.id for model in client.models.list()}
    except (openai.APIStatusError, openai.APIConnectionError) as exc:
        failure = classify_failure(exc, names[0], specs[0].base_url, timeout=timeout)
        if failure.kind == "not_found":  # no /models here at all, not a missing model
            return [
                f"model(s) {names}: GET /models is not available at {endpoint} ({failure.message}); set "
                "'preflight: request' (one tiny paid call) or 'preflight: none' for them in the catalogue"
            ]
        return [f"{failure.message}; this endpoint serves model(s) {names}"]
    shown = sorted(listed)[:_LISTED_SHOWN]
    more = f" and {len(listed) - len(shown)} more" if len(listed) > len(shown) else ""
    return [
        f"model {name!r} is not known to its endpoint {endpoint} (GET /models lists {shown}{more})"
        for name in names
        if name not in listed
    ]


def _tiny_request(client: openai.OpenAI, spec: ModelSpec, timeout: float) -> str | None:
    try:
        client.chat.completions.create(
            model=spec.name, messages=[{"role": "user", "content": "Reply OK."}], max_tokens=1, temperature=0
        )
    except (openai.APIStatusError, openai.APIConnectionError) as exc:
        return f"model {spec.name!r}: " + classify_failure(exc, spec.name, spec.base_url, timeout=timeout).message
    return None
