"""Concurrent writers lose nothing; a SIGKILLed writer keeps every answer put() returned for;
racing payments resolve the same way in every process; refresh is incremental."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from smart_spark.store import AnswerStore, StoredAnswer, answer_key

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import sys, time
from smart_spark.store import AnswerStore, StoredAnswer, answer_key
path, tag, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = AnswerStore(path, append=(mode == "append"))
with store.writer(tag, flush_every=7, flush_seconds=60) as writer:
    for i in range(count):
        writer.put(StoredAnswer(answer_key("m", f"{tag}-{i}"), "m", f"L{tag}-{i}", f"L{tag}-{i}", 3, 1, 0.001))
        if count < 0 or "slow" in tag:
            print(i, flush=True)
            time.sleep(0.002)
"""


def _child(path: str, tag: str, count: int, mode: str = "append", **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, path, tag, str(count), mode], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


def _answer(prompt: str, label: str = "Yes", **kw) -> StoredAnswer:
    return StoredAnswer(answer_key("m", prompt), "m", label, label, 3, 1, 0.001, **kw)


@pytest.mark.parametrize("mode", ["append", "segments"])
def test_threads_and_processes_writing_at_once_lose_nothing(tmp_path, mode):
    path = str(tmp_path / "store")
    store = AnswerStore(path, append=(mode == "append"))
    store.check_writable()
    procs = [_child(path, f"p{n}", 300, mode) for n in range(3)]
    shared = store.writer("shared", flush_every=5)

    def work(t: int) -> None:
        with store.writer(f"own{t}", flush_every=5) as own:
            for i in range(200):
                own.put(_answer(f"own{t}-{i}"))
                shared.put(_answer(f"shared{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.close()
    assert all(p.wait(60) == 0 for p in procs)
    keys = [answer_key("m", f"p{n}-{i}") for n in range(3) for i in range(300)]
    keys += [answer_key("m", f"{kind}{t}-{i}") for kind in ("own", "shared") for t in range(6) for i in range(200)]
    found = AnswerStore(path, append=(mode == "append")).lookup(keys)
    assert len(found) == len(keys) == 3 * 300 + 2 * 6 * 200
    assert found[answer_key("m", "p2-299")].label == "Lp2-299"
    summary = AnswerStore(path).summary()
    assert summary["corrupt_lines_skipped"] == 0 and summary["duplicate_payments"] == 0


def test_sigkilled_writer_keeps_every_answer_put_returned_for(tmp_path):
    path = str(tmp_path / "store")
    proc = _child(path, "slow", 100000, stdout=subprocess.PIPE, text=True)
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    store = AnswerStore(path)
    found = store.lookup([answer_key("m", f"slow-{i}") for i in acknowledged])
    assert len(found) == 300
    assert all(found[answer_key("m", f"slow-{i}")].label == f"Lslow-{i}" for i in acknowledged)
    assert store.summary()["open_logs"] == 1  # the killed writer never sealed its log: still read


def test_sigkilled_segment_writer_loses_at_most_its_unflushed_buffer(tmp_path):
    path = str(tmp_path / "store")
    proc = _child(path, "slow", 100000, "segments", stdout=subprocess.PIPE, text=True)
    for n, _ in enumerate(proc.stdout, start=1):
        if n == 100:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    found = AnswerStore(path).lookup([answer_key("m", f"slow-{i}") for i in range(100)])
    assert 100 - 7 < len(found) <= 100  # flush_every=7: at most 6 buffered answers lost
    assert set(found) == {answer_key("m", f"slow-{i}") for i in range(len(found))}


def test_racing_payments_resolve_to_the_same_answer_everywhere(tmp_path):
    path = str(tmp_path / "store")
    store = AnswerStore(path)
    key = answer_key("m", "raced")
    with store.writer("late") as late:
        late.put(_answer("raced", label="No", paid_at=2000.0, writer="zz-late"))
    assert store.lookup([key])[key].label == "No"
    with AnswerStore(path).writer("early") as early:
        early.put(_answer("raced", label="Yes", paid_at=1000.0, writer="aa-early"))
    store.refresh()
    assert store.lookup([key])[key].label == "Yes"
    with AnswerStore(path).writer("tie") as tie:
        tie.put(_answer("raced", label="Maybe", paid_at=1000.0, writer="bb-tie"))
    code = ("import sys; from smart_spark.store import AnswerStore; "
            f"print(AnswerStore(sys.argv[1]).lookup([{key!r}])[{key!r}].label)")
    labels = {subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip() for _ in range(2)}
    store.refresh()
    assert labels == {"Yes"} and store.lookup([key])[key].label == "Yes"
    assert AnswerStore(path).summary()["duplicate_payments"] == 2


def test_refresh_reads_only_what_is_new(tmp_path):
    path = str(tmp_path / "store")
    reader = AnswerStore(path)
    assert reader.refresh() == 0
    writer = AnswerStore(path).writer("w")
    for i in range(50):
        writer.put(_answer(f"a{i}"))
    assert reader.refresh() == 50
    bytes_after_first = reader.index.stats.bytes_read
    for i in range(50, 60):
        writer.put(_answer(f"a{i}"))
    assert reader.refresh() == 10  # only the appended records
    assert reader.index.stats.bytes_read - bytes_after_first < bytes_after_first * 0.3
    writer.close()  # sealing renames .log -> .done: same stem, nothing read again
    assert reader.refresh() == 0
    with AnswerStore(path).writer("other") as other:
        other.put(_answer("b"))
    assert reader.lookup([answer_key("m", "b")])[answer_key("m", "b")].label == "Yes"
    assert reader.index.stats.records_read == 61
