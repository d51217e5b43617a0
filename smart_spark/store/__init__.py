"""Durable answer store: every paid LLM answer is recorded once and reused by any later evaluation.

No Spark, no JVM: the Spark operator opens an :class:`AnswerStore` on the
driver and on each executor. See ``answer_store.py`` for the layout and
``python -m smart_spark.store PATH --summary`` for the command line.
"""

from smart_spark.store.answer_store import AnswerStore, default_store_path
from smart_spark.store.keys import answer_key
from smart_spark.store.records import StoredAnswer
from smart_spark.store.writer import AnswerWriter

__all__ = ["AnswerStore", "AnswerWriter", "StoredAnswer", "answer_key", "default_store_path"]
