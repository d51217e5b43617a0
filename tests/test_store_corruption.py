"""Half-written and corrupt store files are survived: skipped, counted, never trusted."""

from __future__ import annotations

from pathlib import Path

from smart_spark.store import AnswerStore, StoredAnswer, answer_key


def _fill(path: str, tag: str, n: int, label: str = "Yes") -> None:
    with AnswerStore(path).writer(tag) as writer:
        for i in range(n):
            writer.put(StoredAnswer(answer_key("m", f"{tag}{i}"), "m", label, label, 3, 1, 0.001))


def _only_file(folder: Path, suffix: str) -> Path:
    (file,) = [p for p in folder.iterdir() if p.name.endswith(suffix)]
    return file


def test_truncated_last_line_is_skipped_and_counted(tmp_path):
    path = str(tmp_path)
    _fill(path, "a", 20)
    sealed = _only_file(tmp_path / "answers", ".done")
    data = sealed.read_bytes()
    sealed.write_bytes(data[:-40])  # cut inside the last record
    store = AnswerStore(path)
    found = store.lookup([answer_key("m", f"a{i}") for i in range(20)])
    assert len(found) == 19 and answer_key("m", "a19") not in found
    assert store.summary()["corrupt_lines_skipped"] == 1


def test_torn_tail_of_an_open_log_waits_until_complete(tmp_path):
    path = str(tmp_path)
    _fill(path, "a", 3)
    sealed = _only_file(tmp_path / "answers", ".done")
    complete = sealed.read_bytes()
    open_log = sealed.with_name("x-writer.log")
    sealed.unlink()
    open_log.write_bytes(complete[:-30])  # a running writer's last line, half written
    store = AnswerStore(path)
    assert len(store.lookup([answer_key("m", f"a{i}") for i in range(3)])) == 2
    assert store.summary()["incomplete_tail_bytes"] > 0 and store.summary()["corrupt_lines_skipped"] == 0
    open_log.write_bytes(complete)  # the writer finished the line
    assert len(store.lookup([answer_key("m", f"a{i}") for i in range(3)])) == 3
    assert store.summary()["incomplete_tail_bytes"] == 0


def test_corrupt_lines_never_change_an_answer(tmp_path):
    path = str(tmp_path)
    _fill(path, "a", 10, label="Yes")
    sealed = _only_file(tmp_path / "answers", ".done")
    lines = sealed.read_bytes().split(b"\n")
    forged = lines[3].replace(b'"l":"Yes"', b'"l":"No!"')  # content changed, checksum not
    flipped = lines[5][:20] + bytes([lines[5][20] ^ 0x01]) + lines[5][21:]  # one bit of the key
    lines[3], lines[5] = forged, flipped
    sealed.write_bytes(b"\n".join(lines[:7] + [b"garbage without tabs", b"\x00\xff" * 50] + lines[7:]))
    (tmp_path / "answers" / "zz-binary.seg").write_bytes(bytes(range(256)) * 10)
    store = AnswerStore(path)
    found = store.lookup([answer_key("m", f"a{i}") for i in range(10)])
    assert set(found) == {answer_key("m", f"a{i}") for i in range(10) if i not in (3, 5)}
    assert {a.label for a in found.values()} == {"Yes"}
    assert store.summary()["corrupt_lines_skipped"] >= 4


def test_unrelated_files_are_ignored(tmp_path):
    path = str(tmp_path)
    _fill(path, "a", 2)
    (tmp_path / "answers" / "README.txt").write_text("notes")
    (tmp_path / "answers" / ".half-written.seg.1234.tmp").write_text("x")
    (tmp_path / "_SUCCESS").write_text("")
    store = AnswerStore(path)
    assert len(store.lookup([answer_key("m", "a0"), answer_key("m", "a1")])) == 2
    assert store.summary()["files"] == 1 and store.summary()["corrupt_lines_skipped"] == 0
