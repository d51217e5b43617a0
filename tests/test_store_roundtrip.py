"""Answer store basics: keys, round trip, preflight, batches, pickling, the command line."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from smart_spark.errors import ConfigurationError, PreflightError
from smart_spark.store import AnswerStore, StoredAnswer, answer_key, default_store_path
from smart_spark.store.__main__ import main as store_cli

ROOT = Path(__file__).resolve().parents[1]


def _answer(prompt: str, model: str = "gpt-4", label: str | None = "Yes", **kw) -> StoredAnswer:
    fields = dict(raw=label, prompt_tokens=12, completion_tokens=1, cost=0.0003)
    fields.update(kw)
    return StoredAnswer(key=answer_key(model, prompt), model=model, label=label, **fields)


def test_answer_key_is_canonical_and_covers_every_input():
    base = answer_key("m", "p", system_prompt="s", max_tokens=5, options={"a": 1, "b": [1, 2]})
    assert base == answer_key("m", "p", system_prompt="s", max_tokens=5, options={"b": [1, 2], "a": 1})
    assert len(base) == 64 and int(base, 16) >= 0
    variants = [
        answer_key("m2", "p", system_prompt="s", max_tokens=5, options={"a": 1, "b": [1, 2]}),
        answer_key("m", "p ", system_prompt="s", max_tokens=5, options={"a": 1, "b": [1, 2]}),
        answer_key("m", "p", system_prompt=None, max_tokens=5, options={"a": 1, "b": [1, 2]}),
        answer_key("m", "p", system_prompt="s", max_tokens=6, options={"a": 1, "b": [1, 2]}),
        answer_key("m", "p", system_prompt="s", max_tokens=5, options={"a": 2, "b": [1, 2]}),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    code = "from smart_spark.store import answer_key; print(answer_key('m','p',system_prompt='s',max_tokens=5,options={'b':[1,2],'a':1}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"}, cwd=ROOT)
    assert other.stdout.strip() == base


def test_answer_key_rejects_options_that_are_not_json():
    with pytest.raises(ConfigurationError, match="options"):
        answer_key("m", "p", options={"x": object()})


def test_put_then_lookup_returns_every_field(tmp_path):
    store = AnswerStore(str(tmp_path / "s"))
    store.check_writable()
    answers = [
        _answer("a"),
        _answer("b", label="No", raw="No, because ...\nsecond line", confidence=0.83),
        _answer("c", label=None, raw=None, cost=0.0),
        _answer("d", label="Ja", raw="Jä — ünïcode", paid_at=1234.5, writer="me"),
    ]
    with store.writer("task-1") as writer:
        for a in answers:
            writer.put(a)
    fresh = AnswerStore(str(tmp_path / "s"))
    found = fresh.lookup([a.key for a in answers] + [answer_key("gpt-4", "never paid")])
    assert set(found) == {a.key for a in answers}
    for a in answers:
        got = found[a.key]
        assert (got.model, got.label, got.raw, got.prompt_tokens, got.completion_tokens, got.cost, got.confidence) == (
            a.model, a.label, a.raw, a.prompt_tokens, a.completion_tokens, a.cost, a.confidence)
    assert found[answers[3].key].paid_at == 1234.5 and found[answers[3].key].writer == "me"
    assert found[answers[0].key].paid_at > 0 and "task-1" in found[answers[0].key].writer


def test_own_puts_are_seen_before_any_refresh(tmp_path):
    store = AnswerStore(str(tmp_path), min_refresh_seconds=3600)
    store.refresh()
    with store.writer() as writer:
        writer.put(_answer("x"))
        assert store.lookup([answer_key("gpt-4", "x")])[answer_key("gpt-4", "x")].label == "Yes"


def test_bad_key_is_refused(tmp_path):
    with AnswerStore(str(tmp_path)).writer() as writer, pytest.raises(ValueError, match="answer_key"):
        writer.put(StoredAnswer("abc", "m", "Yes", "Yes", 1, 1, 0.0))


def test_not_writable_path_is_a_preflight_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = str(blocker / "answers")
    with pytest.raises(PreflightError, match="a-file/answers.*not writable"):
        AnswerStore(path).check_writable()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_a_preflight_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PreflightError, match="ro"):
            AnswerStore(str(folder / "store")).check_writable()
    finally:
        folder.chmod(0o700)


def test_store_pickles_as_its_path_and_reopens(tmp_path):
    store = AnswerStore(str(tmp_path))
    with store.writer() as writer:
        writer.put(_answer("p"))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.path == store.path and copy is not store
    assert answer_key("gpt-4", "p") in copy.lookup([answer_key("gpt-4", "p")])


def test_default_store_path_is_per_application_under_temp(tmp_path):
    import tempfile

    one, two = default_store_path("app-20240101-0001"), default_store_path("local-1700000000/x")
    assert one.startswith(tempfile.gettempdir()) and one != two
    assert "/" not in os.path.basename(two)


def test_batches_round_trip_and_latest_record_wins(tmp_path):
    store = AnswerStore(str(tmp_path))
    store.record_batch("gpt-4", "batch_1", ["k1", "k2"], {"status": "submitted"})
    store.record_batch("gpt-4", "batch_2", ["k3"], {"status": "submitted"})
    store.record_batch("gpt-4", "batch_1", ["k1", "k2"], {"status": "completed"})
    (tmp_path / "batches" / "junk.json").write_bytes(b"00000000\n{not json")
    batches = AnswerStore(str(tmp_path)).batches()
    assert [(b["batch_id"], b["meta"]["status"]) for b in batches] == [("batch_2", "submitted"), ("batch_1", "completed")]
    assert batches[1]["keys"] == ["k1", "k2"] and batches[1]["model"] == "gpt-4"
    with pytest.raises(ConfigurationError, match="meta"):
        store.record_batch("gpt-4", "b", [], {"x": object()})


def test_cli_summary_compact_and_delete(tmp_path, capsys):
    store = AnswerStore(str(tmp_path))
    for i in range(3):
        with store.writer(f"w{i}") as writer:
            for j in range(10):
                writer.put(_answer(f"{i}-{j}", model=f"m{i % 2}"))
    assert store_cli([str(tmp_path), "--summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["answers"] == 30 and summary["answers_per_model"] == {"m0": 20, "m1": 10} and summary["files"] == 3
    assert store_cli([str(tmp_path), "--compact"]) == 0
    assert json.loads(capsys.readouterr().out)["files_merged"] == 3
    assert len(os.listdir(tmp_path / "answers")) == 1
    assert len(AnswerStore(str(tmp_path)).lookup([answer_key(f"m{i % 2}", f"{i}-{j}") for i in range(3) for j in range(10)])) == 30
    assert store_cli([str(tmp_path), "--delete-older-than", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["files_deleted"] == 0
    assert store_cli([str(tmp_path), "--delete-older-than", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["files_deleted"] == 1
    assert AnswerStore(str(tmp_path)).summary()["answers"] == 0
