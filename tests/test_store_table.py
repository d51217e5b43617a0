"""The in-memory answer table: many small refreshes, duplicates across blocks, shared key prefixes, odd payloads."""

from __future__ import annotations

import numpy as np

from smart_spark.store import AnswerStore, StoredAnswer, answer_key
from smart_spark.store.records import encode_line, encode_payload
from smart_spark.store.table import AnswerTable


def _payload(key: str, label: str, paid_at: float, writer: str = "w") -> bytes:
    return encode_payload(StoredAnswer(key, "m", label, label, 1, 1, 0.5, paid_at=paid_at, writer=writer))


def _add(table: AnswerTable, pairs: list[tuple[bytes, bytes]]) -> int:
    return table.add(np.frombuffer(b"".join(k for k, _ in pairs), dtype="V32"), b"\n".join(p for _, p in pairs))


def test_many_small_refreshes_stay_few_blocks_and_keep_the_earliest_answer(tmp_path):
    path = str(tmp_path)
    reader = AnswerStore(path)
    keys = [answer_key("m", f"p{i}") for i in range(400)]
    for round_ in range(40):
        with AnswerStore(path).writer(f"r{round_}") as writer:
            for i in range(round_ * 10, round_ * 10 + 10):
                writer.put(StoredAnswer(keys[i], "m", "Yes", "Yes", 1, 1, 0.1, paid_at=100.0 + i))
            # a later, different payment of an earlier key: never wins
            writer.put(StoredAnswer(keys[round_], "m", "No", "No", 1, 1, 0.1, paid_at=10_000.0))
        reader.refresh()
    assert len(reader.index._table.blocks) <= 12
    found = reader.lookup(keys)
    assert len(found) == 400 and {a.label for a in found.values()} == {"Yes"}
    assert reader.summary()["duplicate_payments"] == 40


def test_keys_sharing_a_64_bit_prefix_are_told_apart():
    table = AnswerTable()
    first = bytes(8) + bytes([1] * 24)
    second = bytes(8) + bytes([2] * 24)
    _add(table, [(first, _payload(first.hex(), "A", 1.0))])
    _add(table, [(second, _payload(second.hex(), "B", 1.0)), (bytes(range(32)), _payload(bytes(range(32)).hex(), "C", 1.0))])
    table.consolidate()
    answers = table.get_many([second, first, bytes(32)])
    assert [a.label if a else None for a in answers] == ["B", "A", None]


def test_checksummed_but_malformed_payloads_are_skipped_not_fatal(tmp_path):
    good = answer_key("m", "good")
    odd = answer_key("m", "odd")
    folder = tmp_path / "answers"
    folder.mkdir()
    (folder / "x.done").write_bytes(
        encode_line(good, _payload(good, "Yes", 1.0)) + encode_line(odd, b'{"m":"m","pt":"many"}') + encode_line(odd, b"[1,2]")
    )
    store = AnswerStore(str(tmp_path))
    assert set(store.lookup([good, odd])) == {good}
    assert store.summary()["corrupt_lines_skipped"] == 2
