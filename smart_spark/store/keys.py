"""The identity of a paid answer: everything that determines what the provider returns.

Two evaluations that would send the same request share one key, in any process
on any host, so the store can hand back the earlier answer instead of paying
again. The key is a sha256 over a canonical JSON document (sorted keys, no
whitespace, UTF-8), so it does not depend on dict order, Python version or
platform.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from smart_spark.errors import ConfigurationError

#: Bumped when the key material changes meaning, so old stores are not misread.
KEY_VERSION = 1


def answer_key(
    model: str,
    prompt: str,
    *,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> str:
    """Hex sha256 naming the answer ``model`` gives to this exact request.

    ``prompt`` is the full rendered prompt; ``options`` holds anything else
    that changes the answer (e.g. logprobs settings). Options must be JSON
    values (str, numbers, bools, None, lists, mappings).
    """
    material = {
        "v": KEY_VERSION,
        "model": model,
        "prompt": prompt,
        "system_prompt": system_prompt,
        "max_tokens": max_tokens,
        "options": dict(options or {}),
    }
    try:
        canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"answer_key: options for model {model!r} must be plain JSON values: {exc}"
        ) from exc
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
