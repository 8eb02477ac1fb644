"""services.core.ratelimit: the token bucket on a fake clock (no test sleeps), the in-flight bound, adaptive
slowing on throttles, and the ordered look-ahead with its bounded waste past a stop."""

from __future__ import annotations

import threading

import pytest

from services.core.errors import InvalidInput
from services.core.ratelimit import Lookahead, RateLimiter, is_throttle


class FakeClock:
    """Time that moves only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, **kw) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **kw)


def test_token_bucket_spaces_requests_at_the_rate():
    clock = FakeClock()
    lim = limiter(clock, rate=10.0, in_flight=4, burst=1.0)
    for _ in range(21):
        with lim.slot():
            pass
    # one token at once, then one every 0.1 s: 20 more take 2 seconds of (fake) time
    assert clock.now - 100.0 == pytest.approx(2.0)
    assert lim.sent == 21 and lim.throttles == 0


def test_a_burst_goes_at_once_then_the_rate_holds():
    clock = FakeClock()
    lim = limiter(clock, rate=50.0, in_flight=8, burst=5.0)
    for _ in range(5):
        lim.acquire()
        lim.release()
    assert clock.sleeps == []
    lim.acquire()
    assert clock.sleeps == [pytest.approx(0.02)]


def test_throttle_halves_the_rate_and_it_recovers_slowly():
    clock = FakeClock()
    lim = limiter(clock, rate=40.0, in_flight=4, recovery=0.05, cooldown=0.5)
    lim.throttled()
    assert lim.rate == pytest.approx(20.0) and lim.throttles == 1
    lim.throttled()  # an answer to a request sent at the old rate: counted, not halved again
    assert lim.rate == pytest.approx(20.0) and lim.throttles == 2
    clock.now += 0.5
    lim.throttled()
    assert lim.rate == pytest.approx(10.5)  # (20 + 0.5 s of recovery) / 2
    clock.now += 1.0
    assert lim.rate == pytest.approx(12.5)  # 5% of 40 a second
    clock.now += 100.0
    assert lim.rate == pytest.approx(40.0)  # never above the configured rate
    for _ in range(20):
        clock.now += 0.5
        lim.throttled()
    assert lim.rate == pytest.approx(40.0 / 16, abs=0.1)  # the floor (plus half a second's recovery)


def test_after_a_throttle_the_next_request_waits_at_the_lower_rate():
    clock = FakeClock()
    lim = limiter(clock, rate=20.0, in_flight=2, burst=4.0, recovery=0.0)
    lim.throttled()  # 10 a second, bucket emptied
    with lim.slot():
        pass
    assert clock.sleeps == [pytest.approx(0.1)]


def test_bad_settings_are_refused():
    with pytest.raises(InvalidInput, match="rate above 0"):
        RateLimiter(rate=0, in_flight=1)
    with pytest.raises(InvalidInput, match="at least 1 request in flight"):
        RateLimiter(rate=5, in_flight=0)


def test_throttle_codes():
    for code in ("ThrottlingException", "ProvisionedThroughputExceededException", "SlowDown"):
        assert is_throttle(code)
    assert not is_throttle("AccessDeniedException") and not is_throttle("InvalidImageFormatException")


def test_in_flight_bound_holds_under_many_threads():
    lim = RateLimiter(rate=1e9, in_flight=3, burst=1e9)
    gate = threading.Event()
    holding = threading.Semaphore(0)
    fourth_in = threading.Event()

    def worker(i: int) -> None:
        with lim.slot():
            if i == 3:
                fourth_in.set()
            holding.release()
            gate.wait(10)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert holding.acquire(timeout=10)
    late = threading.Thread(target=worker, args=(3,))
    late.start()
    assert not fourth_in.wait(0.2)  # a fourth request waits for a place
    gate.set()
    for t in [*threads, late]:
        t.join(10)
    assert fourth_in.is_set() and lim.peak_in_flight == 3 and lim.sent == 4


# ---------------------------------------------------------------- Lookahead


def test_lookahead_gives_results_in_order_whatever_order_they_finish_in():
    release = {i: threading.Event() for i in range(6)}

    def fn(i: int) -> int:
        release[i].wait(10)
        if i == 4:
            raise ValueError("item 4 failed")
        return i * 10

    la: Lookahead[int, int] = Lookahead(fn, window=6)
    la.submit(range(6))
    for i in reversed(range(6)):  # finish last first
        release[i].set()
    got = []
    for i in range(6):
        try:
            got.append(la.take(i))
        except ValueError as exc:
            got.append(str(exc))
        la.release()
    la.close()
    assert got == [0, 10, 20, 30, "item 4 failed", 50]


def test_lookahead_starts_at_most_window_items_ahead_and_counts_the_waste_of_a_stop():
    started: list[int] = []
    lock = threading.Lock()
    all_started = threading.Semaphore(0)

    def fn(i: int) -> int:
        with lock:
            started.append(i)
        all_started.release()
        return i

    la: Lookahead[int, int] = Lookahead(fn, window=4)
    la.submit(range(100))
    for _ in range(4):
        assert all_started.acquire(timeout=10)
    assert not all_started.acquire(timeout=0.2)  # nothing past the window while nothing is taken
    assert sorted(started) == [0, 1, 2, 3]
    assert la.take(0) == 0 and la.take(1) == 1
    wasted = la.stop()  # the consumer stops at item 1, before releasing its places
    la.release()
    la.release()
    assert wasted == 2  # items 2 and 3 were started past the stop: at most window - 1 ... here 2
    assert sorted(started) == [0, 1, 2, 3]  # and nothing more starts
    with pytest.raises(InvalidInput, match="not started"):
        la.take(10)
    la.close()


def test_lookahead_refuses_an_item_never_submitted():
    la: Lookahead[int, int] = Lookahead(lambda i: i, window=2)
    with pytest.raises(InvalidInput):
        la.take(7)
    la.close()
    with pytest.raises(InvalidInput):
        Lookahead(lambda i: i, window=0)


def test_rate_and_in_flight_settings_are_validated():
    from services.core.settings import DEFAULTS, clean_setting

    assert DEFAULTS["rekognition_requests_per_second"] == 50.0 and DEFAULTS["rekognition_in_flight"] == 16
    assert clean_setting("rekognition_requests_per_second", 5) == 5.0
    assert clean_setting("s3_copy_in_flight", 32) == 32
    assert clean_setting("rekognition_video_jobs", 20) == 20
    for key, bad in (("rekognition_requests_per_second", 0), ("rekognition_requests_per_second", True),
                     ("s3_copy_requests_per_second", "fast"), ("rekognition_in_flight", 0),
                     ("rekognition_in_flight", 1.5), ("rekognition_video_jobs", 101)):
        with pytest.raises(InvalidInput, match=key.replace("_", " ")):
            clean_setting(key, bad)
