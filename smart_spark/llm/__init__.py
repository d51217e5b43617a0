"""Calling LLMs: the OpenAI-compatible batch client and label normalisation."""

from smart_spark.llm.client import CallResult, LLMClient
from smart_spark.llm.labels import agreement_key, normalise_label

__all__ = ["CallResult", "LLMClient", "agreement_key", "normalise_label"]
