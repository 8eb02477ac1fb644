"""Once: one object per process whatever the threads, and a factory that failed is tried again."""

from __future__ import annotations

import threading

import pytest

from services.core.once import Once


def test_many_threads_get_one_object_made_once():
    made = []
    gate = threading.Barrier(8)

    def factory() -> object:
        made.append(object())
        return made[-1]

    once = Once(factory)
    got = []

    def ask() -> None:
        gate.wait()
        got.append(once.get())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(got) == 8 and all(g is made[0] for g in got)


def test_a_factory_that_raised_is_called_again():
    calls = []

    def factory() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("model file missing")
        return "model"

    once = Once(factory)
    with pytest.raises(OSError, match="missing"):
        once.get()
    assert once.get() == "model" and once.get() == "model" and len(calls) == 2
