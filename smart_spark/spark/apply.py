"""The apply phase, executor side: route each row, answer it once, escalate on failure.

Plain Python (no Spark), so it is unit-tested without a JVM. :class:`ApplySpec`
is everything an executor needs (plan as JSON, profiled answers, catalogue as
YAML, settings; never an API key); the model ships it by broadcast on classic
Spark and inside the UDF closure on Spark Connect. The LLM client is built in
the Python worker, which reads the key from its own environment, and cached per
worker process.

Outcome per row:

- null or blank text: prediction null, model null, cost 0, error ``"empty text"``;
- a profiled key: the reference's answer from profiling (not paid again);
- duplicates of a key inside one batch: answered once, the copies reuse it (cost 0);
- any other row: the plan's model for its key (:meth:`Plan.route`); when that
  call fails after the client's retries, the next model of
  :meth:`Plan.escalation`; when all fail, prediction null and the error column
  lists every model's error;
- an answer that maps to none of the labels: prediction null, the model kept,
  error ``"answer matches no label: ..."`` (never a made-up label);
- a cascade model (``ApplySpec.cascades``: model -> certified threshold) or a
  chain of them (``ApplySpec.chains``): an answer stands only when its
  confidence is at or above its step's threshold; below it (or without a
  confidence) the row goes on to the chain's next model and then the reference,
  like a failed call, every call's cost still counted in ``cost``
  (:mod:`smart_spark.spark.cascade_apply`).

``escalated`` is True when the row's first model was asked and the row then went
on to a later model (low confidence or a failed call).

``cost`` counts only what this evaluation paid for the row and ``paid`` says
whether the answer shown was bought by this evaluation (False: reused from
profiling, a duplicate, or the answer store).

``execution_mode="batch"`` buys the same answers through the provider's Batch
API (:mod:`smart_spark.spark.batch_calls`); a row whose batch outlived the wait
ends with an error saying a rerun resumes it, and is not escalated.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Sequence

from smart_spark.spark.cascade_apply import row_steps, stands
from smart_spark.spark.state import ProfiledAnswer

logger = logging.getLogger("smart_spark")

EMPTY_TEXT = "empty text"
NO_LABEL = "answer matches no label"
SPEND_CAP = "spend cap reached"
OVERSIZE = "prompt longer than maxPromptChars"
ALL_FAILED = "all models failed"

#: Output struct of the apply UDF (DDL).
RESULT_DDL = "prediction string, model string, cost double, error string, paid boolean, escalated boolean"


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
    #: USD each row left to the apply phase may spend (None: no cap).
    row_budget: float | None = None
    #: The answer store's directory (None: no store, e.g. unit tests).
    answers_path: str | None = None
    #: Share of a task's rows allowed to end without an answer (1.0: never fail).
    max_error_rate: float = 1.0
    max_prompt_chars: int | None = None
    oversize_policy: str = "truncate"
    #: Certified confidence cascades: model -> threshold (its answer kept at confidence >= threshold).
    cascades: Mapping[str, float] = field(default_factory=dict)
    #: Certified chains of cascades: option name -> ((model, threshold), ...) asked in order, then the reference.
    chains: Mapping[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    #: "online" (concurrent calls) or "batch" (the provider's Batch API, one batch per model and partition).
    execution_mode: str = "online"
    #: This task's share of each model's rpm / tpm (1 / tasks running at once); None: the client's own default.
    rate_share: float | None = None
    #: Batch mode: longest pause between two polls of a batch, and how long a task waits for its batches.
    batch_poll_s: float = 30.0
    batch_max_wait_s: float = 25 * 3600.0

    def prompt(self, text: str) -> str | None:
        """The row's prompt; None when it is oversized and the policy is not "truncate"."""
        prompt = render_prompt(self.prompt_template, text, self.labels)
        limit = self.max_prompt_chars
        if limit is None or len(prompt) <= limit:
            return prompt
        if self.oversize_policy != "truncate":
            return None
        room = max(0, limit - (len(prompt) - len(text)))
        return render_prompt(self.prompt_template, text[:room], self.labels)

    def client_key(self) -> str:
        """Identifies the cached client: two jobs with another rate share (or any other setting) never share one."""
        blob = json.dumps([self.catalogue_yaml, list(self.labels), self.system_prompt, self.max_tokens,
                           self.timeout, self.max_retries, self.concurrency, self.rate_share])
        return hashlib.sha256(blob.encode()).hexdigest()

    def catalogue(self):
        return _catalogue(self.catalogue_yaml)


@dataclass(frozen=True)
class Answer:
    """One model's answer to one prompt as the apply phase sees it."""

    model: str
    label: str | None
    raw: str | None
    #: What the answer cost when it was bought (the engine's unit costs use it).
    cost: float
    error: str | None
    #: True when this call bought the answer (False: reused).
    paid: bool
    #: USD this call spent (0 when reused; failed calls may be charged too).
    spent: float = 0.0
    #: The label's confidence from log-probabilities (None: the model gives none).
    confidence: float | None = None
    #: True when the answer is still coming (its provider batch outlived the wait): not a failure, not escalated.
    pending: bool = False


@dataclass
class Outcome:
    """What one row ends with (one output struct)."""

    prediction: str | None = None
    model: str | None = None
    cost: float = 0.0
    error: str | None = None
    paid: bool = False
    escalated: bool = False

    def take(self, answer: Answer) -> None:
        self.model, self.prediction, self.paid = answer.model, answer.label, answer.paid
        self.error = None if answer.label is not None else no_label(answer.raw)


def render_prompt(template: str, text: str, labels: Sequence[str]) -> str:
    """``{text}`` and ``{labels}`` substituted literally (other braces are left alone)."""
    return template.replace("{labels}", ", ".join(labels)).replace("{text}", text)


def is_blank(text: Any) -> bool:
    if text is None:
        return True
    if isinstance(text, float) and math.isnan(text):
        return True
    return not isinstance(text, str) or not text.strip()


def no_label(raw: str | None) -> str:
    shown = (raw or "").strip().replace("\n", " ")
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{NO_LABEL}: {shown!r}"


@lru_cache(maxsize=8)
def _catalogue(catalogue_yaml: str):
    import yaml

    from smart_spark.catalogue import ModelCatalogue

    return ModelCatalogue.from_dicts(yaml.safe_load(catalogue_yaml)["models"])


@lru_cache(maxsize=8)
def _plan(plan_json: str):
    """The plan, parsed once per worker (every batch of a run ships the same JSON)."""
    from smart_spark.engine.plan import Plan

    return Plan.from_json(plan_json)


# ---------------------------------------------------------------- client cache
_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def client_for(spec: ApplySpec):
    """One LLMClient per Python worker and settings (spending is capped by SpendBudget, not here)."""
    from smart_spark.llm.client import LLMClient

    key = spec.client_key()
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = LLMClient(
                spec.catalogue(), list(spec.labels), max_tokens=spec.max_tokens, timeout=spec.timeout,
                max_retries=spec.max_retries, concurrency=spec.concurrency, system_prompt=spec.system_prompt,
                rate_share=spec.rate_share,
            )
    return client


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
def process_batch(
    spec: ApplySpec,
    keys: Sequence[Any],
    texts: Sequence[Any],
    *,
    client: Any = None,
) -> "pd.DataFrame":  # noqa: F821
    """Answer one batch of rows; one output struct per row, in order.

    ``client`` (tests) replaces the worker's cached client.
    """
    from smart_spark.spark.answers import open_store
    from smart_spark.spark.calls import PayingCaller

    plan = _plan(spec.plan_json)
    outcomes = [Outcome() for _ in keys]
    leaders, followers, chains, prior = _triage(spec, plan, keys, texts, outcomes)
    if leaders:
        store = open_store(spec.answers_path) if spec.answers_path else None
        caller_class = PayingCaller
        if spec.execution_mode == "batch":
            from smart_spark.spark.batch_calls import BatchPayingCaller as caller_class
        caller = caller_class(spec, client if client is not None else client_for(spec),
                              budget=_batch_budget(spec, leaders), store=store)
        try:
            _answer(spec, plan.reference, caller, texts, leaders, chains, prior, outcomes)
        finally:
            caller.close()
    for i, leader in followers:
        copy = outcomes[leader]
        outcomes[i] = Outcome(copy.prediction, copy.model, 0.0, copy.error, False, copy.escalated)
    return _frame(outcomes)


def submit_ahead(spec: ApplySpec, keys: Sequence[Any], texts: Sequence[Any], *, client: Any = None) -> None:
    """Batch mode, streamed: send these rows' first-choice calls as provider batches now, answer them later.

    Only what :func:`process_batch` on the same rows would send first (rows whose
    answer profiling already bought are not sent); a later :func:`process_batch`
    waits for these batches (recorded in the answer store) instead of resubmitting.
    """
    from smart_spark.spark.answers import open_store
    from smart_spark.spark.batch_calls import BatchPayingCaller

    plan = _plan(spec.plan_json)
    leaders, _, chains, prior = _triage(spec, plan, keys, texts, [Outcome() for _ in keys])
    groups: dict[str, list[str]] = {}
    for i in leaders:
        model, threshold = chains[i][0]
        if i in prior and model in prior[i].answers and threshold is None:
            continue
        groups.setdefault(model, []).append(spec.prompt(texts[i]))
    if not groups:
        return
    store = open_store(spec.answers_path) if spec.answers_path else None
    caller = BatchPayingCaller(spec, client if client is not None else client_for(spec), store=store)
    try:
        caller.submit(groups)
    finally:
        caller.close()


def _batch_budget(spec: ApplySpec, rows: Sequence[int]):
    if spec.row_budget is None:
        return None
    from smart_spark.llm.spend import SpendBudget

    return SpendBudget(spec.row_budget * len(rows), spec.catalogue(), spec.max_tokens, spec.system_prompt)


def _triage(spec, plan, keys, texts, outcomes):
    """Settle blank and profiled rows; the rest need calls: one leader per key, its copies follow.

    Returns (leaders, followers, chains, prior): ``chains[i]`` the models to try in
    order with the confidence each answer needs (``cascade_apply.row_steps``),
    ``prior[i]`` the failures and cached answers from profiling.
    """
    leaders: list[int] = []
    followers: list[tuple[int, int]] = []
    chains: dict[int, list[str]] = {}
    prior: dict[int, ProfiledAnswer] = {}
    first_of_key: dict[str, int] = {}
    for i, text in enumerate(texts):
        if is_blank(text):
            outcomes[i].error = EMPTY_TEXT
            continue
        if spec.prompt(text) is None:
            if spec.oversize_policy == "fail":
                from smart_spark.errors import ConfigurationError

                raise ConfigurationError(
                    f"a row's prompt has {len(render_prompt(spec.prompt_template, text, spec.labels))} characters, "
                    f"more than maxPromptChars={spec.max_prompt_chars} (oversizePolicy='fail')")
            outcomes[i].error = f"{OVERSIZE} ({spec.max_prompt_chars}); not called"
            continue
        if keys[i] is None:  # Spark found the text blank (Unicode whitespace)
            outcomes[i].error = EMPTY_TEXT
            continue
        key = str(keys[i])
        hit = spec.profiled.get(key)
        if hit is not None and hit.error is None:
            outcomes[i].take(Answer(plan.reference, hit.label, hit.raw, 0.0, None, False))
            continue
        if key in first_of_key:
            followers.append((i, first_of_key[key]))
            continue
        first_of_key[key] = i
        if hit is not None:
            prior[i] = hit
        chains[i] = row_steps(spec, plan, plan.route(key))
        leaders.append(i)
    return leaders, followers, chains, prior


def _answer(spec, reference, caller, texts, rows, chains, prior, outcomes) -> None:
    """Ask each row's model; failed rows move down their escalation chain (never the same model twice)."""
    step = {i: 0 for i in rows}
    failures: dict[int, list[str]] = {
        i: [f"{reference} (profiling): {p.error}"] for i, p in prior.items()
    }
    todo = list(rows)
    while todo:
        groups: dict[str, list[int]] = {}
        for i in todo:
            model, threshold = chains[i][step[i]]
            cached = prior[i].answers.get(model) if i in prior else None
            if cached is not None and threshold is None:  # answered (and paid) while profiling
                outcomes[i].take(Answer(model, cached[0], cached[1], 0.0, None, False))
                continue
            groups.setdefault(model, []).append(i)
        if not groups:
            return
        started = time.monotonic()
        answers = caller.ask({m: [spec.prompt(texts[i]) for i in g] for m, g in groups.items()})
        logger.info("SMART apply: %d rows via %s in %.2fs", sum(map(len, groups.values())),
                    ", ".join(f"{m}={len(g)}" for m, g in sorted(groups.items())), time.monotonic() - started)
        todo = []
        for model, group in groups.items():
            for i, answer in zip(group, answers[model]):
                outcomes[i].cost += answer.spent
                if stands(answer, chains[i][step[i]][1]):
                    outcomes[i].take(answer)
                    continue
                if answer.pending:  # its batch may still answer: escalating would pay twice
                    outcomes[i].model, outcomes[i].prediction, outcomes[i].error = model, None, answer.error
                    continue
                if answer.error is not None:
                    failures.setdefault(i, []).append(f"{model}: {answer.error}")
                step[i] += 1
                outcomes[i].escalated = True
                if step[i] < len(chains[i]):
                    todo.append(i)
                else:
                    outcomes[i].model = outcomes[i].prediction = None
                    outcomes[i].error = f"{ALL_FAILED}: " + "; ".join(failures[i])


class ErrorRateGuard:
    """Fails the task when too many of its rows end without an answer (``maxErrorRate``).

    Counts rows with text whose every model failed (rows stopped by the spend
    cap, oversized rows and answers that match no label are not failures). Fails
    early once 10 rows failed above the rate, and at the end of the task on
    the exact share. Answers paid before the failure are in the answer store.
    """

    EARLY = 10

    def __init__(self, spec: ApplySpec) -> None:
        self.spec = spec
        self.rows = 0
        self.failed = 0
        self.first: str | None = None

    def add(self, frame) -> None:
        for error in frame["error"]:
            if error is not None and (error == EMPTY_TEXT or error.startswith(OVERSIZE)):
                continue
            self.rows += 1
            if error is not None and error.startswith(ALL_FAILED) and SPEND_CAP not in error:
                self.failed += 1
                self.first = self.first or error
        if self.failed >= self.EARLY:
            self.check()

    def check(self) -> None:
        if self.failed and self.failed > self.spec.max_error_rate * self.rows:
            from smart_spark.errors import ErrorRateExceeded

            detail = (self.first or "")[len(ALL_FAILED) + 2:]
            model = detail.split(":", 1)[0]
            raise ErrorRateExceeded(
                f"model {model}: {self.failed} of {self.rows} rows of this task ended without an answer "
                f"({self.failed / self.rows:.1%} > maxErrorRate {self.spec.max_error_rate:g}); first error: "
                f"{detail[:500]}; the answers already paid are in the answer store, a rerun pays only for the rest")


def _frame(outcomes: Sequence[Outcome]):
    import pandas as pd

    return pd.DataFrame(
        {
            "prediction": pd.Series([o.prediction for o in outcomes], dtype=object),
            "model": pd.Series([o.model for o in outcomes], dtype=object),
            "cost": pd.Series([o.cost for o in outcomes], dtype="float64"),
            "error": pd.Series([o.error for o in outcomes], dtype=object),
            "paid": pd.Series([o.paid for o in outcomes], dtype=bool),
            "escalated": pd.Series([o.escalated for o in outcomes], dtype=bool),
        }
    )
