"""The few file operations the store needs, over a local disk or a pyarrow filesystem.

Two ways to make an answer durable, chosen per filesystem:

* ``supports_append``: local disks, FUSE mounts that honour appends, HDFS. A
  writer keeps one file open and writes each record with one write call
  followed by a flush. On a local disk that is one ``os.write`` on an
  ``O_APPEND`` descriptor: once it returns the bytes are in the kernel's page
  cache and survive a SIGKILL of the process (no fsync: only a machine crash
  or power loss could lose them). On HDFS the flush is an hflush.
* otherwise (object stores: S3, GCS, ADLS, DBFS): no appends. A writer puts
  small immutable segment objects, each one PUT, visible whole or not at all.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class FileEntry:
    """A file in a store folder."""

    name: str
    size: int
    mtime: float


class AppendHandle(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """What the store asks of a filesystem; paths are backend paths (no scheme)."""

    supports_append: bool
    description: str

    def join(self, *parts: str) -> str: ...
    def makedirs(self, path: str) -> None: ...
    def list_files(self, folder: str) -> list[FileEntry]: ...
    def read_from(self, path: str, offset: int, length: int | None = None) -> bytes: ...
    def open_append(self, path: str) -> AppendHandle: ...
    def write_whole(self, path: str, data: bytes) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def delete(self, path: str) -> None: ...


class _FdAppend:
    """An O_APPEND descriptor: each write is one syscall, nothing buffered in this process."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        os.close(self._fd)


class LocalBackend:
    """A local (or FUSE-mounted) folder, through ``os`` directly: the fastest path."""

    description = "local"

    def __init__(self, *, supports_append: bool = True, description: str = "local") -> None:
        self.supports_append = supports_append
        self.description = description

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def list_files(self, folder: str) -> list[FileEntry]:
        entries: list[FileEntry] = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_file():
                            stat = entry.stat()
                            entries.append(FileEntry(entry.name, stat.st_size, stat.st_mtime))
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            return []
        return entries

    def read_from(self, path: str, offset: int, length: int | None = None) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(-1 if length is None else length)

    def open_append(self, path: str) -> AppendHandle:
        return _FdAppend(path)

    def write_whole(self, path: str, data: bytes) -> None:
        """Write to a hidden temporary name, then rename: readers see all of it or nothing."""
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def delete(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class _ArrowAppend:
    """A pyarrow output stream flushed after every write (hflush on HDFS)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


class ArrowBackend:
    """Any ``pyarrow.fs.FileSystem`` (S3, GCS, HDFS, fsspec-wrapped ADLS, in-memory mocks)."""

    def __init__(self, filesystem: Any, *, supports_append: bool, description: str) -> None:
        self.fs = filesystem
        self.supports_append = supports_append
        self.description = description

    def join(self, *parts: str) -> str:
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))

    def makedirs(self, path: str) -> None:
        self.fs.create_dir(path, recursive=True)

    def list_files(self, folder: str) -> list[FileEntry]:
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        entries = []
        for info in infos:
            if info.type == pafs.FileType.File:
                mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
                entries.append(FileEntry(info.base_name, int(info.size or 0), mtime))
        return entries

    def read_from(self, path: str, offset: int, length: int | None = None) -> bytes:
        try:
            with self.fs.open_input_file(path) as f:
                f.seek(offset)
                return f.read(length)
        except OSError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(path) from exc
            raise

    def open_append(self, path: str) -> AppendHandle:
        return _ArrowAppend(self.fs.open_output_stream(path))

    def write_whole(self, path: str, data: bytes) -> None:
        if self.supports_append:
            # A filesystem with appends shows a file while it is written: write aside, then move.
            folder, _, name = path.rpartition("/")
            tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, path)
        else:
            # An object PUT is atomic: the object appears whole when the stream closes.
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def rename(self, src: str, dst: str) -> None:
        self.fs.move(src, dst)

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except OSError as exc:
            if not _is_not_found(exc):
                raise


def _is_not_found(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc).lower()
    return "not found" in text or "no such file" in text or "does not exist" in text
