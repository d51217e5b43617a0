"""Where the stand-in server's answers come from: recorded (replay) or simulated.

A backend maps (model, prompt) to an :class:`Answer` with token usage. It
never invents an answer it does not have: an unknown model or prompt raises a
:class:`BackendError` that the server turns into an OpenAI-style error.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Mapping, Protocol, Sequence

import yaml
from scipy import stats

from smart_spark.catalogue import ModelCatalogue, ModelSpec, load_catalogue

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Answer:
    """One completion the server returns, with the usage it reports."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    #: (token, probability) alternatives for the answer's token, best first; empty when
    #: the model offers no log-probabilities (see :func:`logprobs_content`).
    top_tokens: tuple[tuple[str, float], ...] = ()


def logprobs_content(answer: Answer, top_n: int) -> list[dict[str, Any]] | None:
    """OpenAI's ``choices[0].logprobs.content`` for an answer: one token, its top alternatives.

    None when the answer carries no probabilities. Probabilities of 0 are sent
    as a very small one (log(0) is not JSON).
    """
    if not answer.top_tokens:
        return None

    def entry(token: str, probability: float) -> dict[str, Any]:
        return {"token": token, "logprob": math.log(max(probability, 1e-300)), "bytes": list(token.encode("utf-8"))}

    chosen = dict(answer.top_tokens).get(answer.text, answer.top_tokens[0][1])
    first = entry(answer.text, chosen)
    first["top_logprobs"] = [entry(t, p) for t, p in answer.top_tokens[: max(top_n, 0)]]
    return [first]


def _spread(answer: str, confidence: float, labels: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """The answer at ``confidence``, the rest of the mass shared by the other labels."""
    others = [label for label in labels if label != answer]
    rest = (1.0 - confidence) / len(others) if others else 0.0
    return ((answer, confidence), *((label, rest) for label in others))


class BackendError(Exception):
    """A request the backend cannot answer; carries the OpenAI error fields."""

    status = 400
    error_type = "invalid_request_error"
    code: str | None = None


class UnknownModelError(BackendError):
    status = 404
    code = "model_not_found"


class UnknownPromptError(BackendError):
    code = "prompt_not_recorded"


class Backend(Protocol):
    """What :class:`~smart_spark.testing.server.StandInServer` needs from a backend."""

    def model_names(self) -> list[str]: ...

    def answer(self, model: str, prompt: str) -> Answer: ...

    def latency_s(self, model: str) -> float | None:
        """Per-model latency, or None to use the server's default."""
        ...


def estimate_tokens(text: str) -> int:
    """About four characters per token, at least one (the usual English rule of thumb)."""
    return max(1, round(len(text) / 4))


# --------------------------------------------------------------------- replay


@dataclass(frozen=True)
class _Recorded:
    answer: str
    cost: float | None
    confidence: float | None = None  # from an optional ``<model>_confidence`` column


class ReplayBackend:
    """Serves recorded answers, e.g. ``overruling_12llm.csv`` (columns ``query``,
    ``<model>_answer``, ``<model>_cost``).

    The row is the one whose ``query`` is the user message, or is contained in
    it (a prompt template may wrap the query). With a catalogue, the reported
    usage is solved from the recorded cost and the model's prices so the
    client's cost arithmetic reproduces the recording; without one, usage is
    estimated from text length.
    """

    def __init__(
        self,
        queries: Sequence[str],
        answers: Mapping[str, Sequence[_Recorded]],
        catalogue: ModelCatalogue | None = None,
    ) -> None:
        self._queries = list(queries)
        self._answers = {model: list(rows) for model, rows in answers.items()}
        for model, rows in self._answers.items():
            if len(rows) != len(self._queries):
                raise ValueError(f"model {model!r}: {len(rows)} answers for {len(self._queries)} queries")
        self._prices = {spec.name: spec for spec in catalogue} if catalogue is not None else {}
        self._row_of = {q: i for i, q in enumerate(self._queries)}
        self._anchors = _anchor_index(self._queries)
        self._labels_of = {m: sorted({r.answer for r in rows}) for m, rows in self._answers.items()}

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        catalogue: "ModelCatalogue | str | os.PathLike[str] | None" = None,
    ) -> "ReplayBackend":
        """Read a recording; ``catalogue`` (object or YAML path) gives the prices for usage."""
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "query" not in columns:
                raise ValueError(f"{path}: no 'query' column (columns: {columns})")
            models = [c[: -len("_answer")] for c in columns if c.endswith("_answer") and c != "ref_answer"]
            if not models:
                raise ValueError(f"{path}: no '<model>_answer' columns")
            queries: list[str] = []
            answers: dict[str, list[_Recorded]] = {m: [] for m in models}
            seen: dict[str, int] = {}
            for row in reader:
                query = row["query"]
                if query in seen:
                    # Identical prompts must replay identically; keep the first row.
                    first = seen[query]
                    for m in models:
                        if answers[m][first].answer != row[f"{m}_answer"]:
                            raise ValueError(f"{path}: query recorded twice with different {m} answers")
                    continue
                seen[query] = len(queries)
                queries.append(query)
                for m in models:
                    cost = row.get(f"{m}_cost")
                    confidence = row.get(f"{m}_confidence")
                    answers[m].append(
                        _Recorded(row[f"{m}_answer"], float(cost) if cost else None, float(confidence) if confidence else None)
                    )
        prices = load_catalogue(catalogue) if catalogue is not None else None
        return cls(queries, answers, prices)

    def model_names(self) -> list[str]:
        return list(self._answers)

    def latency_s(self, model: str) -> float | None:
        return None

    def answer(self, model: str, prompt: str) -> Answer:
        rows = self._answers.get(model)
        if rows is None:
            raise UnknownModelError(f"The model `{model}` does not exist in this replay (known: {self.model_names()})")
        index = self.find_row(prompt)
        if index is None:
            raise UnknownPromptError("The prompt is not in the replay file; the stand-in server does not invent answers")
        recorded = rows[index]
        prompt_tokens, completion_tokens = self._usage(model, self._queries[index], recorded)
        top = () if recorded.confidence is None else _spread(recorded.answer, recorded.confidence, self._labels_of[model])
        return Answer(recorded.answer, prompt_tokens, completion_tokens, top)

    def find_row(self, prompt: str) -> int | None:
        """Index of the recorded query equal to, or contained in, ``prompt``."""
        for candidate in (prompt, prompt.strip()):
            if candidate in self._row_of:
                return self._row_of[candidate]
        # A template wraps the query: look up each of the prompt's lines among the
        # queries' rarest lines, then confirm by containment (longest query wins).
        hits = {i for line in prompt.splitlines() for i in self._anchors.get(line.strip(), ())}
        matches = [i for i in hits if self._queries[i] in prompt]
        if not matches:
            matches = [i for i, q in enumerate(self._queries) if q.strip() and q.strip() in prompt]
        return max(matches, key=lambda i: len(self._queries[i]), default=None)

    def _usage(self, model: str, query: str, recorded: _Recorded) -> tuple[int, int]:
        completion = estimate_tokens(recorded.answer)
        spec = self._prices.get(model)
        if spec is None or recorded.cost is None:
            return estimate_tokens(query), completion
        return solve_usage(spec, recorded.cost, completion, estimate_tokens(query))


def solve_usage(spec: ModelSpec, cost: float, completion_guess: int, prompt_guess: int) -> tuple[int, int]:
    """Integer (prompt, completion) tokens whose price under ``spec`` is ``cost``.

    Token-priced input: keep the guessed completion length and solve for the
    prompt. Free input (AI21's per-request pricing): solve for the completion
    and report the guessed prompt length, which costs nothing.
    """
    variable = cost - spec.request_fee
    if spec.input_price_per_token > 0:
        completion = completion_guess
        while completion > 0 and completion * spec.output_price_per_token > variable:
            completion -= 1
        prompt = round((variable - completion * spec.output_price_per_token) / spec.input_price_per_token)
        return max(prompt, 0), completion
    if spec.output_price_per_token > 0:
        return prompt_guess, max(round(variable / spec.output_price_per_token), 0)
    return prompt_guess, completion_guess


def _anchor_index(queries: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Each query's rarest inner line -> query indices (few-shot prefixes are shared)."""
    frequency: dict[str, int] = {}
    split = [[line.strip() for line in q.splitlines()] for q in queries]
    for lines in split:
        for line in set(lines):
            frequency[line] = frequency.get(line, 0) + 1
    index: dict[str, list[int]] = {}
    for i, lines in enumerate(split):
        # The first and last lines may share a physical line with template text.
        inner = [line for line in lines[1:-1] if line]
        if inner:
            index.setdefault(min(inner, key=lambda line: frequency[line]), []).append(i)
    return {line: tuple(rows) for line, rows in index.items()}


# ------------------------------------------------------------------ simulated


@dataclass(frozen=True)
class SimulatedModel:
    """A simulated LLM: how often it agrees with the reference, and how it behaves.

    ``odd_answer_rate`` makes some answers arrive decorated (``Yes.``,
    ``No (it is disapproving)``) so label normalisation is exercised.
    ``confidence`` gives the model log-probabilities: ``calibrated`` (its
    confidence c is drawn so that P[agrees | c] = c: c ~ Beta around the
    agreement rate, conditioned on whether this item agrees), ``overconfident``
    (the calibrated c pushed towards 1: 1 - (1 - c) / 4) or ``unrelated`` (c
    drawn independently of whether the item agrees).
    """

    agreement: float
    latency_s: float | None = None
    completion_tokens: int = 1
    odd_answer_rate: float = 0.0
    confidence: str | None = None

    def __post_init__(self) -> None:
        for name in ("agreement", "odd_answer_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.latency_s is not None and self.latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {self.latency_s!r}")
        if self.completion_tokens < 1:
            raise ValueError(f"completion_tokens must be >= 1, got {self.completion_tokens!r}")
        if self.confidence not in CONFIDENCE_KINDS:
            raise ValueError(f"confidence must be one of {CONFIDENCE_KINDS}, got {self.confidence!r}")


CONFIDENCE_KINDS = (None, "calibrated", "overconfident", "unrelated")
#: Prior concentration of simulated confidences (Beta(a, b) with a + b = this, mean = agreement).
_CONFIDENCE_CONCENTRATION = 4.0


_ODD_FORMS = ("{label}.", "{label} (it is disapproving)", '"{label}"', " {lower}\n")


@dataclass
class SimulatedBackend:
    """Models that agree with a reference model at configured rates, with correlated errors.

    Everything is a deterministic function of (seed, model, prompt) through
    SHA-256, so a repeated or retried request gets the same answer. The
    reference's answer is a hash of the prompt onto the labels. A model agrees
    iff ``Phi(sqrt(rho) Z_item + sqrt(1 - rho) Z_model_item) < agreement``:
    the marginal agreement is exactly the configured one, and ``correlation``
    (rho) makes hard items hard for every model at once.
    """

    labels: Sequence[str]
    models: Mapping[str, SimulatedModel]
    reference: str
    correlation: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.models = dict(self.models)
        if len(self.labels) < 2:
            raise ValueError("a simulated task needs at least two labels")
        if self.reference not in self.models:
            raise ValueError(f"reference model {self.reference!r} is not among the simulated models")
        if self.models[self.reference].agreement != 1.0:
            raise ValueError(f"the reference model {self.reference!r} must have agreement 1.0")
        if not 0.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [0, 1], got {self.correlation!r}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "SimulatedBackend":
        """Read the ``simulation:`` section of a YAML file (see conf/simulated_models.yaml)."""
        document = yaml.safe_load(Path(path).read_text())
        section = document.get("simulation") if isinstance(document, Mapping) else None
        if not isinstance(section, Mapping):
            raise ValueError(f"{path}: expected a top-level 'simulation:' mapping")
        return cls.from_dict(section)

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> "SimulatedBackend":
        models = section.get("models")
        if not isinstance(models, Mapping) or not models:
            raise ValueError("simulation: expected 'models:' mapping model name -> settings")
        return cls(
            labels=section["labels"],
            models={name: SimulatedModel(**(settings or {})) for name, settings in models.items()},
            reference=section["reference"],
            correlation=float(section.get("correlation", 0.0)),
            seed=int(section.get("seed", 0)),
        )

    def model_names(self) -> list[str]:
        return list(self.models)

    def latency_s(self, model: str) -> float | None:
        spec = self.models.get(model)
        return spec.latency_s if spec is not None else None

    def reference_label(self, prompt: str) -> str:
        return self.labels[self._hash_int("reference", prompt) % len(self.labels)]

    def label_for(self, model: str, prompt: str) -> str:
        """The label ``model`` gives (before any odd decoration)."""
        reference = self.reference_label(prompt)
        if self._agrees(model, prompt):
            return reference
        others = [label for label in self.labels if label != reference]
        return others[self._hash_int("wrong", model, prompt) % len(others)]

    def answer(self, model: str, prompt: str) -> Answer:
        spec = self.models.get(model)
        if spec is None:
            raise UnknownModelError(f"The model `{model}` does not exist (simulated: {self.model_names()})")
        label = self.label_for(model, prompt)
        text = label
        if self._uniform("odd", model, prompt) < spec.odd_answer_rate:
            form = _ODD_FORMS[self._hash_int("odd-form", model, prompt) % len(_ODD_FORMS)]
            text = form.format(label=label, lower=label.lower())
        extra = 0 if text == label else estimate_tokens(text) - 1
        top = () if spec.confidence is None else _spread(text, self.confidence_for(model, prompt), self.labels)
        return Answer(text, estimate_tokens(prompt), spec.completion_tokens + extra, top)

    def confidence_for(self, model: str, prompt: str) -> float:
        """The simulated model's confidence in its own answer (see :class:`SimulatedModel`)."""
        spec = self.models[model]
        if spec.agreement >= 1.0:
            return 1.0
        a = spec.agreement * _CONFIDENCE_CONCENTRATION
        b = (1.0 - spec.agreement) * _CONFIDENCE_CONCENTRATION
        if spec.confidence == "unrelated":
            draw_a, draw_b = a, b
        elif self._agrees(model, prompt):
            draw_a, draw_b = a + 1.0, b
        else:
            draw_a, draw_b = a, b + 1.0
        calibrated = float(stats.beta.ppf(self._uniform("confidence", model, prompt), draw_a, draw_b))
        return 1.0 - (1.0 - calibrated) / 4.0 if spec.confidence == "overconfident" else calibrated

    def _agrees(self, model: str, prompt: str) -> bool:
        agreement = self.models[model].agreement
        if agreement >= 1.0:
            return True
        rho = self.correlation
        z = math.sqrt(rho) * self._gaussian("item", prompt) + math.sqrt(1.0 - rho) * self._gaussian(
            "model-item", model, prompt
        )
        return _STANDARD_NORMAL.cdf(z) < agreement

    def _hash_int(self, *parts: str) -> int:
        digest = hashlib.sha256("\x1f".join((str(self.seed), *parts)).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big")

    def _uniform(self, *parts: str) -> float:
        """In (0, 1): never exactly 0 or 1, so the inverse CDF is finite."""
        return (self._hash_int(*parts) + 0.5) / 2.0**64

    def _gaussian(self, *parts: str) -> float:
        return _STANDARD_NORMAL.inv_cdf(self._uniform(*parts))
