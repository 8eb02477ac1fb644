"""Requests to a cloud API within the account's quota: a token bucket, a bound on requests in flight, and a
look-ahead that keeps many requests going while results are taken in their original order.

- ``RateLimiter``: ``slot()`` waits for a place among the requests in flight, then for a token (``rate`` a
  second, bursts of at most ``burst``). It is adaptive: ``throttled()`` (the service answered
  ThrottlingException, ProvisionedThroughputExceededException, SlowDown...) halves the rate, down to a floor;
  the rate then climbs back slowly (``recovery``: a share of the configured rate regained per second without
  a throttle). A throttle is never an error here: the caller retries the request through the limiter.
- ``Lookahead``: runs ``fn(item)`` on its own threads for the items given (in order), with at most ``window``
  items started and not yet released by the consumer. ``take(item)`` returns an item's result in order;
  ``stop()`` ends the starting of new items and says how many were started past the stop point, so a job
  that stops early wastes at most ``window - 1`` requests.

The clock and the sleep are injected: tests advance a fake clock and never sleep.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from services.core.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")

THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "ProvisionedThroughputExceeded", "TooManyRequestsException",
    "SlowDown", "LimitExceededException",
})


class RateLimiter:
    """A token bucket (``rate`` requests a second, ``burst`` at once) and at most ``in_flight`` requests at a
    time, adaptive to throttling. Thread-safe."""

    def __init__(self, *, rate: float, in_flight: int, burst: float | None = None, min_rate: float | None = None,
                 recovery: float = 0.1, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``rate``: requests a second (the account's quota); ``in_flight``: requests at once; ``burst``: tokens
        the bucket holds (default 1: requests evenly spaced, so a service's own bucket never sees a spike);
        ``min_rate``: the floor throttling halves to (default rate / 16); ``recovery``: share of ``rate``
        regained per second without a throttle; ``cooldown``: seconds after a halving during which further
        throttles (answers to requests sent at the old rate) do not halve it again. Raises InvalidInput for a rate or in-flight bound below its
        minimum."""
        if not rate > 0 or in_flight < 1 or recovery < 0:
            raise InvalidInput(f"a rate limit needs a rate above 0 and at least 1 request in flight, got "
                               f"rate={rate!r}, in_flight={in_flight!r}")
        self.max_rate = float(rate)
        self.in_flight = int(in_flight)
        self.burst = float(burst) if burst is not None else 1.0
        self.min_rate = float(min_rate) if min_rate is not None else max(self.max_rate / 16, 0.01)
        self.recovery = float(recovery)
        self.cooldown = float(cooldown)
        self._last_cut: float | None = None
        self.clock, self.sleep = clock, sleep
        self._rate = self.max_rate
        self._tokens = self.burst
        self._stamp = clock()
        self._busy = 0
        self._cond = threading.Condition()
        self.sent = 0  # requests let through
        self.throttles = 0  # throttled answers reported
        self.peak_in_flight = 0

    @property
    def rate(self) -> float:
        """The current rate (below ``max_rate`` after a throttle, until it recovers)."""
        with self._cond:
            self._refill(self.clock())
            return self._rate

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last look, and the rate regained (caller holds the lock)."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self._rate)
        if self._rate < self.max_rate:
            self._rate = min(self.max_rate, self._rate + elapsed * self.recovery * self.max_rate)

    def acquire(self) -> None:
        """Wait for a place among the requests in flight, then for a token. Raises nothing."""
        with self._cond:
            while self._busy >= self.in_flight:
                self._cond.wait()
            self._busy += 1
            self.peak_in_flight = max(self.peak_in_flight, self._busy)
        try:
            self._take_token()
        except BaseException:
            self.release()
            raise

    def _take_token(self) -> None:
        while True:
            with self._cond:
                self._refill(self.clock())
                if self._tokens >= 1.0 - 1e-9:  # rounding: a wait of (1 - tokens) / rate earns a whole token
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self.sent += 1
                    return
                wait = (1.0 - self._tokens) / self._rate
            self.sleep(wait)

    def release(self) -> None:
        """Free the place of a request that has its answer."""
        with self._cond:
            self._busy = max(0, self._busy - 1)
            self._cond.notify()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """``with limiter.slot(): send()``: one request within the rate and the in-flight bound."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def throttled(self) -> None:
        """The service said slow down: halve the rate (not below ``min_rate``; once per ``cooldown``, as the
        requests already in flight were sent at the old rate) and empty the bucket."""
        with self._cond:
            now = self.clock()
            self._refill(now)
            self.throttles += 1
            self._tokens = min(self._tokens, 0.0)
            if self._last_cut is not None and now - self._last_cut < self.cooldown:
                return
            self._last_cut = now
            self._rate = max(self.min_rate, self._rate / 2)

    def stats(self) -> dict[str, Any]:
        """{"rate_limit", "in_flight", "current_rate", "sent", "throttles", "peak_in_flight"}."""
        return {"rate_limit": self.max_rate, "in_flight": self.in_flight, "current_rate": round(self.rate, 3),
                "sent": self.sent, "throttles": self.throttles, "peak_in_flight": self.peak_in_flight}


def is_throttle(code: str) -> bool:
    """Whether an AWS error code means "too many requests" (answered by slowing down, not by failing)."""
    return code in THROTTLE_CODES


class Lookahead(Generic[T, R]):
    """``fn(item)`` for items in their given order on ``window`` threads, at most ``window`` items started and
    not yet released; results are taken in order. An exception ``fn`` raises comes back from ``take``."""

    def __init__(self, fn: Callable[[T], R], *, window: int, name: str = "lookahead") -> None:
        """Raises InvalidInput for a window below 1."""
        if window < 1:
            raise InvalidInput(f"a look-ahead window must be at least 1, got {window!r}")
        self.fn, self.window = fn, int(window)
        self._places = threading.Semaphore(self.window)
        self._cond = threading.Condition()
        self._queue: deque[T] = deque()
        self._queued: set[T] = set()
        self._futures: dict[T, Future[R]] = {}
        self._started: set[T] = set()  # started and not taken yet: at most the window
        self._stopped = False
        self.stopped = threading.Event()  # set by stop(): work under way may check it before sending anything
        self._pool = ThreadPoolExecutor(self.window, thread_name_prefix=f"{name}-call")
        self._dispatcher = threading.Thread(target=self._dispatch, name=f"{name}-dispatch", daemon=True)
        self._dispatcher.start()

    def submit(self, items: Iterable[T]) -> None:
        """Queue items (after those queued before); ignored once stopped."""
        with self._cond:
            if not self._stopped:
                for item in items:
                    if item not in self._queued and item not in self._started:
                        self._queue.append(item)
                        self._queued.add(item)
                self._cond.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
            self._places.acquire()  # a place in the window: freed by release() once the consumer is done
            with self._cond:
                if self._stopped or not self._queue:
                    self._places.release()
                    if self._stopped:
                        return
                    continue
                item = self._queue.popleft()
                self._queued.discard(item)
                self._started.add(item)
                self._futures[item] = self._pool.submit(self.fn, item)
                self._cond.notify_all()

    def take(self, item: T) -> R:
        """The result of ``item`` (waits for it); re-raises what ``fn`` raised. Call ``release()`` once the
        result is used (after ``stop()`` when it makes the consumer stop). Raises InvalidInput when ``item``
        was never submitted or the look-ahead stopped before starting it."""
        with self._cond:
            while item not in self._futures:
                if self._stopped or (item not in self._queued and item not in self._started):
                    raise InvalidInput(f"{item!r} was not started")
                self._cond.wait()
            future = self._futures.pop(item)
            self._started.discard(item)
        return future.result()

    def release(self) -> None:
        """Free one place in the window (the consumer is done with a taken result)."""
        self._places.release()

    def stop(self) -> int:
        """Start nothing more; returns how many items were started and never taken (wasted past the stop)."""
        with self._cond:
            self._stopped = True
            self.stopped.set()
            self._queue.clear()
            self._queued.clear()
            self._cond.notify_all()
            wasted = len(self._started)
        self._places.release()  # wakes the dispatcher if it waits for a place
        return wasted

    def close(self, *, wait: bool = False) -> None:
        """Stop, and let the calls under way finish on their threads (their results are dropped); ``wait``:
        until they have."""
        self.stop()
        self._pool.shutdown(wait=wait, cancel_futures=True)


_SHARED: dict[tuple[str, float, int], RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared(name: str, *, rate: float, in_flight: int) -> RateLimiter:
    """The one limiter of this process for ``name`` (an API and account, e.g. "rekognition:eu-west-1") at these
    settings, so that jobs running side by side share the quota instead of each taking all of it. Raises
    InvalidInput like ``RateLimiter``."""
    key = (name, float(rate), int(in_flight))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = RateLimiter(rate=rate, in_flight=in_flight)
        return _SHARED[key]
