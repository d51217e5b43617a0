"""Which filesystem each answersPath uses (no cloud needed), and the full store on an
in-memory filesystem with object-store semantics (no appends, objects appear whole on close)."""

from __future__ import annotations

import threading
import time

import pyarrow.fs as pafs
import pytest

from smart_spark.errors import ConfigurationError, PreflightError
from smart_spark.store import AnswerStore, StoredAnswer, answer_key
from smart_spark.store import location as location_module
from smart_spark.store.location import resolve


@pytest.mark.parametrize(
    "uri, kind, root",
    [
        ("/data/answers", "local", "/data/answers"),
        ("file:///data/answers", "local", "/data/answers"),
        ("file:/data/answers", "local", "/data/answers"),
        ("s3a://bucket/dir/answers/", "arrow:s3", "bucket/dir/answers"),
        ("s3://bucket/answers", "arrow:s3", "bucket/answers"),
        ("s3n://bucket/answers", "arrow:s3", "bucket/answers"),
        ("gs://bucket/answers", "arrow:gcs", "bucket/answers"),
        ("hdfs://namenode:8020/user/me/answers", "arrow:hdfs", "/user/me/answers"),
    ],
)
def test_each_scheme_picks_its_filesystem_without_touching_it(uri, kind, root):
    location = resolve(uri)
    assert (location.kind, location.root) == (kind, root)


def test_relative_local_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("answers").root == str(tmp_path / "answers")


def test_durability_mode_follows_the_filesystem():
    assert resolve("/x").open().supports_append is True
    assert resolve("/x", append=False).open().supports_append is False


def test_dbfs_maps_to_the_fuse_mount_or_says_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(location_module, "DBFS_MOUNT", str(tmp_path / "no-dbfs"))
    with pytest.raises(PreflightError, match="dbfs:/.*FUSE mount"):
        resolve("dbfs:/tmp/answers")
    monkeypatch.setattr(location_module, "DBFS_MOUNT", str(tmp_path))
    location = resolve("dbfs:/tmp/answers")
    assert (location.kind, location.root) == ("dbfs-fuse", str(tmp_path / "tmp" / "answers"))
    assert location.open().supports_append is False  # the mount uploads on close: segments


def test_abfss_needs_fsspec_and_says_so():
    try:
        import fsspec  # noqa: F401
    except ImportError:
        with pytest.raises(PreflightError, match="fsspec and adlfs"):
            resolve("abfss://container@account.dfs.core.windows.net/answers")
    else:
        pytest.skip("fsspec is installed here; the missing-package message cannot be shown")


def test_unknown_scheme_and_empty_path_are_configuration_errors():
    with pytest.raises(ConfigurationError):
        resolve("")
    try:
        import fsspec  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationError, match="unknown scheme"):
            resolve("ftp2://host/answers")
    with pytest.raises(ConfigurationError, match="no bucket"):
        resolve("s3a:///answers")
    with pytest.raises(ConfigurationError, match="local path"):
        resolve("file://otherhost/answers")


def _answer(prompt: str, label: str = "Yes") -> StoredAnswer:
    return StoredAnswer(answer_key("m", prompt), "m", label, label, 3, 1, 0.001)


def test_object_store_semantics_on_an_in_memory_filesystem():
    fs = pafs._MockFileSystem()  # objects become visible only when their stream closes, like S3
    store = AnswerStore("bucket/answers", filesystem=fs, min_refresh_seconds=0)
    store.check_writable()
    reader = AnswerStore("bucket/answers", filesystem=fs, min_refresh_seconds=0)
    assert not store.backend.supports_append

    def work(t: int) -> None:
        with store.writer(f"task{t}", flush_every=10) as writer:
            for i in range(95):
                writer.put(_answer(f"{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [answer_key("m", f"{t}-{i}") for t in range(4) for i in range(95)]
    assert len(reader.lookup(keys)) == 380
    files = reader.summary()["files"]
    assert files == 4 * 10  # 9 full segments of 10 and one of 5 per writer
    assert reader.compact()["files_merged"] == 40
    fresh = AnswerStore("bucket/answers", filesystem=fs)
    assert len(fresh.lookup(keys)) == 380 and fresh.summary()["files"] == 1


def test_object_store_writer_flushes_on_time_without_more_puts():
    fs = pafs._MockFileSystem()
    store = AnswerStore("bucket/a", filesystem=fs)
    reader = AnswerStore("bucket/a", filesystem=fs, min_refresh_seconds=0)
    writer = store.writer("slow", flush_every=1000, flush_seconds=0.2)
    writer.put(_answer("only"))
    assert reader.lookup([answer_key("m", "only")]) == {}  # still buffered
    deadline = time.monotonic() + 5
    while not reader.lookup([answer_key("m", "only")]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.lookup([answer_key("m", "only")])[answer_key("m", "only")].label == "Yes"
    writer.close()


def test_compaction_keeps_answers_written_while_it_runs(tmp_path):
    path = str(tmp_path)
    for n in range(5):
        with AnswerStore(path).writer(f"sealed{n}") as writer:
            for i in range(20):
                writer.put(_answer(f"s{n}-{i}"))
    live = AnswerStore(path).writer("live")
    live.put(_answer("live-0"))
    result = AnswerStore(path).compact()
    live.put(_answer("live-1"))  # the open log was not taken: still appended, still read
    live.close()
    assert result["files_merged"] == 5 and result["answers"] == 100
    keys = [answer_key("m", f"s{n}-{i}") for n in range(5) for i in range(20)] + [answer_key("m", "live-0"), answer_key("m", "live-1")]
    assert len(AnswerStore(path).lookup(keys)) == 102


def test_append_mode_through_a_pyarrow_filesystem(tmp_path):
    """The HDFS path: a pyarrow filesystem with appends (flush per answer, seal by move), here pyarrow's local one."""
    store = AnswerStore(str(tmp_path), filesystem=pafs.LocalFileSystem(), append=True)
    store.check_writable()
    reader = AnswerStore(str(tmp_path), filesystem=pafs.LocalFileSystem(), append=True)
    writer = store.writer("task")
    writer.put(_answer("first"))
    assert reader.lookup([answer_key("m", "first")])[answer_key("m", "first")].label == "Yes"  # visible before close
    writer.put(_answer("second"))
    writer.close()
    assert sorted(p.suffix for p in (tmp_path / "answers").iterdir()) == [".done"]
    assert len(AnswerStore(str(tmp_path)).lookup([answer_key("m", "first"), answer_key("m", "second")])) == 2
