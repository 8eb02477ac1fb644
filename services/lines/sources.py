"""Frame files to read: local files and S3 objects, read from a byte offset, with their size and etag."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable

from services.core.errors import ConsoleError, NotFound, StorageError
from services.core.storage import ObjectStore, is_s3, open_regular

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
CHUNK_BYTES = 4 << 20  # one transaction per chunk of a file


class SourceFile(ABC):
    """One source file: its bytes from an offset, and the size and etag seen while reading them."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.size_read = 0
        self.etag = ""
        self.settled = False  # the last line, even without its newline, is whole

    @abstractmethod
    def read_from(self, offset: int) -> Iterable[bytes]:
        """The file's bytes from ``offset`` on, in chunks; sets ``size_read`` and ``etag`` as it reads."""

    @abstractmethod
    def byte_at(self, pos: int) -> bytes:
        """The byte at ``pos`` (is the byte before a saved offset still a newline?)."""

    @abstractmethod
    def first_line(self) -> bytes:
        """The first line (a CSV file's header)."""

    @abstractmethod
    def lines_before(self, offset: int) -> int:
        """How many lines end before ``offset`` (to number the rows read after it)."""


def local_error(path: str, exc: OSError) -> ConsoleError:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"file not found: {path}. Was it moved or rotated away?")
    if isinstance(exc, PermissionError):
        return StorageError(f"permission denied for {path}: let the console's user read it.")
    return StorageError(f"cannot read {path}: {exc.strerror or exc}.")


class LocalFile(SourceFile):
    def __init__(self, uri: str, *, now_ts: float, settle_seconds: float) -> None:
        super().__init__(uri)
        self.path = uri[7:] if uri.startswith("file://") else uri
        self.now_ts = now_ts
        self.settle_seconds = settle_seconds

    def _open(self):  # type: ignore[no-untyped-def]
        return open_regular(self.path)  # a named pipe or device is refused, never waited on

    def stat(self) -> os.stat_result:
        try:
            return os.stat(self.path)
        except OSError as exc:
            raise local_error(self.path, exc) from exc

    def read_from(self, offset: int) -> Iterable[bytes]:
        with self._open() as f:
            try:
                st = os.fstat(f.fileno())
                self.etag = str(st.st_mtime_ns)
                self.settled = self.now_ts - st.st_mtime >= self.settle_seconds
                f.seek(offset)
                self.size_read = offset
                while block := f.read(CHUNK_BYTES):
                    self.size_read += len(block)
                    yield block
            except OSError as exc:
                raise local_error(self.path, exc) from exc

    def byte_at(self, pos: int) -> bytes:
        with self._open() as f:
            f.seek(pos)
            return f.read(1)

    def first_line(self) -> bytes:
        with self._open() as f:
            return f.readline()

    def lines_before(self, offset: int) -> int:
        n, left = 0, offset
        with self._open() as f:
            while left > 0 and (block := f.read(min(left, CHUNK_BYTES))):
                n += block.count(b"\n")
                left -= len(block)
        return n


class S3File(SourceFile):
    """S3 objects are written whole, so the object is read whole (once per pass)."""

    def __init__(self, uri: str, store: ObjectStore) -> None:
        super().__init__(uri)
        self.store = store
        self._data: bytes | None = None
        self.settled = True

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.store.read(self.uri)
            self.etag = hashlib.md5(self._data, usedforsecurity=False).hexdigest()  # S3's ETag for one-part objects
            self.size_read = len(self._data)
        return self._data

    def read_from(self, offset: int) -> Iterable[bytes]:
        data = self.data
        for start in range(offset, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]

    def byte_at(self, pos: int) -> bytes:
        return self.data[pos : pos + 1]

    def first_line(self) -> bytes:
        end = self.data.find(b"\n")
        return self.data if end < 0 else self.data[: end + 1]

    def lines_before(self, offset: int) -> int:
        return self.data.count(b"\n", 0, offset)


def listing(uri: str, store: ObjectStore) -> list[tuple[str, int]]:
    """(uri, size) of every frame file at ``uri``: one file, a folder or an S3 prefix."""
    if is_s3(uri):
        if uri.lower().endswith(SUFFIXES):
            try:
                return [(uri, store.size(uri))]
            except NotFound:
                pass  # maybe a prefix that happens to end like a file name
        return [(o.uri, o.size) for o in store.list(uri, suffixes=SUFFIXES)]
    path = uri[7:] if uri.startswith("file://") else uri
    if os.path.isfile(path):
        return [(uri, os.path.getsize(path))]
    return [(o.uri, o.size) for o in store.list(uri, suffixes=SUFFIXES)]
