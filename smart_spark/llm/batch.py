"""Sending one model's prompts through the OpenAI Batch API (discounted, answers within 24 h).

A nightly ETL job does not need its answers within seconds, and providers
sell the same Chat Completions calls for about half through the Batch API.
:class:`BatchClient` uploads the prompts as a JSONL file of requests
(``client.files.create``), creates batches (``client.batches.create``), polls
them (``client.batches.retrieve``) and downloads their output and error files
(``client.files.content``), all through the official ``openai`` SDK, and
returns the same :class:`~smart_spark.llm.client.CallResult` as on-line calls
(cost at the catalogue's ``batch_discount``).

What it guarantees:

* **No request dropped.** A line that failed inside a batch, a batch the
  provider rejected, expired or cancelled, or a line with no result at all is
  retried on-line (when an on-line client is given) or comes back as a result
  with an error naming the batch and the cause.
* **Nothing paid twice.** Only lines without a charged answer are retried
  on-line. Each submitted batch is reported to ``recorder(model, batch_id,
  keys, meta)`` (``AnswerStore.record_batch``) as soon as it exists; a
  restarted job passes the recorded batches back (``recorded=``) and waits for
  them instead of resubmitting. A batch created just before a crash, before it
  could be recorded, is found again by the fingerprint of its keys that is
  sent in its metadata.

The request key (``custom_id``) must identify the paid answer, e.g. the answer
store's ``answer_key``: equal keys are one request. :meth:`BatchClient.complete_batch`
has the contract of :meth:`LLMClient.complete_batch` (one result per prompt, in
order), so the apply phase can use either client for a model's rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import openai

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.llm.client import PLACEHOLDER_API_KEY, CallResult, LLMClient
from smart_spark.llm.confidence import label_confidence
from smart_spark.llm.labels import normalise_label
from smart_spark.store.keys import answer_key

log = logging.getLogger(__name__)

CHAT_ENDPOINT = "/v1/chat/completions"
#: OpenAI's limit of requests per batch.
MAX_LINES_PER_BATCH = 50_000
#: Metadata key of the fingerprint that finds an unrecorded batch again.
FINGERPRINT_KEY = "smart_spark_batch"
_FAILED_STATUSES = frozenset({"failed", "cancelled"})
_TERMINAL_STATUSES = frozenset({"completed", "expired"}) | _FAILED_STATUSES

#: ``(model, batch_id, keys, meta)``, e.g. :meth:`smart_spark.store.AnswerStore.record_batch`.
BatchRecorder = Callable[[str, str, Sequence[str], Mapping[str, Any]], None]
#: ``(model, prompt) -> custom_id``; default: the answer store's ``answer_key`` with the client's settings.
RequestKey = Callable[[str, str], str]


@dataclass(frozen=True)
class BatchRequest:
    """One prompt to answer; ``key`` is its ``custom_id`` (identifies the paid answer)."""

    key: str
    prompt: str


@dataclass
class _Submitted:
    batch_id: str
    keys: list[str]
    status: str = "validating"
    batch: Any = None


def chat_body(spec: ModelSpec, prompt: str, *, system_prompt: str | None, max_tokens: int) -> dict[str, Any]:
    """The Chat Completions body an on-line call sends (temperature 0, log-probabilities when the
    catalogue asks for them), for one batch line: a batch answer must be the on-line answer."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": spec.name, "messages": messages, "temperature": 0, "max_tokens": max_tokens}
    if spec.top_logprobs:
        body.update(logprobs=True, top_logprobs=spec.top_logprobs)
    return body


def fingerprint(model: str, keys: Iterable[str]) -> str:
    """Stable id of one batch's contents (same model and keys in any process)."""
    digest = hashlib.sha256(model.encode())
    for key in sorted(keys):
        digest.update(b"\x1f" + key.encode())
    return digest.hexdigest()[:40]


class BatchClient:
    """Answers prompts through the Batch API; see the module docstring.

    ``online`` retries failed lines on-line (its own retries, spend cap and
    pacing apply); without it they come back as errors. ``poll_interval_s``
    and ``max_wait_s`` bound the wait: a batch still running after
    ``max_wait_s`` leaves its rows with an error saying a rerun resumes the
    wait (the batch is recorded, nothing is resubmitted).
    """

    def __init__(
        self,
        catalogue: ModelCatalogue,
        labels: Sequence[str],
        *,
        max_tokens: int = 16,
        system_prompt: str | None = None,
        online: LLMClient | None = None,
        recorder: BatchRecorder | None = None,
        recorded: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
        key: RequestKey | None = None,
        poll_interval_s: float = 30.0,
        max_wait_s: float = 25 * 3600.0,
        max_lines: int = MAX_LINES_PER_BATCH,
        timeout: float = 120.0,
    ) -> None:
        if not labels:
            raise ValueError("labels must name at least one allowed label")
        if max_tokens < 1 or poll_interval_s <= 0 or max_wait_s <= 0 or timeout <= 0:
            raise ValueError("max_tokens >= 1 and poll_interval_s, max_wait_s, timeout > 0 are required")
        if not 1 <= max_lines <= MAX_LINES_PER_BATCH:
            raise ValueError(f"max_lines must be in [1, {MAX_LINES_PER_BATCH}], got {max_lines!r}")
        self.catalogue = catalogue
        self.labels = tuple(labels)
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.online = online
        self.recorder = recorder
        self.recorded = recorded
        self.key = key or (lambda model, prompt: answer_key(
            model, prompt, system_prompt=self.system_prompt, max_tokens=self.max_tokens))
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        self.max_lines = max_lines
        self.timeout = timeout
        self.spent = 0.0
        #: Keys whose batch was still running when the wait ended (their answers may still come: do not re-buy).
        self.pending: set[str] = set()
        #: Ids of the batches this client created (not the resumed ones).
        self.submitted: list[str] = []
        self._sdk: dict[tuple[str | None, str | None], openai.OpenAI] = {}
        #: Several models' batches may be waited for on threads of their own (the apply phase does).
        self._lock = threading.Lock()

    def close(self) -> None:
        for client in self._sdk.values():
            client.close()
        self._sdk.clear()

    def __enter__(self) -> "BatchClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- API
    def complete_batch(self, model: str, prompts: Sequence[str]) -> list[CallResult]:
        """One result per prompt, in order, as :meth:`LLMClient.complete_batch` (blank prompts are not sent);
        the batches recorded so far (``recorded()``) are waited for, not resubmitted."""
        keys = [self.key(model, p) if isinstance(p, str) and p.strip() else None for p in prompts]
        requests = [BatchRequest(k, p) for k, p in zip(keys, prompts) if k is not None]
        results = self.run(model, requests, recorded=self.recorded() if self.recorded else ())
        blank = CallResult(model, None, None, 0, 0, 0.0, "empty prompt; not called", 0)
        return [results[k] if k is not None else blank for k in keys]

    def submit(self, model: str, prompts: Sequence[str]) -> list[str]:
        """Send the prompts that no recorded batch holds yet as batches, without waiting; their ids.

        A task streams its partition this way: each chunk goes out as soon as it is
        read, and :meth:`complete_batch` on the same prompts later waits for these
        (recorded) batches instead of resubmitting. A submission the provider refuses
        is only logged here: :meth:`complete_batch` then submits those prompts again
        and handles the failure (on-line retry or an error), so nothing is dropped.
        """
        spec = self.catalogue.require(model, role="model")
        prompts_by_key: dict[str, str] = {}
        for prompt in prompts:
            if isinstance(prompt, str) and prompt.strip():
                prompts_by_key.setdefault(self.key(model, prompt), prompt)
        covered = {
            key for record in (self.recorded() if self.recorded else ()) if record.get("model") == model
            for key in record.get("keys", ())
        }
        todo = [key for key in prompts_by_key if key not in covered]
        created: list[str] = []
        for start in range(0, len(todo), self.max_lines):
            keys = todo[start : start + self.max_lines]
            try:
                created.append(self._submit(spec, keys, prompts_by_key).batch_id)
            except openai.OpenAIError as exc:
                log.warning("submitting %d requests of %s ahead failed (%s); they are sent again when "
                            "their answers are needed", len(keys), model, _describe(exc))
        return created

    def run(
        self, model: str, requests: Sequence[BatchRequest], *, recorded: Iterable[Mapping[str, Any]] = ()
    ) -> dict[str, CallResult]:
        """key -> result for every request (blocking until the batches end or ``max_wait_s``).

        ``recorded``: batches recorded by an earlier run (``AnswerStore.batches()``);
        their keys are collected from them, not resubmitted.
        """
        spec = self.catalogue.require(model, role="model")
        prompts: dict[str, str] = {}
        for request in requests:
            if prompts.setdefault(request.key, request.prompt) != request.prompt:
                raise ValueError(f"batch key {request.key!r} is given with two different prompts")
        results: dict[str, CallResult] = {}
        failed: dict[str, str] = {}
        waiting: list[_Submitted] = []
        covered: set[str] = set()
        for record in recorded:
            if record.get("model") != model:
                continue
            keys = [k for k in record.get("keys", ()) if k in prompts and k not in covered]
            if keys:
                covered.update(keys)
                waiting.append(_Submitted(str(record["batch_id"]), keys))
                log.info("batch %s of %s: resuming the wait for %d requests", record["batch_id"], model, len(keys))
        todo = [k for k in prompts if k not in covered]
        for start in range(0, len(todo), self.max_lines):
            keys = todo[start : start + self.max_lines]
            try:
                waiting.append(self._submit(spec, keys, prompts))
            except openai.OpenAIError as exc:
                reason = f"batch submission failed: {_describe(exc)}"
                failed.update((k, reason) for k in keys)
        self._wait(spec, waiting)
        for submitted in waiting:
            self._collect(spec, submitted, results, failed)
        if failed:
            self._settle_failures(spec, prompts, failed, results)
        return {key: self._redacted(result) for key, result in results.items()}

    # ----------------------------------------------------------- internals
    def _redacted(self, result: CallResult) -> CallResult:
        """``result`` with any catalogue key removed from its error: provider messages may echo one."""
        if result.error is None:
            return result
        error = self.catalogue.redact_keys(result.error)
        return result if error == result.error else dataclasses.replace(result, error=error)

    def _client(self, spec: ModelSpec) -> openai.OpenAI:
        with self._lock:
            return self._client_locked(spec)

    def _client_locked(self, spec: ModelSpec) -> openai.OpenAI:
        endpoint = (spec.base_url, spec.api_key_env)
        client = self._sdk.get(endpoint)
        if client is None:
            key = spec.required_api_key()
            # No SDK retries: a retried batches.create could pay for a batch twice;
            # _submit looks the batch up by its fingerprint instead.
            client = openai.OpenAI(
                api_key=key or PLACEHOLDER_API_KEY, base_url=spec.base_url, max_retries=0, timeout=self.timeout
            )
            self._sdk[endpoint] = client
        return client

    def _submit(self, spec: ModelSpec, keys: list[str], prompts: Mapping[str, str]) -> _Submitted:
        sdk = self._client(spec)
        tag = fingerprint(spec.name, keys)
        existing = self._find(sdk, tag)
        if existing is not None:
            log.info("batch %s of %s found by its fingerprint; not resubmitted", existing.id, spec.name)
        else:
            lines = (
                json.dumps(
                    {
                        "custom_id": key,
                        "method": "POST",
                        "url": CHAT_ENDPOINT,
                        "body": chat_body(
                            spec, prompts[key], system_prompt=self.system_prompt, max_tokens=self.max_tokens
                        ),
                    }
                )
                for key in keys
            )
            content = ("\n".join(lines) + "\n").encode("utf-8")
            upload = sdk.files.create(file=(f"smart_spark_{tag[:12]}.jsonl", content), purpose="batch")
            try:
                existing = sdk.batches.create(
                    input_file_id=upload.id,
                    endpoint=CHAT_ENDPOINT,
                    completion_window="24h",
                    metadata={FINGERPRINT_KEY: tag},
                )
            except (openai.APIConnectionError, openai.APITimeoutError):
                existing = self._find(sdk, tag)  # the batch may exist although its answer was lost
                if existing is None:
                    raise
            self.submitted.append(existing.id)
        if self.recorder is not None:
            self.recorder(
                spec.name, existing.id, list(keys),
                {"fingerprint": tag, "input_file_id": existing.input_file_id, "created_at": existing.created_at},
            )
        return _Submitted(existing.id, list(keys), existing.status, existing)

    def _find(self, sdk: openai.OpenAI, tag: str) -> Any:
        """A usable batch carrying fingerprint ``tag`` among the account's most recent ones."""
        for batch in sdk.batches.list(limit=100).data:
            if (batch.metadata or {}).get(FINGERPRINT_KEY) == tag and batch.status not in _FAILED_STATUSES:
                return batch
        return None

    def _wait(self, spec: ModelSpec, waiting: list[_Submitted]) -> None:
        """Poll until every batch ended or ``max_wait_s``; pauses grow from 1 s to ``poll_interval_s``
        (a short batch is not kept waiting for a long poll, a 24-hour one is not polled every second)."""
        sdk = self._client(spec)
        deadline = time.monotonic() + self.max_wait_s
        pause = min(1.0, self.poll_interval_s)
        while True:
            for submitted in waiting:
                if submitted.status not in _TERMINAL_STATUSES:
                    try:
                        submitted.batch = sdk.batches.retrieve(submitted.batch_id)
                        submitted.status = submitted.batch.status
                    except openai.NotFoundError:  # e.g. a recorded id from another account or endpoint
                        submitted.status, submitted.batch = "failed", None
                        log.warning("batch %s of %s is not known to the provider", submitted.batch_id, spec.name)
                    except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as exc:
                        log.warning("polling batch %s: %s (will poll again)", submitted.batch_id, _describe(exc))
            left = deadline - time.monotonic()
            if all(s.status in _TERMINAL_STATUSES for s in waiting) or left <= 0:
                return
            time.sleep(min(pause, left))
            pause = min(pause * 2, self.poll_interval_s)

    def _collect(
        self, spec: ModelSpec, submitted: _Submitted, results: dict[str, CallResult], failed: dict[str, str]
    ) -> None:
        batch_id, status = submitted.batch_id, submitted.status
        if status not in _TERMINAL_STATUSES:
            reason = (
                f"batch {batch_id} still {status} after waiting {self.max_wait_s:g} s; "
                "a rerun with the recorded batches resumes the wait"
            )
            for key in submitted.keys:
                results[key] = CallResult(spec.name, None, None, 0, 0, 0.0, reason, 0)
            self.pending.update(submitted.keys)
            return
        if status in _FAILED_STATUSES:
            reason = f"batch {batch_id} {status}: {_batch_errors(submitted.batch)}"
            failed.update((k, reason) for k in submitted.keys)
            return
        sdk = self._client(spec)
        lines: dict[str, dict[str, Any]] = {}
        for file_id in (submitted.batch.output_file_id, submitted.batch.error_file_id):
            if file_id:
                for text in sdk.files.content(file_id).text.splitlines():
                    if text.strip():
                        line = json.loads(text)
                        lines[str(line.get("custom_id"))] = line
        for key in submitted.keys:
            line = lines.get(key)
            if line is None:
                failed[key] = f"batch {batch_id} ({status}) has no result for this request"
                continue
            result, reason = self._read_line(spec, line)
            if result is not None:
                results[key] = result
                with self._lock:
                    self.spent += result.cost
            else:
                failed[key] = f"batch {batch_id}: {reason}"

    def _read_line(self, spec: ModelSpec, line: Mapping[str, Any]) -> tuple[CallResult | None, str]:
        """The result of a line answered with a 200, or why the line failed."""
        response = line.get("response") or {}
        error = line.get("error")
        body = response.get("body") or {}
        if error or response.get("status_code") != 200:
            detail = error or body.get("error") or {}
            code = detail.get("code") if isinstance(detail, Mapping) else None
            message = detail.get("message") if isinstance(detail, Mapping) else str(detail)
            return None, f"line failed (HTTP {response.get('status_code', '-')}, {code or 'error'}): {message}"
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        cost = spec.batch_cost(prompt_tokens, completion_tokens)
        choices = body.get("choices") or []
        content = (choices[0].get("message") or {}).get("content") if choices else None
        if content is None:
            reason = "answer has no message content"
            return CallResult(spec.name, None, None, prompt_tokens, completion_tokens, cost, reason, 1), reason
        label = normalise_label(content, self.labels)
        logprobs = choices[0].get("logprobs")
        confidence = label_confidence(logprobs.get("content") if isinstance(logprobs, dict) else None, label, self.labels)
        return CallResult(spec.name, label, content, prompt_tokens, completion_tokens, cost, None, 1, confidence), ""

    def _settle_failures(
        self, spec: ModelSpec, prompts: Mapping[str, str], failed: Mapping[str, str], results: dict[str, CallResult]
    ) -> None:
        """Failed lines go on-line once (never charged in the batch), or come back as errors."""
        keys = [k for k in failed if k not in results]
        if self.online is None:
            for key in keys:
                results[key] = CallResult(spec.name, None, None, 0, 0, 0.0, failed[key], 0)
            return
        log.info("%d requests of %s failed in their batch; retrying them on-line", len(keys), spec.name)
        answers = self.online.complete_batch(spec.name, [prompts[k] for k in keys])
        for key, answer in zip(keys, answers):
            if answer.error is not None:
                answer = CallResult(
                    answer.model, None, None, answer.prompt_tokens, answer.completion_tokens, answer.cost,
                    f"{failed[key]}; then on-line: {answer.error}", answer.attempts,
                )
            results[key] = answer


def _batch_errors(batch: Any) -> str:
    if batch is None:
        return "not known to the provider"
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    shown = [f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "") for e in errors[:3]]
    return "; ".join(shown) or "no reason given"


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
