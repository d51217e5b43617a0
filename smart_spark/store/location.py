"""Where a store lives: turn a user's path or URI into a backend, lazily.

Resolution is pure (no network): ``resolve(uri)`` says which filesystem will
be used and at which path; the filesystem itself (which may look up an S3
bucket's region or start libhdfs) is built only on first use.

=====================================  ===========================  =========
path                                   filesystem                   durability
=====================================  ===========================  =========
``/x``, ``x``, ``file:///x``           local ``os``                 append
``dbfs:/x``                            ``/dbfs/x`` FUSE mount       segments
``s3://``, ``s3a://``, ``s3n://``      ``pyarrow.fs.S3FileSystem``  segments
``gs://``, ``gcs://``                  ``pyarrow.fs.GcsFileSystem`` segments
``hdfs://``, ``viewfs://``             ``pyarrow.fs.HadoopFileSystem`` append
``abfss://``, ``abfs://``, ``az://``   fsspec (``adlfs``)           segments
=====================================  ===========================  =========

DBFS goes through segments although its FUSE mount accepts appends, because
the mount uploads a file when it is closed: an open log would not survive a
killed task.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from smart_spark.errors import ConfigurationError, PreflightError
from smart_spark.store.backends import ArrowBackend, Backend, LocalBackend

DBFS_MOUNT = "/dbfs"

_S3 = ("s3", "s3a", "s3n")
_GCS = ("gs", "gcs")
_HDFS = ("hdfs", "viewfs")
_AZURE = ("abfss", "abfs", "az", "adl")


@dataclass(frozen=True)
class Location:
    """A resolved store root: which filesystem (``kind``), where (``root``), and how to open it."""

    uri: str
    kind: str
    root: str
    factory: Callable[[], Backend]

    def open(self) -> Backend:
        return self.factory()


def resolve(uri: str, *, filesystem: Any = None, append: bool | None = None) -> Location:
    """The location of the store at ``uri``.

    ``filesystem`` (a ``pyarrow.fs.FileSystem``) overrides the choice, with
    ``uri`` then a path inside it; ``append`` overrides whether records are
    appended to per-writer logs (True) or written as immutable segments (False).
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigurationError(f"answersPath must be a non-empty path or URI, got {uri!r}")
    uri = uri.strip()
    if filesystem is not None:
        supports = bool(append) if append is not None else False
        kind = f"arrow:{filesystem.type_name}"
        return Location(uri, kind, uri.rstrip("/") or "/", lambda: ArrowBackend(filesystem, supports_append=supports, description=kind))
    scheme = urlsplit(uri).scheme.lower() if "://" in uri or uri.lower().startswith(("file:", "dbfs:")) else ""
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in ("", "file"):
        root = os.path.abspath(_strip_file_scheme(uri) if scheme else os.path.expanduser(uri))
        return _local(uri, "local", root, True if append is None else append)
    if scheme == "dbfs":
        return _dbfs(uri, append)
    if scheme in _S3:
        return _arrow(uri, "arrow:s3", "s3://" + uri.split("://", 1)[1], append if append is not None else False)
    if scheme in _GCS:
        return _arrow(uri, "arrow:gcs", "gs://" + uri.split("://", 1)[1], append if append is not None else False)
    if scheme in _HDFS:
        return _arrow(uri, "arrow:hdfs", uri, True if append is None else append)
    if scheme in _AZURE:
        return _fsspec(uri, "fsspec:abfs", append if append is not None else False, hint="pip install fsspec adlfs")
    return _fsspec(uri, f"fsspec:{scheme}", append if append is not None else False, hint=None)


def _strip_file_scheme(uri: str) -> str:
    rest = uri[len("file:") :]
    if rest.startswith("//"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"answersPath {uri!r}: file:// URIs must name a local path (no host)")
        return parts.path or "/"
    return rest


def _local(uri: str, kind: str, root: str, append: bool) -> Location:
    return Location(uri, kind, root, lambda: LocalBackend(supports_append=append, description=kind))


def _dbfs(uri: str, append: bool | None) -> Location:
    rest = uri.split(":", 1)[1].lstrip("/")
    root = os.path.join(DBFS_MOUNT, rest)
    if not os.path.isdir(DBFS_MOUNT):
        raise PreflightError(
            f"answersPath {uri!r}: dbfs:/ paths are read through the {DBFS_MOUNT} FUSE mount, "
            f"which this machine does not have (not on Databricks?). Use a local path or an "
            f"s3a://, abfss://, gs:// or hdfs:// URI instead"
        )
    return _local(uri, "dbfs-fuse", root, False if append is None else append)


def _arrow(uri: str, kind: str, arrow_uri: str, append: bool) -> Location:
    split = urlsplit(arrow_uri)
    if not split.netloc:
        raise ConfigurationError(f"answersPath {uri!r} names no bucket/host")
    root = (split.netloc + split.path).rstrip("/") if kind != "arrow:hdfs" else (split.path.rstrip("/") or "/")

    def build() -> Backend:
        import pyarrow.fs as pafs

        try:
            filesystem, _ = pafs.FileSystem.from_uri(arrow_uri)
        except Exception as exc:
            raise PreflightError(f"answersPath {uri!r}: cannot open {kind[6:]} filesystem: {exc}") from exc
        return ArrowBackend(filesystem, supports_append=append, description=kind)

    return Location(uri, kind, root, build)


def _fsspec(uri: str, kind: str, append: bool, hint: str | None) -> Location:
    try:
        import fsspec  # noqa: F401  (optional dependency)
    except ImportError as exc:
        if hint is None:
            raise ConfigurationError(
                f"answersPath {uri!r}: unknown scheme; use a local path, file://, dbfs:/, s3a://, s3://, "
                f"gs://, hdfs:// or abfss:// (other fsspec schemes need the fsspec package)"
            ) from exc
        raise PreflightError(f"answersPath {uri!r} needs the fsspec and adlfs packages, which are not installed ({hint})") from exc
    import fsspec.core

    try:
        filesystem, root = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        extra = f" ({hint})" if hint else ""
        raise PreflightError(f"answersPath {uri!r}: fsspec cannot open this scheme: {exc}{extra}") from exc

    def build() -> Backend:
        import pyarrow.fs as pafs

        wrapped = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        return ArrowBackend(wrapped, supports_append=append, description=kind)

    return Location(uri, kind, root.rstrip("/") or "/", build)
