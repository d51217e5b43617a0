"""Independent checks of a SMART output against the stand-in server (used by several tests)."""

from __future__ import annotations

from smart_spark.llm.labels import agreement_key, normalise_label
from smart_spark.spark.apply import render_prompt


def prompts_of(texts, template, labels):
    return [None if t is None or not str(t).strip() else render_prompt(template, t, labels) for t in texts]


def server_spend(server, catalogue, prompts) -> float:
    """USD the server's answers cost (answered count x usage priced by the catalogue)."""
    total = 0.0
    for spec in catalogue:
        for prompt in set(p for p in prompts if p is not None):
            count = server.answered_count(spec.name, prompt)
            if count:
                answer = server.backend.answer(spec.name, prompt)
                total += count * spec.cost(answer.prompt_tokens, answer.completion_tokens)
    return total


def agreement_of(backend, model, prompt, labels, reference) -> bool:
    if model is None or prompt is None:
        return False
    mine = backend.answer(model, prompt).text
    ref = backend.answer(reference, prompt).text
    return agreement_key(normalise_label(mine, labels), mine) == agreement_key(normalise_label(ref, labels), ref)


def realised_agreement(backend, models, prompts, labels, reference) -> float:
    """Share of rows with text whose answering model agrees with the reference (raw answers, normalised)."""
    pairs = [(m, p) for m, p in zip(models, prompts) if p is not None]
    return sum(agreement_of(backend, m, p, labels, reference) for m, p in pairs) / len(pairs)


def models_called(server, model_names, prompt) -> list[str]:
    return [m for m in model_names if server.answered_count(m, prompt) > 0]
