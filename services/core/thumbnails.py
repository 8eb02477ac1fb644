"""Display-size copies of stored photos, cached per process, with loading ahead on a background thread.

The queue asks for the next photo while the inspector looks at the current one, so deciding shows the
next photo without waiting for storage and decoding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from services.core.errors import ConsoleError
from services.core.images import thumbnail_jpeg

Result = tuple[bytes | None, str | None]  # (JPEG, None) or (None, why it cannot be shown)


class ThumbnailCache:
    """An LRU of JPEG thumbnails keyed by (uri, sha256, size); ``prefetch`` fills it off the caller's thread."""

    def __init__(self, *, reader: Callable[[str], bytes], max_entries: int = 2000, workers: int = 2) -> None:
        self._reader = reader
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str | None, int], Result] = OrderedDict()
        self._pending: dict[tuple[str, str | None, int], Future[Result]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thumbnails")

    def _load(self, key: tuple[str, str | None, int]) -> Result:
        uri, _, size = key
        try:
            result: Result = (thumbnail_jpeg(self._reader(uri), size=size), None)
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
