"""A heavy object (a model, a client) made once per process, on first use, however many threads ask for it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """Calls ``factory`` on the first ``get`` and returns that object to every later caller, from any thread. A
    factory that raises is called again by the next ``get`` (a model file put back is then loaded)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The one object. Raises whatever the factory raises."""
        with self._lock:
            if self._value is None:
                self._value = self._factory()
            return self._value
