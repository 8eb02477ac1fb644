"""Display-size copies of stored photos, cached per process and on disk, with loading ahead on a background thread.

The queue asks for the next photo while the inspector looks at the current one, so deciding shows the
next photo without waiting for storage and decoding. With a ``cache_dir``, each JPEG is also kept on disk by
content (sha256) and size, so another server process, or this one after a restart, reads it instead of
decoding and encoding the photo again.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from services.core.errors import ConsoleError
from services.core.images import thumbnail_jpeg

Result = tuple[bytes | None, str | None]  # (JPEG, None) or (None, why it cannot be shown)


class ThumbnailCache:
    """An LRU of JPEG thumbnails keyed by (uri, sha256, size); ``prefetch`` fills it off the caller's thread."""

    def __init__(self, *, reader: Callable[[str], bytes], max_entries: int = 2000, workers: int = 2,
                 cache_dir: str | Path | None = None) -> None:
        self._reader = reader
        self._dir = Path(cache_dir) if cache_dir is not None else None
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str | None, int], Result] = OrderedDict()
        self._pending: dict[tuple[str, str | None, int], Future[Result]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thumbnails")

    def disk_path(self, sha256: str | None, size: int) -> Path | None:
        """Where the JPEG of this content at this size is kept on disk (None without a cache folder or a sha256)."""
        if self._dir is None or not sha256 or not re.fullmatch(r"[0-9a-fA-F]{16,128}", sha256):
            return None
        return self._dir / sha256[:2] / f"{sha256}_{int(size)}.jpg"

    def _from_disk(self, path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes() or None
        except OSError:
            return None

    def _to_disk(self, path: Path | None, data: bytes) -> None:
        """Keep ``data`` at ``path`` (written whole, then renamed: readers never see half a file); a folder that
        cannot be written only costs the next reader an encode."""
        if path is None:
            return
        tmp = None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _load(self, key: tuple[str, str | None, int]) -> Result:
        uri, sha256, size = key
        path = self.disk_path(sha256, size)
        data = self._from_disk(path)
        try:
            if data is None:
                data = thumbnail_jpeg(self._reader(uri), size=size)
                self._to_disk(path, data)
            result: Result = (data, None)
        except ConsoleError as exc:
            result = (None, str(exc))
        with self._lock:
            self._pending.pop(key, None)
            if result[0] is not None:  # failures are not cached: the next look retries
                self._items[key] = result
                self._items.move_to_end(key)
                while len(self._items) > self._max:
                    self._items.popitem(last=False)
        return result

    def get(self, uri: str, sha256: str | None, size: int) -> Result:
        """The thumbnail, loading it now unless it is cached or already loading."""
        key = (uri, sha256, int(size))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            pending = self._pending.get(key)
        if pending is not None:
            return pending.result()
        return self._load(key)

    def prefetch(self, uri: str, sha256: str | None, size: int) -> None:
        """Start loading a thumbnail in the background (no-op when cached or loading)."""
        key = (uri, sha256, int(size))
        with self._lock:
            if key in self._items or key in self._pending:
                return
            self._pending[key] = self._pool.submit(self._load, key)

    def wait(self) -> None:
        """Block until every background load started so far has finished."""
        with self._lock:
            pending = list(self._pending.values())
        for future in pending:
            future.result()

    def cached(self, uri: str, sha256: str | None, size: int) -> bool:
        with self._lock:
            return (uri, sha256, int(size)) in self._items
