"""Line dashboard figures: tables seeded directly, every number hand-computed (helpers shared with the
shift, target and alert tests)."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime

import pytest

from services.core.config import set_setting
from services.core.errors import InvalidInput
from services.core.shifts import shift_of
from services.lines.stats import choose_bucket_minutes, dashboard_data, export_csv
from services.lines.targets import set_target

D = datetime(2024, 3, 10, tzinfo=UTC).timestamp()  # a UTC midnight
H, M = 3600.0, 60.0
SHIFTS = [{"name": "early", "start": "06:00", "end": "14:00"}, {"name": "late", "start": "14:00", "end": "22:00"},
          {"name": "night", "start": "22:00", "end": "06:00"}]  # the default setting


def add_line(db, line_id: str, *, last_frame_ts: float | None = None, name: str | None = None) -> None:
    db.execute("INSERT INTO lines (id, name, created_at, last_frame_ts) VALUES (?, ?, '2024-03-10', ?)",
               [line_id, name or f"Line {line_id}", last_frame_ts])


def add_bin(db, line_id: str, end_ts: float, trays: int, *, start_ts: float | None = None) -> None:
    db.execute("INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at) "
               "VALUES (?, ?, ?, ?, 'drop', '')", [line_id, start_ts if start_ts is not None else end_ts - 600, end_ts,
                                                   trays])


def add_minute(db, line_id: str, ts: float, mean: float, *, frames: int = 1800) -> None:
    db.execute("INSERT INTO line_minutes (line_id, minute, frames, mean_count, max_count, trays_binned) "
               "VALUES (?, ?, ?, ?, ?, 0)", [line_id, int(ts // 60), frames, mean, math.ceil(mean)])


def observe(db, line_id: str, t0: float, t1: float) -> None:
    """A minute roll-up for every minute in [t0, t1): the line's feed was seen then (frames arrived)."""
    db.conn.executemany("INSERT OR IGNORE INTO line_minutes (line_id, minute, frames, mean_count, max_count, "
                        "trays_binned) VALUES (?, ?, 60, 1.0, 1, 0)",
                        [(line_id, m) for m in range(math.floor(t0 / 60), math.ceil(t1 / 60))])


def line_of(data: dict, line_id: str) -> dict:
    return next(ln for ln in data["lines"] if ln["line_id"] == line_id)


# ----------------------------------------------------------------------------------------------- shifts


def test_bucket_choice_gives_a_few_hundred_points_at_most():
    assert choose_bucket_minutes(H) == 5
    assert choose_bucket_minutes(8 * H) == 5
    assert choose_bucket_minutes(24 * H) == 10
    assert choose_bucket_minutes(7 * 24 * H) == 60
    assert choose_bucket_minutes(30 * 24 * H) == 180  # 240 points per line


# ---------------------------------------------------------------------------------------------- targets


def seed_midnight(db) -> None:
    """Line A: bins around the night shift of D (22:00) to D+1 (06:00); targets night 8/h, early 10/h."""
    add_line(db, "A", last_frame_ts=D + 31 * H)
    observe(db, "A", D + 18 * H, D + 32 * H)  # the feed was seen throughout
    add_bin(db, "A", D + 19 * H, 100)  # before the range
    add_bin(db, "A", D + 21 * H, 10)  # late shift of D, day D
    add_bin(db, "A", D + 23 * H, 20)  # night shift of D, day D
    add_bin(db, "A", D + 25 * H, 30)  # night shift of D (after midnight), day D+1
    add_bin(db, "A", D + 30 * H - 1, 5)  # night shift of D, its last second
    add_bin(db, "A", D + 31 * H, 7)  # early shift of D+1
    add_bin(db, "A", D + 32 * H, 99, start_ts=D + 32 * H)  # at the end of the range: excluded
    set_target(db, line_id="A", shift="night", trays_per_hour=8, actor="ops")
    set_target(db, line_id="A", shift="early", trays_per_hour=10, actor="ops")


def test_totals_per_shift_and_day_across_midnight(db):
    seed_midnight(db)
    data = dashboard_data(db, actor="ops:test", since_ts=D + 20 * H, until_ts=D + 32 * H, now_ts=D + 32 * H)
    a = line_of(data, "A")
    assert (a["bins"], a["trays"]) == (5, 72)
    rows = [(r["shift"], r["start_ts"] - D, r["bins"], r["trays"], r["target_per_hour"], r["expected"])
            for r in a["shifts"]]
    assert rows == [("late", 14 * H, 1, 10, None, None), ("night", 22 * H, 3, 55, 8.0, 64.0),
                    ("early", 30 * H, 1, 7, 10.0, 20.0)]  # early: 06:00-08:00 is in range
    pct = {r["shift"]: r["vs_target_pct"] for r in a["shifts"]}
    assert pct["late"] is None
    assert pct["night"] == pytest.approx((55 - 64) / 64 * 100)  # -14.06 %
    assert pct["early"] == pytest.approx((7 - 20) / 20 * 100)  # -65 %
    assert [r["trays_placed"] for r in a["shifts"]] == [10, 55, 7]  # no bin straddles a shift change
    assert a["expected"] == 84.0 and a["vs_target_pct"] == pytest.approx((62 - 84) / 84 * 100)
    assert [(r["day"], r["bins"], r["trays"]) for r in a["days"]] == [("2024-03-10", 2, 30), ("2024-03-11", 3, 42)]
    assert [(s["shift"], s["start_ts"] - D, s["end_ts"] - D, s["trays_per_hour"]) for s in a["targets"]] == [
        ("night", 22 * H, 30 * H, 8.0), ("early", 30 * H, 32 * H, 10.0)]  # clipped to the range

    # now inside the early shift: only the hour before now is expected of it
    data = dashboard_data(db, actor="ops:test", since_ts=D + 20 * H, until_ts=D + 32 * H, now_ts=D + 31 * H + 1)
    early = line_of(data, "A")["shifts"][-1]
    assert early["current"] and early["expected"] == pytest.approx(10 * (H + 1) / H, abs=0.005)
    assert [r["current"] for r in line_of(data, "A")["shifts"]] == [False, False, True]


def test_shift_totals_in_sql_match_shift_of_for_odd_shifts(db):
    shifts = [{"name": "n", "start": "21:30", "end": "05:15"}, {"name": "d", "start": "07:00", "end": "19:45"}]
    set_setting(db, key="shifts", value=shifts, actor="admin")  # 05:15-07:00 and 19:45-21:30 are off shift
    add_line(db, "A")
    rng = random.Random(7)
    ends = sorted({D + rng.randrange(0, 3 * 86400) + rng.random() for _ in range(400)})
    expected: dict[tuple, list[int]] = {}
    for n, end in enumerate(ends):
        add_bin(db, "A", end, n % 9 + 1)
        key = shift_of(end, shifts) or (None, None)
        expected.setdefault(key, [0, 0])
        expected[key][0] += 1
        expected[key][1] += n % 9 + 1
    data = dashboard_data(db, actor="ops:test", since_ts=D, until_ts=D + 3 * 86400, now_ts=D + 3 * 86400)
    got = {(r["shift"], r["start_ts"]): [r["bins"], r["trays"]] for r in line_of(data, "A")["shifts"] if r["bins"]}
    assert got == expected
    assert sum(r["trays"] for r in line_of(data, "A")["days"]) == sum(n % 9 + 1 for n in range(len(ends)))


def set_open_bin(db, line_id: str, *, start_ts: float, trays: int, counted_to_ts: float) -> None:
    from services.lines.counter import LineState

    state = LineState(bin_start_ts=start_ts, bin_max=trays, last_ts=counted_to_ts).to_json()
    db.execute("INSERT INTO line_state (line_id, state, counted_to_ts, updated_at) VALUES (?, ?, ?, '') "
               "ON CONFLICT(line_id) DO UPDATE SET state = excluded.state, counted_to_ts = excluded.counted_to_ts",
               [line_id, state, counted_to_ts])


def test_rate_series_spreads_bins_over_their_life(db):
    """Two 20-tray bins of 20 minutes each, then a bin filling for 20 minutes (19 trays); no data after."""
    t0 = D + 8 * H
    add_line(db, "B", last_frame_ts=t0 + 60 * M)
    for i in range(60):
        add_minute(db, "B", t0 + i * M, float(i % 20))
    add_bin(db, "B", t0 + 20 * M, 20, start_ts=t0)
    add_bin(db, "B", t0 + 40 * M, 20, start_ts=t0 + 20 * M)
    set_open_bin(db, "B", start_ts=t0 + 40 * M, trays=19, counted_to_ts=t0 + 60 * M)
    data = dashboard_data(db, actor="ops:test", since_ts=t0, until_ts=t0 + 75 * M, now_ts=t0 + 75 * M, bucket_minutes=15)
    b = line_of(data, "B")
    # placed per 15 minutes: 15 | 5 + 10 | 10 + 19/4 | 19 * 3/4 | nothing (and no data)
    assert [(s["start_ts"] - t0, s["bins"], s["trays_binned"], s["trays_placed"], s["trays_per_hour"])
            for s in b["series"]] == [
        (0, 0, 0, 15.0, 60.0), (15 * M, 1, 20, 15.0, 60.0), (30 * M, 1, 20, 14.75, 59.0), (45 * M, 0, 0, 14.25, 57.0),
        (60 * M, 0, 0, 0.0, None)]  # no minute roll-ups: no data, not zero
    assert [s["minutes_observed"] for s in b["series"]] == [15, 15, 15, 15, 0]
    assert data["bucket_minutes"] == 15
    assert (b["trays"], b["days"][0]["trays"], b["days"][0]["trays_placed"]) == (40, 40, 59.0)  # + the open bin
    assert b["open_bin"] == {"start_ts": t0 + 40 * M, "trays": 19} and b["typical_bin_trays"] == 20.0
    # the trailing 20 minutes before now (t0+55 .. t0+75): the open bin's last 5 of 20 minutes
    assert b["now"]["rate_per_hour"] == pytest.approx(19 / 4 * 3)
    assert b["now"]["shift"] == "early" and b["now"]["target_per_hour"] is None


def test_a_bin_straddling_a_shift_change_is_shared_in_placed_trays(db):
    add_line(db, "A")
    observe(db, "A", D + 13 * H, D + 15 * H)
    add_bin(db, "A", D + 14 * H + 15 * M, 40, start_ts=D + 13 * H + 45 * M)  # half early, half late
    set_target(db, line_id="A", shift="early", trays_per_hour=10, actor="ops")
    set_target(db, line_id="A", shift="late", trays_per_hour=10, actor="ops")
    data = dashboard_data(db, actor="ops:test", since_ts=D + 13 * H, until_ts=D + 15 * H, now_ts=D + 15 * H)
    rows = [(r["shift"], r["bins"], r["trays"], r["trays_placed"], r["expected"], r["vs_target_pct"])
            for r in line_of(data, "A")["shifts"]]
    assert rows == [("early", 0, 0, 20.0, 10.0, 100.0), ("late", 1, 40, 20.0, 10.0, 100.0)]


def test_a_long_bin_is_spread_too(db):
    """A line stopped overnight with a bin half full: its trays spread over the night (longer than LONG_BIN_S)."""
    add_line(db, "A")
    add_bin(db, "A", D + 30 * H, 16, start_ts=D + 22 * H)
    data = dashboard_data(db, actor="ops:test", since_ts=D + 20 * H, until_ts=D + 32 * H, now_ts=D + 32 * H, bucket_minutes=120)
    a = line_of(data, "A")
    assert [s["trays_placed"] for s in a["series"]] == [0.0, 4.0, 4.0, 4.0, 4.0, 0.0]
    assert [(d["day"], d["trays"], d["trays_placed"]) for d in a["days"]] == [("2024-03-10", 0, 4.0),
                                                                                ("2024-03-11", 16, 12.0)]


def test_automatic_bucket_and_clipping_to_now(db):
    add_line(db, "A", last_frame_ts=D)
    data = dashboard_data(db, actor="ops:test", since_ts=D - 30 * 86400, until_ts=D, now_ts=D)
    assert data["bucket_minutes"] == 180 and len(line_of(data, "A")["series"]) == 240
    data = dashboard_data(db, actor="ops:test", since_ts=D, until_ts=D + 86400, now_ts=D + 2 * H)  # a day, two hours of it gone
    series = line_of(data, "A")["series"]
    assert data["bucket_minutes"] == 10 and len(series) == 12 and series[-1]["end_ts"] == D + 2 * H
    add_bin(db, "A", D + 2 * M, 9)  # in the first whole bucket, before the range
    add_bin(db, "A", D + 12 * M, 4)
    data = dashboard_data(db, actor="ops:test", since_ts=D + 7 * M, until_ts=D + H, now_ts=D + H, bucket_minutes=15)
    a = line_of(data, "A")
    assert [(s["start_ts"] - D, s["end_ts"] - D, s["trays_binned"]) for s in a["series"]] == [
        (0, 15 * M, 13), (15 * M, 30 * M, 0), (30 * M, 45 * M, 0), (45 * M, H, 0)]  # whole buckets for the chart
    assert a["trays"] == 4 and a["days"][0]["trays"] == 4  # totals keep to the range


def test_silent_feeds_open_bin_and_line_filter(db):
    from services.lines.counter import LineState

    now = D + 10 * H
    add_line(db, "A", last_frame_ts=now - 10)
    add_line(db, "B", last_frame_ts=now - 500)  # longer than line_silent_seconds (120)
    add_line(db, "C")  # never sent a frame
    db.execute("INSERT INTO line_state (line_id, state, counted_to_ts, updated_at) VALUES ('A', ?, ?, '')",
               [LineState(bin_start_ts=now - 300, bin_max=7, last_ts=now - 10).to_json(), now - 10])
    db.execute("INSERT INTO line_state (line_id, state, counted_to_ts, updated_at) VALUES ('B', 'garbage', 0, '')")
    data = dashboard_data(db, actor="ops:test", since_ts=now - H, until_ts=now, now_ts=now)
    assert data["silent"] == ["B", "C"]
    a, b, c = (line_of(data, x) for x in "ABC")
    assert (a["silent"], a["silent_for_s"]) == (False, 10.0)
    assert (b["silent"], b["silent_for_s"], c["silent_for_s"]) == (True, 500.0, None)
    assert a["open_bin"] == {"start_ts": now - 300, "trays": 7}
    assert b["open_bin"] is None and c["open_bin"] is None  # an unreadable state shows nothing
    set_setting(db, key="line_silent_seconds", value=600, actor="admin")
    assert dashboard_data(db, actor="ops:test", since_ts=now - H, until_ts=now, now_ts=now)["silent"] == ["C"]
    only = dashboard_data(db, actor="ops:test", since_ts=now - H, until_ts=now, now_ts=now, line_ids=["B"])
    assert [ln["line_id"] for ln in only["lines"]] == ["B"]


def test_bad_ranges(db):
    with pytest.raises(InvalidInput, match="empty"):
        dashboard_data(db, actor="ops:test", since_ts=D, until_ts=D)
    with pytest.raises(InvalidInput, match="at least one minute"):
        dashboard_data(db, actor="ops:test", since_ts=D, until_ts=D + H, bucket_minutes=0)
    assert dashboard_data(db, actor="ops:test", since_ts=D, until_ts=D + H, now_ts=D + H)["lines"] == []


def test_export_csv_rows_per_bucket_shift_and_day(db):
    seed_midnight(db)
    text = export_csv(db, actor="ops:test", since_ts=D + 20 * H, until_ts=D + 32 * H, now_ts=D + 32 * H)
    rows = list(csv.DictReader(io.StringIO(text)))
    kinds = [r["period"] for r in rows]
    assert kinds.count("bucket") == 12 * 60 // 5 and kinds.count("shift") == 3 and kinds.count("day") == 2
    night = next(r for r in rows if r["period"] == "shift" and r["shift"] == "night")
    assert night["line_id"] == "A" and night["line_name"] == "Line A"
    assert (night["start_utc"], night["end_utc"]) == ("2024-03-10T22:00:00Z", "2024-03-11T06:00:00Z")
    assert (night["bins"], night["trays"], night["expected"], night["vs_target_pct"]) == ("3", "55", "64.0", "-14.06")
    days = [(r["start_utc"], r["trays"]) for r in rows if r["period"] == "day"]
    assert days == [("2024-03-10", "30"), ("2024-03-11", "42")]
    assert sum(int(r["trays"]) for r in rows if r["period"] == "bucket") == 72


# ------------------------------------------------------------------------------------------ a week long


def seed_week(db) -> float:
    """Line A, first seen at 04:00 on day 7 (in the night shift of day 6), now 10:00 on day 7: the night shift
    seen for 2 hours (one 16-tray bin), the early shift for 3 of its 4 hours (no frame 07:00-08:00; bins of
    10 and 20 trays). Targets: early 10/h, late 12/h, night 8/h, so each seen shift is exactly on target."""
    day7 = D + 7 * 86400
    add_line(db, "A", last_frame_ts=day7 + 10 * H)
    observe(db, "A", day7 + 4 * H, day7 + 7 * H)
    observe(db, "A", day7 + 8 * H, day7 + 10 * H)
    add_bin(db, "A", day7 + 6 * H, 16, start_ts=day7 + 4 * H)
    add_bin(db, "A", day7 + 7 * H, 10, start_ts=day7 + 6 * H)
    add_bin(db, "A", day7 + 10 * H, 20, start_ts=day7 + 8 * H)
    for shift, rate in (("early", 10), ("late", 12), ("night", 8)):
        set_target(db, line_id="A", shift=shift, trays_per_hour=rate, actor="ops")
    return day7 + 10 * H


def test_shift_rows_over_a_week_compare_each_shift_over_the_hours_the_line_was_seen(db):
    """Issue 18: in "Last 7 days" every shift row showed -100 %: the shifts before the counter had ever seen the
    line were held to their full target. A shift is compared over the hours its feed was seen."""
    now = seed_week(db)
    a = line_of(dashboard_data(db, actor="ops:test", since_ts=now - 7 * 86400, until_ts=now, now_ts=now), "A")
    assert [r["vs_target_pct"] for r in a["shifts"][:-2]] == [None] * 20  # was -100 % for each early shift
    rows = [(r["shift"], r["hours_observed"], r["expected"], r["vs_target_pct"]) for r in a["shifts"]]
    assert len(rows) == 22 and rows[:-2] == [(r[0], 0.0, None, None) for r in rows[:-2]]  # never seen: no verdict
    assert rows[-2:] == [("night", 2.0, 16.0, 0.0), ("early", 3.0, 30.0, 0.0)]
    assert (a["expected"], a["trays_placed_targeted"], a["vs_target_pct"]) == (46.0, 46.0, 0.0)
    assert a["shifts"][-1]["trays_placed"] == 30.0 and a["shifts"][-1]["current"]

    # the same shift over a shorter range: clipped to the range, still over the hours seen in it
    a = line_of(dashboard_data(db, actor="ops:test", since_ts=now - H, until_ts=now, now_ts=now), "A")
    assert [(r["shift"], r["hours_observed"], r["expected"], r["vs_target_pct"]) for r in a["shifts"]] == [
        ("early", 1.0, 10.0, 0.0)]

    # a shift seen but without a single tray is under target, not "no data"
    db.execute("DELETE FROM line_bins")
    a = line_of(dashboard_data(db, actor="ops:test", since_ts=now - 7 * 86400, until_ts=now, now_ts=now), "A")
    assert [r["vs_target_pct"] for r in a["shifts"][-2:]] == [-100.0, -100.0]
    assert a["shifts"][0]["vs_target_pct"] is None


def test_partial_minutes_at_the_edges_count_only_their_share(db):
    add_line(db, "A")
    observe(db, "A", D + 6 * H, D + 7 * H)
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")
    a = line_of(dashboard_data(db, actor="ops:test", since_ts=D + 6 * H + 30, until_ts=D + 8 * H,
                               now_ts=D + 6 * H + 90), "A")  # seen from 30 s to 90 s into the shift
    assert [(r["hours_observed"] * 3600, r["expected"]) for r in a["shifts"]] == [(pytest.approx(60.0, abs=0.5), 1.0)]


def test_the_now_rate_does_not_depend_on_the_range(db):
    """Issue 18: "trays/h now" must be the trailing line_alert_minutes before now whatever the range shown."""
    now = seed_week(db)
    set_open_bin(db, "A", start_ts=now - 5 * M, trays=4, counted_to_ts=now - 1)
    ranges = [(now - H, now), (now - 4 * H, now), (now - 10 * H, now), (now - 7 * 86400, now),
              (now - 30 * 86400, now), (now - 10 * H - 86400, now - 10 * H),  # yesterday: a range in the past
              (now - 10 * H, now + 14 * H)]  # today, ending in the future
    figures = [line_of(dashboard_data(db, actor="ops:test", since_ts=t0, until_ts=t1, now_ts=now), "A")["now"]
               for t0, t1 in ranges]
    # 09:40-10:00: a third of the 20 trays of the 08:00-10:00 bin's last 20 minutes, and the open bin's 4
    rate = (20 * 20 / 120 + 4) * 3
    assert figures == [{"shift": "early", "target_per_hour": 10.0, "rate_per_hour": pytest.approx(rate, abs=0.01),
                        "vs_target_pct": pytest.approx((rate - 10) / 10 * 100, abs=0.1), "window_minutes": 20}] * 7
