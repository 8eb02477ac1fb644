"""Threads in tests that really overlap: every thread waits at a barrier, then all go at once; every join is
checked, and an exception in a thread fails the test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence


def run_at_once(targets: Sequence[Callable[[], object]], *, timeout: float = 120.0) -> list[object]:
    """Run ``targets`` on one thread each, released together by a barrier (without it, threads started in a
    loop can run one after another and a race never happens). Returns their results in order. Raises the
    first thread's exception, or AssertionError when a thread is still running after ``timeout`` seconds."""
    barrier = threading.Barrier(len(targets))
    results: list[object] = [None] * len(targets)
    errors: list[BaseException] = []

    def run(i: int, target: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout)
            results[i] = target()
        except BaseException as exc:  # noqa: BLE001 (handed to the test below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, t), daemon=True) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {timeout} s: {stuck}"
    if errors:
        raise errors[0]
    return results
