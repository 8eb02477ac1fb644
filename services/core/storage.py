"""One object-store interface over local paths (absolute, relative, ``file://``) and ``s3://bucket/key``."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config

from services.core import aws
from services.core.errors import InvalidInput, NotFound, PermissionDenied, StorageError
from services.core.private import DIR_MODE, open_private

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
DEFAULT_MAX_BYTES = 256 << 20  # the most one read returns (Settings: the largest file read)
CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    key: str  # path relative to the listed prefix, '/' separators
    size: int
    etag: str = field(default="", compare=False)  # S3's ETag; a local file's size and modification time (what changes when it is rewritten)


def is_s3(uri: str) -> bool:
    return uri[:5].lower() == "s3://"


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; key may be empty. Raises InvalidInput if malformed."""
    if not is_s3(uri):
        raise InvalidInput(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or any(c.isspace() for c in bucket):
        raise InvalidInput(f"malformed S3 URI {uri!r}: no valid bucket name (expected s3://bucket/key)")
    return bucket, key


def join(prefix_uri: str, relative_key: str) -> str:
    """The URI of ``relative_key`` ('/'-separated) under a folder or S3 prefix. Raises InvalidInput."""
    key = relative_key.lstrip("/")
    if not key or ".." in key.split("/"):
        raise InvalidInput(f"bad relative key {relative_key!r}: give a non-empty path without '..'")
    if is_s3(prefix_uri):
        bucket, prefix = split_s3(prefix_uri)
        prefix = prefix.rstrip("/")
        return f"s3://{bucket}/{prefix}/{key}" if prefix else f"s3://{bucket}/{key}"
    return os.path.join(_local_path(prefix_uri), *key.split("/"))


def _local_path(uri: str) -> str:
    if uri[:5].lower() == "file:":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"unsupported file URL {uri!r}: only local files (file:///path) can be read")
        uri = unquote(parsed.path)
    elif _SCHEME.match(uri):
        raise InvalidInput(f"unsupported URI {uri!r}: use a local path, a file:// URL or s3://bucket/key")
    if not uri:
        raise InvalidInput("empty path: give a file or folder path, or an s3://bucket/key URI")
    return uri


def normalise_root(root: str) -> str:
    """A storage root as compared: ``s3://bucket/prefix/`` or an absolute local folder with links resolved.
    Raises InvalidInput for a relative local path or a malformed S3 URI."""
    root = str(root).strip()
    if is_s3(root):
        bucket, prefix = split_s3(root)
        prefix = prefix.strip("/")
        if ".." in prefix.split("/"):
            raise InvalidInput(f"storage root {root!r} must not contain '..'")
        return f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
    path = _local_path(root)
    if not os.path.isabs(path):
        raise InvalidInput(f"storage root {root!r} must be an absolute folder path (or s3://bucket/prefix)")
    return os.path.realpath(path)


def open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading in binary, only if it is a regular file (a link to one counts).

    Opening does not block (a named pipe with no writer is refused at once, never waited on), so nothing here
    needs a timeout. Raises InvalidInput for a folder, named pipe, device or socket, NotFound or StorageError."""
    with _local_errors(path):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        with _local_errors(path):
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise InvalidInput(f"{path} is a folder, not a file: give the path of a file.")
            if not stat.S_ISREG(mode):
                kind = ("a named pipe" if stat.S_ISFIFO(mode)
                        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                        else "a socket" if stat.S_ISSOCK(mode) else "a special file")
                raise InvalidInput(f"{path} is {kind}, not a regular file: only regular files and S3 objects "
                                   "are read.")
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _too_large(uri: str, limit: int) -> InvalidInput:
    return InvalidInput(f"{uri} is larger than {limit / (1 << 20):g} MB, the most the console reads from one "
                        "file (Settings: largest file read).")


def read_capped(stream: Any, *, uri: str, limit: int) -> bytes:
    """Everything ``stream`` holds, read in chunks; raises InvalidInput as soon as it passes ``limit`` bytes
    (a file that grows, or a size that lied, is not read to its end)."""
    out = bytearray()
    while chunk := stream.read(min(CHUNK, limit + 1 - len(out))):
        out += chunk
        if len(out) > limit:
            raise _too_large(uri, limit)
    return bytes(out)


def _wanted(name: str, suffixes: tuple[str, ...] | None) -> bool:
    return suffixes is None or name.lower().endswith(suffixes)


@contextlib.contextmanager
def _local_errors(path: str, kind: str = "file") -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFound(f"{kind} not found: {path}. Check the path, or whether it was moved.") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path} is a folder, not a file: give the path of a file.") from exc
    except (NotADirectoryError, FileExistsError) as exc:
        raise InvalidInput(f"a part of the path {path} is a file, not a folder: check the path.") from exc
    except PermissionError as exc:
        raise StorageError(f"permission denied for {path}: let the console's user access it.") from exc
    except OSError as exc:
        raise StorageError(f"cannot access {path}: {exc.strerror or exc}. Check the disk and path.") from exc


class ObjectStore:
    """Reads and writes objects by URI; every failure is a ConsoleError whose message names the URI."""

    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None,
                 connect_timeout: float = 5, read_timeout: float = 30, max_attempts: int = 3,
                 roots: list[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """``roots``: when given, every URI read, listed or written must lie inside one of these folders or
        S3 prefixes (after resolving ``..`` and symbolic links); None allows any (tools and tests: the console
        always passes roots, see ``services.core.config.object_store``). ``max_bytes``: the most one read
        returns. Whatever the roots, only regular files and S3 objects are read. Raises InvalidInput."""
        if connect_timeout <= 0 or read_timeout <= 0 or max_attempts < 1 or max_bytes < 1:
            raise InvalidInput("S3 timeouts and the read limit must be positive and max_attempts at least 1")
        self.roots = None if roots is None else [normalise_root(r) for r in roots]
        self.max_bytes = int(max_bytes)
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self._config = Config(  # total_max_attempts counts the first try, so 1 means "no retries"
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"} if self.endpoint_url else None)
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The boto3 S3 client (standard credential chain), created once on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    session = boto3.session.Session(region_name=self.region)
                    try:
                        client = session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
                    except ValueError as exc:
                        raise InvalidInput(f"invalid S3 endpoint_url {self.endpoint_url!r}: {exc}. "
                                           "Use a full URL such as http://127.0.0.1:8333") from exc
                    self._client = client
        return self._client

    def _s3_errors(self, action: str, uri: str, permission: str) -> contextlib.AbstractContextManager[None]:
        """botocore failures of an S3 call as ConsoleErrors (``services.core.aws``): NotFound, InvalidInput,
        StorageAccessError (credentials, access: also a StorageError) or StorageError."""
        return aws.errors(service="S3", action=action, resource=uri, permission=permission,
                          endpoint=self.endpoint_url, storage=True)

    def check_allowed(self, uri: str) -> None:
        """Raise PermissionDenied when ``uri`` lies outside the storage roots (InvalidInput for a bad URI)."""
        if self.roots is None:
            return
        if is_s3(uri):
            bucket, key = split_s3(uri)
            inside = ".." not in key.split("/") and any(
                r.startswith("s3://") and f"s3://{bucket}/{key}".startswith(r) or r == f"s3://{bucket}/{key}/"
                for r in self.roots)
        else:
            path = os.path.realpath(os.path.abspath(_local_path(uri)))
            inside = any(not r.startswith("s3://") and (path == r or path.startswith(r.rstrip(os.sep) + os.sep))
                         for r in self.roots)
        if not inside:
            raise PermissionDenied(f"{uri} is outside the storage roots allowed in Settings: an admin can add its "
                                   "folder or bucket there if the console should read it")

    @staticmethod
    def _object(uri: str) -> tuple[str, str]:
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            raise InvalidInput(f"{uri} names a bucket or folder, not an object: give the full object key.")
        return bucket, key

    def read(self, uri: str) -> bytes:
        """The object's bytes, read in chunks up to the store's ``max_bytes``. Raises NotFound, InvalidInput
        (a folder, named pipe, device or anything but a regular file; larger than ``max_bytes``; a bad URI),
        PermissionDenied (outside the storage roots) or StorageError."""
        self.check_allowed(uri)
        if is_s3(uri):
            bucket, key = self._object(uri)
            with self._s3_errors("read", uri, "s3:GetObject"):
                response = self.client.get_object(Bucket=bucket, Key=key)
                with contextlib.closing(response["Body"]) as body:
                    if int(response.get("ContentLength") or 0) > self.max_bytes:
                        raise _too_large(uri, self.max_bytes)
                    return read_capped(body, uri=uri, limit=self.max_bytes)
        path = _local_path(uri)
        with open_regular(path) as f:
            with _local_errors(path):
                if os.fstat(f.fileno()).st_size > self.max_bytes:
                    raise _too_large(uri, self.max_bytes)
                return read_capped(f, uri=uri, limit=self.max_bytes)

    def local_file(self, uri: str) -> str:
        """The path of a local regular file inside the storage roots, for readers that need a path (video
        decoding). Raises PermissionDenied, InvalidInput (not a local regular file), NotFound or StorageError."""
        if is_s3(uri):
            raise InvalidInput(f"{uri} is an S3 object, not a local file")
        self.check_allowed(uri)
        path = _local_path(uri)
        with open_regular(path):
            return path

    def write(self, uri: str, data: bytes) -> None:
        """Store ``data`` (local: atomic, makes folders). Raises InvalidInput, NotFound or StorageError."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"data for {uri} must be bytes, not {type(data).__name__}")
        self.check_allowed(uri)
        if is_s3(uri):
            bucket, key = self._object(uri)
            with self._s3_errors("write", uri, "s3:PutObject"):
                self.client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
            return
        path = _local_path(uri)
        name = os.path.basename(path)
        if not name or os.path.isdir(path):
            raise InvalidInput(f"{path} is a folder, not a file: give the path of a file.")
        parent = os.path.dirname(os.path.abspath(path))
        with _local_errors(path):
            os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
            tmp = os.path.join(parent, f".{name[:100]}.{uuid.uuid4().hex}.tmp")
            fd = open_private(tmp, exclusive=True)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    def exists(self, uri: str) -> bool:
        """True if an object/file is there. Raises InvalidInput (a folder) or StorageError (cannot tell)."""
        try:
            self.size(uri)
        except NotFound:
            return False
        return True

    def size(self, uri: str) -> int:
        """Size in bytes. Raises NotFound, InvalidInput, PermissionDenied or StorageError."""
        self.check_allowed(uri)
        if is_s3(uri):
            bucket, key = self._object(uri)
            with self._s3_errors("read the size of", uri, "s3:GetObject (and s3:ListBucket to tell a missing "
                                 "object from a refused one)"):
                return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        path = _local_path(uri)
        with _local_errors(path):
            st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"{path} is a folder, not a file: give the path of a file.")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{path} is not a regular file: only regular files and S3 objects are read.")
        return st.st_size

    def list(self, prefix_uri: str, *, suffixes: tuple[str, ...] | None = None, recursive: bool = True,
             page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Objects under a folder or S3 prefix (``p`` means ``p/``) in S3 key order, hidden files skipped.

        ``suffixes`` match case-insensitively. Raises NotFound (missing folder or bucket, at call time),
        InvalidInput (a file, a bad URI) or StorageError (also while iterating).
        """
        wanted = None if suffixes is None else tuple(s.lower() for s in suffixes)
        self.check_allowed(prefix_uri)
        if not is_s3(prefix_uri):
            root = _local_path(prefix_uri)
            with _local_errors(root, kind="folder"):
                st = os.stat(root)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidInput(f"{root} is a file, not a folder: give the folder that holds the files.")
            return self._walk(prefix_uri, root, "", wanted, recursive)
        bucket, prefix = split_s3(prefix_uri)
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {}}
        if not recursive:
            kwargs["Delimiter"] = "/"
        if page_size:
            kwargs["PaginationConfig"]["PageSize"] = page_size
        with self._s3_errors("list", prefix_uri, f"s3:ListBucket on bucket {bucket}"):
            pages = iter(self.client.get_paginator("list_objects_v2").paginate(**kwargs))
            first = next(pages, None)

        def objects(page: dict[str, Any] | None) -> Iterator[ObjectInfo]:
            while page is not None:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if not key.endswith("/") and _wanted(key, wanted):
                        yield ObjectInfo(f"s3://{bucket}/{key}", key[len(prefix) :], int(obj["Size"]),
                                         str(obj.get("ETag", "")).strip('"'))
                with self._s3_errors("list", prefix_uri, f"s3:ListBucket on bucket {bucket}"):
                    page = next(pages, None)

        return objects(first)

    def _walk(self, prefix_uri: str, root: str, rel: str, wanted: tuple[str, ...] | None,
              recursive: bool) -> Iterator[ObjectInfo]:
        folder = os.path.join(root, rel) if rel else root
        with _local_errors(folder, kind="folder"), os.scandir(folder) as it:
            # A folder sorts as "name/", so the walk yields keys in the order S3 would list them.
            entries = sorted((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in it)
        for sort_name, entry in entries:
            if entry.name.startswith("."):  # hidden files and folders (.git, .DS_Store, temp files)
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if sort_name.endswith("/"):
                if recursive:
                    yield from self._walk(prefix_uri, root, key, wanted, recursive)
                continue
            with _local_errors(entry.path):
                if not entry.is_file() or not _wanted(entry.name, wanted):
                    continue
                st = entry.stat()
            yield ObjectInfo(uri=join(prefix_uri, key), key=key, size=st.st_size, etag=f"{st.st_size}-{st.st_mtime_ns}")

    def copy(self, src_uri: str, dst_uri: str) -> None:
        """Copy one object (s3->s3 server-side). Raises NotFound, InvalidInput or StorageError."""
        if is_s3(src_uri) and is_s3(dst_uri):
            self.check_allowed(src_uri)
            self.check_allowed(dst_uri)
            (src_bucket, src_key), (dst_bucket, dst_key) = self._object(src_uri), self._object(dst_uri)
            with self._s3_errors("copy", f"{src_uri} (copying to {dst_uri})",
                                 f"s3:GetObject on {src_uri} and s3:PutObject on {dst_uri}"):
                source = {"Bucket": src_bucket, "Key": src_key}
                self.client.copy_object(Bucket=dst_bucket, Key=dst_key, CopySource=source)
            return
        self.write(dst_uri, self.read(src_uri))
