"""Map raw LLM answers onto the task's allowed labels.

Real models rarely answer with the bare label: the OVERRULING recordings hold
``Yes.``, ``No (it is disapproving)`` and ``Cannot determine.``. SMART compares
answers across models, so the mapping must be conservative: an answer maps to
a label only when it *starts* with that label as whole words and names no
other label; anything else gives ``None`` (the caller keeps the raw text) and
is never guessed into a label.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

# Quotes and punctuation stripped from both ends; fancy quotes are folded by NFKC
# only partly, so they are listed explicitly.
_EDGE_CHARS = " \t\r\n\"'`.,;:!?()[]{}<>*_-–—‘’“”«»"
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
# "Answer: Yes" / "The answer is: No." -- the label follows a restated prompt cue.
_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?answer(?:\s+is)?\s*[:\-]?\s*")


def _canonical(text: str) -> str:
    """Case-folded, whitespace-collapsed text without surrounding quotes/punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WHITESPACE.sub(" ", text).strip(_EDGE_CHARS)


@lru_cache(maxsize=64)
def _label_index(labels: tuple[str, ...]) -> tuple[dict[str, str], tuple[tuple[tuple[str, ...], str], ...]]:
    """Exact-match map and word-sequence list for a label set (cached: called per answer)."""
    exact: dict[str, str] = {}
    words: list[tuple[tuple[str, ...], str]] = []
    for label in labels:
        key = _canonical(label)
        if not key:
            raise ValueError(f"label {label!r} is empty after normalisation")
        if key in exact and exact[key] != label:
            raise ValueError(f"labels {exact[key]!r} and {label!r} are the same after normalisation")
        exact[key] = label
        words.append((tuple(_WORD.findall(key)), label))
    # Longest first so "not spam" wins over "not" when both are labels.
    words.sort(key=lambda item: len(item[0]), reverse=True)
    return exact, tuple(words)


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == tuple(needle) for i in range(len(haystack) - n + 1))


def normalise_label(raw: str | None, labels: Sequence[str]) -> str | None:
    """The allowed label ``raw`` stands for, or ``None`` when it names none (or several).

    Matches ignoring case, surrounding whitespace, punctuation and quotes, then
    accepts a leading label followed by an explanation (``No (it is
    disapproving)``) provided no other label appears in the answer.
    """
    if raw is None:
        return None
    exact, by_words = _label_index(tuple(labels))
    text = _canonical(raw)
    if text in exact:
        return exact[text]
    text = _canonical(_ANSWER_PREFIX.sub("", text))
    if text in exact:
        return exact[text]
    answer_words = _WORD.findall(text)
    for label_words, label in by_words:
        if label_words and tuple(answer_words[: len(label_words)]) == label_words:
            rest = answer_words[len(label_words) :]
            if any(_contains(rest, w) for w, other in by_words if other != label and w):
                return None
            return label
    return None


def agreement_key(label: str | None, raw: str | None) -> str | None:
    """What two answers must share to "agree": the label, else the normalised raw text.

    Two models that both say ``Cannot determine.`` agree with each other even
    though neither gave a label; ``None`` only when there is no answer at all.
    """
    if label is not None:
        return label
    if raw is None:
        return None
    return _canonical(raw)
