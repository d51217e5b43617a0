"""The apply phase, executor side: route each row, call its model, escalate on failure.

Everything here is plain Python so it can be unit-tested without Spark and
pickled into a pandas UDF closure (classic Spark and Spark Connect alike: no
broadcast, no SparkContext). :class:`ApplySpec` is the only thing shipped; it
holds the plan as JSON, the profiled rows' reference answers and the
catalogue as plain data -- never an API key. The client is built inside the
Python worker, which reads the key from its own environment, and is cached
per worker process (one client per catalogue + settings) and closed at exit.

Outcome per row (documented in the classifier):

- null or blank text: prediction null, model null, cost 0, error ``"empty text"``;
- a profiled key: the reference's answer from profiling (never called again);
  the profiling spend of that item is charged to the one row that was sampled
  (its row id), duplicates of the key get the answer for free;
- duplicates of a key inside one Arrow batch: called once, the copies share the
  answer at cost 0 (copies in other batches or partitions are called again);
- any other row: the plan's model for its key (:meth:`Plan.route`); when that
  call fails after the client's retries, the next model of
  :meth:`Plan.escalation` (dearer plan models, then the reference); when all
  fail, prediction null and the error column lists every model's error;
- an answer that maps to none of the labels: prediction null, the model and
  cost are kept and the error column says ``"answer matches no label: ..."``
  (never a made-up label).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Sequence

import pandas as pd

from smart_spark.engine.plan import Plan

logger = logging.getLogger("smart_spark")

EMPTY_TEXT = "empty text"
NO_LABEL = "answer matches no label"
SPEND_CAP = "spend cap reached"

#: Output struct of the apply UDF (DDL), in this order.
RESULT_FIELDS = ("prediction", "model", "cost", "error", "raw")
RESULT_DDL = "prediction string, model string, cost double, error string, raw string"


@dataclass(frozen=True)
class ProfiledAnswer:
    """The reference's answer to a profiled item, and who pays for it.

    ``row_id`` is the row the sample drew; only that row carries ``cost`` (the
    item's whole profiling spend), so the cost column sums to the run's spend
    even when the key has duplicates. ``error`` set: the reference failed during
    profiling; the row is processed like any other and still carries ``cost``.
    """

    label: str | None
    raw: str | None
    cost: float
    row_id: int
    error: str | None = None
    #: When the reference failed: the other models' answers from profiling
    #: (model -> (label, raw)), reused instead of paying for them again.
    answers: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplySpec:
    """Plain-data description of the apply phase (picklable, no secrets)."""

    plan_json: str
    catalogue_yaml: str
    labels: tuple[str, ...]
    prompt_template: str
    profiled: Mapping[str, ProfiledAnswer] = field(default_factory=dict)
    system_prompt: str | None = None
    max_tokens: int = 16
    timeout: float = 30.0
    max_retries: int = 6
    concurrency: int | None = None
    chunk_size: int = 512
    #: USD each unprofiled row may spend in the apply phase (None: no cap).
    row_budget: float | None = None

    def client_key(self) -> str:
        blob = json.dumps(
            [
                self.catalogue_yaml,
                list(self.labels),
                self.system_prompt,
                self.max_tokens,
                self.timeout,
                self.max_retries,
                self.concurrency,
            ]
        )
        return hashlib.sha256(blob.encode()).hexdigest()


def render_prompt(template: str, text: str, labels: Sequence[str]) -> str:
    """``{text}`` and ``{labels}`` substituted literally (other braces are left alone)."""
    return template.replace("{labels}", ", ".join(labels)).replace("{text}", text)


def is_blank(text: Any) -> bool:
    if text is None:
        return True
    if isinstance(text, float) and math.isnan(text):
        return True
    return not isinstance(text, str) or not text.strip()


# ---------------------------------------------------------------- spend cap
class SpendBudget:
    """A hard USD budget: prompts are admitted only if their worst-case cost still fits.

    Worst case per prompt: ``ceil(chars / 3) + 8`` prompt tokens (system prompt
    included) and ``max_tokens`` completion tokens at the model's prices.
    After each call the reservation is replaced by the actual cost, so the
    budget is used up to within one worst-case call. Thread-safe.
    """

    def __init__(self, limit: float, catalogue_yaml: str, max_tokens: int, system_prompt: str | None = None):
        import yaml

        self.limit = float(limit)
        self.committed = 0.0
        self._lock = threading.Lock()
        self._prices = {m["name"]: m for m in yaml.safe_load(catalogue_yaml)["models"]}
        self._max_tokens = max_tokens
        self._system_chars = len(system_prompt or "")

    def worst_case(self, model: str, prompt: str) -> float:
        m = self._prices.get(model, {})
        prompt_tokens = -(-(len(prompt) + self._system_chars) // 3) + 8
        return (
            prompt_tokens * float(m.get("input_price_per_token", 0.0))
            + self._max_tokens * float(m.get("output_price_per_token", 0.0))
            + float(m.get("request_fee", 0.0))
        )

    def admit(self, model: str, prompts: Sequence[str]) -> tuple[int, float]:
        """How many leading prompts fit, and the amount reserved for them."""
        with self._lock:
            reserved, k = 0.0, 0
            for prompt in prompts:
                cost = self.worst_case(model, prompt)
                if self.committed + reserved + cost > self.limit + 1e-15:
                    break
                reserved += cost
                k += 1
            self.committed += reserved
            return k, reserved

    def settle(self, reserved: float, actual: float) -> None:
        with self._lock:
            self.committed += actual - reserved


# ---------------------------------------------------------------- client cache
_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client_for(spec: ApplySpec, spend_cap: float | None = None):
    """One LLMClient per Python worker and settings (the spend cap is enforced by SpendBudget)."""
    from smart_spark.catalogue import ModelCatalogue
    from smart_spark.llm.client import LLMClient

    def build(cap: float | None):
        import yaml

        catalogue = ModelCatalogue.from_dicts(yaml.safe_load(spec.catalogue_yaml)["models"])
        return LLMClient(
            catalogue,
            list(spec.labels),
            max_tokens=spec.max_tokens,
            timeout=spec.timeout,
            max_retries=spec.max_retries,
            spend_cap=cap,
            concurrency=spec.concurrency,
            system_prompt=spec.system_prompt,
        )

    if spend_cap is not None:
        return build(spend_cap), True
    key = spec.client_key()
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = build(None)
    return client, False


@atexit.register
def close_clients() -> None:
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# ---------------------------------------------------------------- the batch
@lru_cache(maxsize=8)
def _plan(plan_json: str) -> Plan:
    """The plan, parsed once per worker (every Arrow batch of a run ships the same JSON)."""
    return Plan.from_json(plan_json)


def process_batch(
    spec: ApplySpec,
    keys: Sequence[Any],
    texts: Sequence[Any],
    row_ids: Sequence[Any] | None = None,
    *,
    client: Any = None,
) -> pd.DataFrame:
    """Answer one batch of rows; returns a frame with :data:`RESULT_FIELDS` columns.

    ``client`` (tests) replaces the worker's cached client. Rows needing a call
    are grouped by model and the groups run concurrently (the client bounds
    concurrency per model); failed rows move down their escalation chain and
    are grouped again, so no row is ever called twice by the same model.
    """
    plan = _plan(spec.plan_json)
    n = len(keys)
    prediction: list[str | None] = [None] * n
    model_used: list[str | None] = [None] * n
    cost = [0.0] * n
    error: list[str | None] = [None] * n
    raw: list[str | None] = [None] * n

    pending: list[int] = []
    chains: dict[int, list[str]] = {}
    failures: dict[int, list[str]] = {}
    cached: dict[int, Mapping[str, tuple[str | None, str | None]]] = {}
    for i in range(n):
        text = texts[i]
        if is_blank(text):
            error[i] = EMPTY_TEXT
            continue
        key = str(keys[i])
        hit = spec.profiled.get(key)
        if hit is not None:
            if row_ids is not None and _same_row(row_ids[i], hit.row_id):
                cost[i] = float(hit.cost)
            if hit.error is None:
                model_used[i] = plan.reference
                raw[i] = hit.raw
                prediction[i] = hit.label
                if hit.label is None:
                    error[i] = _no_label(hit.raw)
                continue
            failures[i] = [f"{plan.reference} (profiling): {hit.error}"]
            if hit.answers:
                cached[i] = hit.answers
        first = plan.route(key)
        chains[i] = [first] + plan.escalation(first)
        pending.append(i)

    # Duplicates of a key within the batch are called once and share the answer (cost 0).
    leaders: dict[str, int] = {}
    followers: list[tuple[int, int]] = []
    unique: list[int] = []
    for i in pending:
        key = str(keys[i])
        if key in leaders:
            followers.append((i, leaders[key]))
        else:
            leaders[key] = i
            unique.append(i)

    if unique:
        budget = None
        if spec.row_budget is not None:
            budget = SpendBudget(spec.row_budget * len(pending), spec.catalogue_yaml, spec.max_tokens, spec.system_prompt)
        owned = False
        if client is None:
            client, owned = _client_for(spec)
        try:
            _run_calls(spec, plan, client, texts, unique, chains, failures, prediction, model_used, cost, error, raw,
                       cached, budget)
        finally:
            if owned:
                client.close()
    for i, leader in followers:
        prediction[i], model_used[i], error[i], raw[i] = prediction[leader], model_used[leader], error[leader], raw[leader]

    return pd.DataFrame(
        {
            "prediction": pd.Series(prediction, dtype=object),
            "model": pd.Series(model_used, dtype=object),
            "cost": pd.Series(cost, dtype="float64"),
            "error": pd.Series(error, dtype=object),
            "raw": pd.Series(raw, dtype=object),
        }
    )


@dataclass(frozen=True)
class _Failure:
    """Stands for a CallResult when the client raised for a whole batch (nothing charged)."""

    error: str
    label: None = None
    raw: None = None
    cost: float = 0.0


def _complete(client, model: str, prompts: list[str]) -> list[Any]:
    try:
        return client.complete_batch(model, prompts)
    except Exception as exc:  # e.g. the key's env var is missing on this executor
        logger.warning("SMART apply: %s batch failed: %s", model, exc)
        return [_Failure(f"{type(exc).__name__}: {exc}") for _ in prompts]


def _same_row(a: Any, b: Any) -> bool:
    try:
        return int(a) == int(b)
    except (TypeError, ValueError):
        return False


def _no_label(raw: str | None) -> str:
    shown = (raw or "").strip().replace("\n", " ")
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{NO_LABEL}: {shown!r}"


def _run_calls(spec, plan, client, texts, pending, chains, failures, prediction, model_used, cost, error, raw, cached,
               budget=None):
    step = {i: 0 for i in pending}
    todo = list(pending)
    while todo:
        groups: dict[str, list[int]] = {}
        for i in todo:
            model = chains[i][step[i]]
            answer = cached.get(i, {}).get(model)
            if answer is not None:  # answered (and paid) while profiling
                model_used[i], (prediction[i], raw[i]) = model, answer
                error[i] = None if prediction[i] is not None else _no_label(raw[i])
                continue
            groups.setdefault(model, []).append(i)
        if not groups:
            break
        results: dict[str, list[Any]] = {}

        def call(model: str, rows: list[int]) -> tuple[str, list[Any]]:
            out: list[Any] = []
            prompts = [render_prompt(spec.prompt_template, texts[i], spec.labels) for i in rows]
            if budget is None and len(prompts) > spec.chunk_size:
                # Two chunks in flight at once: the client's per-model limit still bounds the
                # requests, and the next chunk fills the slots the previous one's tail leaves.
                chunks = [prompts[k : k + spec.chunk_size] for k in range(0, len(prompts), spec.chunk_size)]
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="smart-chunk") as pool:
                    for results in pool.map(lambda c: _complete(client, model, c), chunks):
                        out.extend(results)
                return model, out
            start = 0
            while start < len(prompts):
                chunk = prompts[start : start + spec.chunk_size]
                reserved = 0.0
                if budget is not None:
                    admitted, reserved = budget.admit(model, chunk)
                    if admitted == 0:
                        out.extend(_Failure(f"{SPEND_CAP}; not called") for _ in prompts[start:])
                        break
                    chunk = chunk[:admitted]
                results = _complete(client, model, chunk)
                if budget is not None:
                    budget.settle(reserved, sum(float(r.cost or 0.0) for r in results))
                out.extend(results)
                start += len(chunk)
            return model, out

        started = time.monotonic()
        if len(groups) == 1:
            (model, rows), = groups.items()
            results[model] = call(model, rows)[1]
        else:
            with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="smart-apply") as pool:
                for model, out in pool.map(lambda kv: call(*kv), groups.items()):
                    results[model] = out
        logger.info(
            "SMART apply: %d rows via %s in %.2fs",
            len(todo),
            ", ".join(f"{m}={len(r)}" for m, r in sorted(groups.items())),
            time.monotonic() - started,
        )

        retry: list[int] = []
        for model, rows in groups.items():
            for i, result in zip(rows, results[model]):
                cost[i] += float(result.cost or 0.0)
                if result.error is None:
                    model_used[i] = model
                    raw[i] = result.raw
                    prediction[i] = result.label
                    error[i] = None if result.label is not None else _no_label(result.raw)
                    continue
                failures.setdefault(i, []).append(f"{model}: {result.error}")
                step[i] += 1
                if step[i] < len(chains[i]):
                    retry.append(i)
                else:
                    model_used[i] = None
                    prediction[i] = None
                    error[i] = "all models failed: " + "; ".join(failures[i])
        todo = retry
