"""Shifts from the settings, including one across midnight."""

from __future__ import annotations

from services.core.shifts import shift_instances, shift_of
from tests.services.lines.test_stats import SHIFTS, D, H


def test_shift_of_including_a_shift_across_midnight():
    assert shift_of(D + 6 * H, SHIFTS) == ("early", D + 6 * H)  # start inclusive
    assert shift_of(D + 14 * H - 0.5, SHIFTS) == ("early", D + 6 * H)  # end exclusive
    assert shift_of(D + 14 * H, SHIFTS) == ("late", D + 14 * H)
    assert shift_of(D + 23 * H, SHIFTS) == ("night", D + 22 * H)
    assert shift_of(D + 3 * H, SHIFTS) == ("night", D - 2 * H)  # after midnight: the night that began yesterday
    assert shift_of(D + 6 * H - 1, SHIFTS) == ("night", D - 2 * H)
    partial = [{"name": "day", "start": "08:30", "end": "12:00"}]
    assert shift_of(D + 13 * H, partial) is None  # not covered by any shift
    assert shift_of(D + 9 * H, partial) == ("day", D + 8.5 * H)
    allday = [{"name": "all", "start": "05:00", "end": "05:00"}]
    assert shift_of(D + 4 * H, allday) == ("all", D - 19 * H)  # a 24-hour shift
    assert shift_of(D + 5 * H, allday) == ("all", D + 5 * H)


def test_shift_instances_overlapping_a_range():
    got = shift_instances(D + 20 * H, D + 24 * H + 7 * H, SHIFTS)
    assert [(r["shift"], r["start_ts"] - D, r["end_ts"] - D) for r in got] == [
        ("late", 14 * H, 22 * H), ("night", 22 * H, 30 * H), ("early", 30 * H, 38 * H)]
