"""Throughput alerts: open after the window, close in band, never duplicate; the log."""

from __future__ import annotations

from services.lines.alerts import alert_log, evaluate_alerts, open_alerts
from services.lines.stats import dashboard_data
from services.lines.targets import set_target
from tests.services.lines.test_stats import D, H, M, add_bin, add_line, line_of, set_open_bin


def test_alert_opens_after_the_window_closes_in_band_and_never_duplicates(db):
    add_line(db, "A")  # never sent a frame: the message says the feed is silent
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")  # 20 trays per 20 minutes
    start = D + 6 * H
    assert evaluate_alerts(db, now_ts=start + 10 * M) == []  # the shift has not run for 20 minutes yet
    assert alert_log(db) == []

    opened = evaluate_alerts(db, now_ts=start + 20 * M)  # nothing placed in 20 minutes
    assert [(a["line_id"], a["shift"], a["kind"], a["rate_per_hour"], a["target_per_hour"], a["started_ts"])
            for a in opened] == [("A", "early", "under", 0.0, 60.0, start + 20 * M)]
    assert "100% under the early shift target of 60 trays/h" in opened[0]["message"]
    assert "(feed silent)" in opened[0]["message"]
    assert evaluate_alerts(db, now_ts=start + 21 * M) == opened  # still under: the same alert, no duplicate
    assert db.execute("SELECT COUNT(*) FROM line_alerts").fetchone()[0] == 1

    # 17 trays in the 20 minutes before start+40: 51/h, 15 % under: within the band -> closed
    add_bin(db, "A", start + 30 * M, 17)
    assert evaluate_alerts(db, now_ts=start + 40 * M) == []
    log = alert_log(db)
    assert [(a["kind"], a["open"], a["ended_ts"]) for a in log] == [("under", False, start + 40 * M)]

    # 30 trays in 20 minutes: 90/h, 50 % over
    add_bin(db, "A", start + 50 * M, 30)
    db.execute("UPDATE lines SET last_frame_ts = ? WHERE id = 'A'", [start + 60 * M])
    over = evaluate_alerts(db, now_ts=start + 60 * M)
    assert [(a["kind"], a["rate_per_hour"]) for a in over] == [("over", 90.0)]
    assert "50% over" in over[0]["message"] and "silent" not in over[0]["message"]
    # straight from over to under: the over alert closes and an under one opens
    under = evaluate_alerts(db, now_ts=start + 80 * M)
    assert [a["kind"] for a in under] == ["under"]
    assert [(a["kind"], a["open"]) for a in alert_log(db)] == [("under", True), ("over", False), ("under", False)]
    assert [a["kind"] for a in open_alerts(db)] == ["under"]
    assert len(alert_log(db, limit=2)) == 2


def test_alerts_count_the_open_bin_and_close_when_the_shift_or_target_goes(db):
    add_line(db, "A", last_frame_ts=D + 13 * H)
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")
    now = D + 13 * H
    # no bin closed in the last 20 minutes, but the open bin got 30 trays in the last 30 minutes: 60/h
    set_open_bin(db, "A", start_ts=now - 30 * M, trays=30, counted_to_ts=now)
    assert evaluate_alerts(db, now_ts=now) == []
    # the feed stops: nothing is placed after the last frame counted
    assert [a["kind"] for a in evaluate_alerts(db, now_ts=now + 30 * M)] == ["under"]
    assert evaluate_alerts(db, now_ts=D + 14 * H + 5 * M) == []  # the late shift began: the early alert closes
    assert evaluate_alerts(db, now_ts=D + 14 * H + 25 * M) == []  # the late shift has no target
    set_target(db, line_id="A", shift="late", trays_per_hour=0, actor="ops")
    assert evaluate_alerts(db, now_ts=D + 14 * H + 30 * M) == []  # zero: the line is not planned to run
    assert [a["open"] for a in alert_log(db)] == [False]


def test_dashboard_now_figure_matches_the_alert_rate(db):
    add_line(db, "A", last_frame_ts=D + 13 * H)
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")
    add_bin(db, "A", D + 13 * H - 5 * M, 10)
    now_fig = line_of(dashboard_data(db, actor="ops:test", since_ts=D + 12 * H, until_ts=D + 13 * H, now_ts=D + 13 * H), "A")["now"]
    assert now_fig == {"shift": "early", "target_per_hour": 60.0, "rate_per_hour": 30.0, "vs_target_pct": -50.0,
                       "window_minutes": 20}
    assert [a["rate_per_hour"] for a in evaluate_alerts(db, now_ts=D + 13 * H)] == [30.0]
