"""The stand-in server's OpenAI Batch API: ``/v1/files`` and ``/v1/batches``.

Scheduled ETL sends its calls through the Batch API at a discount; the batch
client (:mod:`smart_spark.llm.batch`) is tested against this implementation
of the same endpoints:

* ``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``;
* ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``,
  ``metadata``), ``GET /v1/batches/{id}``, ``GET /v1/batches`` (list),
  ``POST /v1/batches/{id}/cancel``.

A batch is ``validating``, then ``in_progress``, then after
``completion_delay_s`` it is finalised on the next poll: every line is
answered by the server's backend (counted like an on-line answer, so tests
can prove nothing is answered twice) into the output file, and failed lines
go to the error file, both in OpenAI's JSONL line format. Faults on request:
``fail_every=n`` fails every n-th line of a batch (HTTP 500 inside the
batch), ``outcome="failed"`` rejects a batch at validation (nothing
answered), ``outcome="expired"`` answers only the first half of the lines and
reports the rest as ``batch_expired``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Callable

from smart_spark.testing.backends import Answer, Backend, BackendError
from smart_spark.testing.counters import RequestCounters

FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"
OUTCOMES = ("completed", "failed", "expired")
_CHAT_ENDPOINT = "/v1/chat/completions"

Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class BatchConfig:
    """How the stand-in's batches behave (see the module docstring)."""

    completion_delay_s: float = 0.5
    fail_every: int = 0
    outcome: str = "completed"

    def __post_init__(self) -> None:
        if self.completion_delay_s < 0:
            raise ValueError(f"completion_delay_s must be >= 0, got {self.completion_delay_s!r}")
        if self.fail_every < 0:
            raise ValueError(f"fail_every must be >= 0, got {self.fail_every!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created: float
    status: str = "validating"
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    stamps: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "expires_at": int(self.created) + 24 * 3600,
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }
        body.update(self.stamps)
        return body


class BatchAPI:
    """Files and batches held in memory (thread-safe); answers come from the server's backend."""

    def __init__(
        self,
        backend: Backend,
        counters: RequestCounters,
        completion_body: Callable[[str, Answer | None, int | None], bytes],
        config: BatchConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.config = config or BatchConfig()
        self._counters = counters
        self._completion_body = completion_body
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)

    # -------------------------------------------------------------- inspection
    def created_batches(self) -> list[str]:
        """Ids of every batch created so far, in order (tests: nothing was resubmitted)."""
        with self._lock:
            return list(self._batches)

    # ----------------------------------------------------------------- routing
    def handles(self, path: str) -> bool:
        path = path.split("?", 1)[0]
        return path.startswith(FILES_PATH) or path.startswith(BATCHES_PATH)

    def get(self, path: str) -> Reply:
        parts = _parts(path)
        with self._lock:
            if parts[:1] == ["files"] and len(parts) in (2, 3):
                file = self._files.get(parts[1])
                if file is None:
                    return _error(404, f"No such File object: {parts[1]}", "file_not_found")
                if len(parts) == 3 and parts[2] == "content":
                    return 200, {}, file.content
                if len(parts) == 2:
                    return _json(file.as_json())
            if parts == ["batches"]:
                for batch in self._batches.values():
                    self._advance(batch)
                data = [b.as_json() for b in reversed(list(self._batches.values()))]
                first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
                return _json({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False})
            if parts[:1] == ["batches"] and len(parts) == 2:
                batch = self._batches.get(parts[1])
                if batch is None:
                    return _error(404, f"No such Batch object: {parts[1]}", "batch_not_found")
                self._advance(batch)
                return _json(batch.as_json())
        return _error(404, f"Unknown path {path}", "unknown_url")

    def post(self, path: str, content_type: str, raw: bytes) -> Reply:
        parts = _parts(path)
        if parts == ["files"]:
            return self._upload(content_type, raw)
        if parts == ["batches"]:
            try:
                request = json.loads(raw)
            except ValueError:
                return _error(400, "The request body is not valid JSON", "invalid_json")
            return self._create(request if isinstance(request, dict) else {})
        if parts[:1] == ["batches"] and len(parts) == 3 and parts[2] == "cancel":
            with self._lock:
                batch = self._batches.get(parts[1])
                if batch is None:
                    return _error(404, f"No such Batch object: {parts[1]}", "batch_not_found")
                self._advance(batch)
                if batch.status in ("validating", "in_progress"):
                    batch.status = "cancelled"
                    batch.stamps["cancelled_at"] = int(self._clock())
                return _json(batch.as_json())
        return _error(404, f"Unknown path {path}", "unknown_url")

    # ---------------------------------------------------------------- handlers
    def _upload(self, content_type: str, raw: bytes) -> Reply:
        if not content_type.startswith("multipart/form-data"):
            return _error(400, "Files are uploaded as multipart/form-data", "invalid_request")
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or "purpose" not in fields:
            return _error(400, "Missing 'file' or 'purpose' in the upload", "missing_field")
        purpose = fields["purpose"][1].decode()
        if purpose != "batch":
            return _error(400, f"The stand-in only accepts purpose 'batch', got {purpose!r}", "invalid_purpose")
        filename, content = fields["file"]
        with self._lock:
            file = _File(f"file-standin-{next(self._ids)}", filename or "upload.jsonl", purpose, content, int(self._clock()))
            self._files[file.id] = file
        return _json(file.as_json())

    def _create(self, request: dict[str, Any]) -> Reply:
        endpoint = request.get("endpoint")
        if endpoint != _CHAT_ENDPOINT:
            return _error(400, f"The stand-in batches only {_CHAT_ENDPOINT}, got {endpoint!r}", "invalid_endpoint")
        if request.get("completion_window") != "24h":
            return _error(400, "completion_window must be '24h'", "invalid_completion_window")
        with self._lock:
            if request.get("input_file_id") not in self._files:
                return _error(404, f"No such File object: {request.get('input_file_id')}", "file_not_found")
            batch = _Batch(
                id=f"batch_standin_{next(self._ids)}",
                input_file_id=request["input_file_id"],
                endpoint=endpoint,
                completion_window="24h",
                metadata=request.get("metadata"),
                created=self._clock(),
            )
            self._batches[batch.id] = batch
            return _json(batch.as_json())

    # ----------------------------------------------------------- state machine
    def _advance(self, batch: _Batch) -> None:
        """Move ``batch`` along by the time elapsed since it was created (lock held)."""
        if batch.status not in ("validating", "in_progress"):
            return
        elapsed = self._clock() - batch.created
        delay = self.config.completion_delay_s
        if batch.status == "validating" and elapsed >= delay * 0.2:
            lines, errors = self._validate(batch)
            if errors or self.config.outcome == "failed":
                batch.errors = errors or [
                    {"code": "batch_rejected", "message": "The batch was rejected (stand-in outcome=failed)", "line": None}
                ]
                batch.status = "failed"
                batch.stamps["failed_at"] = int(self._clock())
                return
            batch.status = "in_progress"
            batch.counts["total"] = len(lines)
            batch.stamps["in_progress_at"] = int(self._clock())
        if batch.status == "in_progress" and elapsed >= delay:
            self._finalise(batch, self._validate(batch)[0])

    def _validate(self, batch: _Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lines: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        content = self._files[batch.input_file_id].content.decode("utf-8", errors="replace")
        for number, text in enumerate(content.splitlines(), start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                errors.append({"code": "invalid_json_line", "message": "This line is not valid JSON", "line": number})
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or custom_id in seen:
                errors.append({"code": "duplicate_custom_id" if custom_id in seen else "missing_custom_id",
                               "message": "Each line needs a unique custom_id", "line": number})
                continue
            if line.get("url") != batch.endpoint or not isinstance(line.get("body"), dict):
                errors.append({"code": "invalid_url", "message": f"The url must be {batch.endpoint}", "line": number})
                continue
            seen.add(custom_id)
            lines.append(line)
        if not lines and not errors:
            errors.append({"code": "empty_file", "message": "The input file has no requests", "line": None})
        return lines, errors

    def _finalise(self, batch: _Batch, lines: list[dict[str, Any]]) -> None:
        from smart_spark.testing.server import _top_logprobs_wanted, _user_message  # the chat handler's own parsing

        expired = self.config.outcome == "expired"
        answered_until = len(lines) // 2 if expired else len(lines)
        output: list[str] = []
        failed: list[str] = []
        for index, line in enumerate(lines):
            line_id = f"batch_req_{batch.id}_{index}"
            if index >= answered_until:
                failed.append(_line(line_id, line["custom_id"], None,
                                    {"code": "batch_expired", "message": "This request could not be executed before "
                                     "the completion window expired."}))
                continue
            body = line["body"]
            model = str(body.get("model"))
            prompt = _user_message(body.get("messages")) or ""
            self._counters.request(model, prompt)
            if self.config.fail_every and index % self.config.fail_every == self.config.fail_every - 1:
                self._counters.fault(model)
                response = _response(line_id, 500, {"error": {"message": "The server had an error (stand-in "
                                                              "fail_every)", "type": "server_error", "code": None}})
                failed.append(_line(line_id, line["custom_id"], response, None))
                continue
            try:
                answer = self.backend.answer(model, prompt)
            except BackendError as exc:
                response = _response(line_id, exc.status, {"error": {"message": str(exc), "type": exc.error_type,
                                                                     "code": exc.code}})
                failed.append(_line(line_id, line["custom_id"], response, None))
                continue
            self._counters.answered(model, prompt)
            completion = json.loads(self._completion_body(model, answer, _top_logprobs_wanted(body)))
            output.append(_line(line_id, line["custom_id"], _response(line_id, 200, completion), None))
        now = int(self._clock())
        if output:
            batch.output_file_id = self._store_output(batch, "output", output)
        if failed:
            batch.error_file_id = self._store_output(batch, "error", failed)
        batch.counts.update(total=len(lines), completed=len(output), failed=len(failed))
        batch.status = "expired" if expired else "completed"
        batch.stamps["expired_at" if expired else "completed_at"] = now

    def _store_output(self, batch: _Batch, kind: str, lines: list[str]) -> str:
        file = _File(f"file-standin-{next(self._ids)}", f"{batch.id}_{kind}.jsonl", f"batch_{kind}",
                     ("\n".join(lines) + "\n").encode("utf-8"), int(self._clock()))
        self._files[file.id] = file
        return file.id


def _parts(path: str) -> list[str]:
    return [p for p in path.split("?", 1)[0][len("/v1/"):].split("/") if p]


def _response(request_id: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": status, "request_id": request_id, "body": body}


def _line(line_id: str, custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    return json.dumps({"id": line_id, "custom_id": custom_id, "response": response, "error": error})


def _json(body: dict[str, Any]) -> Reply:
    return 200, {}, json.dumps(body).encode("utf-8")


def _error(status: int, message: str, code: str) -> Reply:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return status, {}, json.dumps(body).encode("utf-8")
