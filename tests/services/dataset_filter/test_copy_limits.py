"""Server-side copies of kept images within their own rate limit: SlowDown slows them, never loses one."""

from __future__ import annotations

import pytest

from services.core.errors import NotFound, StorageError
from services.core.ratelimit import RateLimiter
from services.dataset_filter.outputs import COPY_ATTEMPTS, copy_image


class Store:
    """Records copies; answers SlowDown (as services.core.aws words it) for the first ``slow`` tries."""

    def __init__(self, slow: int = 0, error: Exception | None = None) -> None:
        self.slow, self.error, self.copies, self.writes = slow, error, [], []

    def copy(self, src: str, dst: str) -> None:
        if self.error is not None:
            raise self.error
        if self.slow:
            self.slow -= 1
            raise StorageError("S3 is still throttling after 8 attempts (SlowDown: Please reduce your request rate.)")
        self.copies.append((src, dst))

    def write(self, dst: str, data: bytes) -> None:
        self.writes.append(dst)


def limiter() -> RateLimiter:
    now = [0.0]

    def sleep(seconds: float) -> None:  # fake time: moves only when the limiter waits
        now[0] += seconds

    return RateLimiter(rate=100.0, in_flight=4, clock=lambda: now[0], sleep=sleep)


def test_slow_down_halves_the_copy_rate_and_the_copy_is_made():
    store, lim, sleeps = Store(slow=2), limiter(), []
    copy_image(store, "s3://a/in/x.jpg", "s3://a/out/x.jpg", limiter=lim, sleep=sleeps.append)
    assert store.copies == [("s3://a/in/x.jpg", "s3://a/out/x.jpg")]
    assert lim.throttles == 2 and lim.sent == 3 and len(sleeps) == 2 and lim.rate < 100.0


def test_slow_down_on_every_try_fails_that_copy_with_its_reason():
    store, lim = Store(slow=COPY_ATTEMPTS), limiter()
    with pytest.raises(StorageError, match="SlowDown"):
        copy_image(store, "s3://a/in/x.jpg", "s3://a/out/x.jpg", limiter=lim, sleep=lambda s: None)
    assert store.copies == [] and lim.sent == COPY_ATTEMPTS


def test_other_errors_are_not_retried_and_local_copies_write_the_bytes_read():
    store, lim = Store(error=NotFound("s3://a/in/x.jpg does not exist")), limiter()
    with pytest.raises(NotFound):
        copy_image(store, "s3://a/in/x.jpg", "s3://a/out/x.jpg", limiter=lim, sleep=lambda s: None)
    assert lim.sent == 1 and lim.throttles == 0
    local = Store()
    copy_image(local, "/in/x.jpg", "/out/x.jpg", b"jpeg", limiter=lim)
    assert local.writes == ["/out/x.jpg"] and local.copies == []
