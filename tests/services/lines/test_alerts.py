"""Throughput alerts: open after the window, close in band, never duplicate; the log."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from services.core.config import set_setting
from services.lines.alerts import alert_log, evaluate_alerts, open_alerts
from services.lines.stats import dashboard_data
from services.lines.targets import set_target
from services.worker.housekeeping import Housekeeping
from tests.services.lines.test_stats import D, H, M, add_bin, add_line, line_of, observe, set_open_bin


def test_alert_opens_after_the_window_closes_in_band_and_never_duplicates(db):
    add_line(db, "A")  # never sent a frame: a silent feed
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")  # 20 trays per 20 minutes
    start = D + 6 * H
    assert evaluate_alerts(db, now_ts=start + 10 * M) == []  # the shift has not run for 20 minutes yet
    assert alert_log(db) == []

    opened = evaluate_alerts(db, now_ts=start + 20 * M)  # nothing placed in 20 minutes, no frame ever
    assert [(a["line_id"], a["shift"], a["kind"], a["rate_per_hour"], a["target_per_hour"], a["started_ts"])
            for a in opened] == [("A", "early", "silent", 0.0, 60.0, start + 20 * M)]
    assert opened[0]["message"] == ("Line A: feed silent, no frame yet: nothing placed against the early shift "
                                    "target of 60 trays/h")
    assert evaluate_alerts(db, now_ts=start + 21 * M) == opened  # still silent: the same alert, no duplicate
    assert db.execute("SELECT COUNT(*) FROM line_alerts").fetchone()[0] == 1

    # frames arrive; 17 trays in the 20 minutes before start+40: 51/h, 15 % under: within the band -> closed
    add_bin(db, "A", start + 30 * M, 17)
    db.execute("UPDATE lines SET last_frame_ts = ? WHERE id = 'A'", [start + 40 * M])
    assert evaluate_alerts(db, now_ts=start + 40 * M) == []
    log = alert_log(db)
    assert [(a["kind"], a["open"], a["ended_ts"]) for a in log] == [("silent", False, start + 40 * M)]

    # 30 trays in 20 minutes: 90/h, 50 % over
    add_bin(db, "A", start + 50 * M, 30)
    db.execute("UPDATE lines SET last_frame_ts = ? WHERE id = 'A'", [start + 60 * M])
    over = evaluate_alerts(db, now_ts=start + 60 * M)
    assert [(a["kind"], a["rate_per_hour"]) for a in over] == [("over", 90.0)]
    assert "50% over" in over[0]["message"] and "silent" not in over[0]["message"]
    # straight from over to under: the over alert closes and an under one opens
    db.execute("UPDATE lines SET last_frame_ts = ? WHERE id = 'A'", [start + 80 * M])
    under = evaluate_alerts(db, now_ts=start + 80 * M)
    assert [a["kind"] for a in under] == ["under"]
    assert "100% under" in under[0]["message"] and "silent" not in under[0]["message"]
    assert [(a["kind"], a["open"]) for a in alert_log(db)] == [("under", True), ("over", False), ("silent", False)]
    assert [a["kind"] for a in open_alerts(db)] == ["under"]
    assert len(alert_log(db, limit=2)) == 2


def test_alerts_count_the_open_bin_and_close_when_the_shift_or_target_goes(db):
    add_line(db, "A", last_frame_ts=D + 13 * H)
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")
    now = D + 13 * H
    # no bin closed in the last 20 minutes, but the open bin got 30 trays in the last 30 minutes: 60/h
    set_open_bin(db, "A", start_ts=now - 30 * M, trays=30, counted_to_ts=now)
    assert evaluate_alerts(db, now_ts=now) == []
    # the feed stops: nothing is placed after the last frame counted, and the feed is silent
    assert [a["kind"] for a in evaluate_alerts(db, now_ts=now + 30 * M)] == ["silent"]
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


# ----------------------------------------------------- issue 18: an alert closes as soon as its cause is gone


def produce(db, line_id: str, t0: float, t1: float, *, per_20_min: int) -> None:
    """The line's feed seen over [t0, t1) with a bin of ``per_20_min`` trays filling every 20 minutes."""
    observe(db, line_id, t0, t1)
    for k in range(int((t1 - t0) // (20 * M))):
        add_bin(db, line_id, t0 + (k + 1) * 20 * M, per_20_min, start_ts=t0 + k * 20 * M)
    db.execute("UPDATE lines SET last_frame_ts = ? WHERE id = ?", [t1, line_id])


def test_a_silent_feed_supersedes_an_over_alert_at_once_and_a_live_feed_the_silent_one(db):
    """The feeds went silent and the over alerts stayed open until the trailing 20 minutes had drained of the
    trays placed before: a silent feed is its own cause, raised as soon as the feed is silent."""
    add_line(db, "A")
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")
    start = D + 6 * H
    produce(db, "A", start, start + 60 * M, per_20_min=30)  # 90/h
    assert [a["kind"] for a in evaluate_alerts(db, now_ts=start + 60 * M)] == ["over"]

    quiet = start + 60 * M + 121  # line_silent_seconds (120) without a frame
    silent = evaluate_alerts(db, now_ts=quiet)  # the trailing 20 minutes still say 85 trays/h
    assert [(a["kind"], a["rate_per_hour"], a["target_per_hour"], a["started_ts"]) for a in silent] == [
        ("silent", 0.0, 60.0, quiet)]
    assert silent[0]["message"] == ("Line A: feed silent, no frame since 07:00 UTC: nothing placed against the "
                                    "early shift target of 60 trays/h")
    assert [(a["kind"], a["ended_ts"]) for a in alert_log(db)] == [("silent", None), ("over", quiet)]
    assert evaluate_alerts(db, now_ts=start + 85 * M) == silent  # still silent: the same alert

    # the feed is back, on target: the silent alert closes at once, and the 20 minutes that judge the rate
    # start when frames came back (not in the silence already alerted on)
    produce(db, "A", start + 90 * M, start + 91 * M, per_20_min=20)
    assert evaluate_alerts(db, now_ts=start + 91 * M) == []
    assert alert_log(db)[0]["ended_ts"] == start + 91 * M
    produce(db, "A", start + 91 * M, start + 111 * M, per_20_min=20)
    assert evaluate_alerts(db, now_ts=start + 110 * M) == []  # live for 20 minutes, on target
    # a feed back but too slow is under target once it has run for the window
    db.execute("DELETE FROM line_bins WHERE end_ts > ?", [start + 90 * M])
    assert evaluate_alerts(db, now_ts=start + 109 * M) == []  # live for 19 minutes only
    assert [a["kind"] for a in evaluate_alerts(db, now_ts=start + 110 * M)] == ["under"]


def test_a_target_change_supersedes_the_alert_raised_against_the_old_target(db):
    """An alert raised against a target stayed open, with its old figures, after the target changed."""
    add_line(db, "A")
    start = D + 6 * H
    produce(db, "A", start, start + 60 * M, per_20_min=10)  # 30/h
    set_target(db, line_id="A", shift="early", trays_per_hour=60, actor="ops")
    now = start + 60 * M
    first = evaluate_alerts(db, now_ts=now)
    assert [(a["kind"], a["target_per_hour"]) for a in first] == [("under", 60.0)]

    set_target(db, line_id="A", shift="early", trays_per_hour=100, actor="ops")
    second = evaluate_alerts(db, now_ts=now + 5)
    assert [(a["kind"], a["target_per_hour"], a["started_ts"]) for a in second] == [("under", 100.0, now + 5)]
    assert "70% under the early shift target of 100 trays/h" in second[0]["message"]
    assert [(a["target_per_hour"], a["ended_ts"]) for a in alert_log(db)] == [(100.0, None), (60.0, now + 5)]

    set_target(db, line_id="A", shift="early", trays_per_hour=32, actor="ops")  # 6 % under: in the band
    assert evaluate_alerts(db, now_ts=now + 10) == []
    assert [a["ended_ts"] for a in alert_log(db)] == [now + 10, now + 5]


def test_the_worker_evaluates_alerts_even_when_the_feed_cannot_be_read(ws, db, tmp_path):
    """Alerts were evaluated by the worker only after a successful read of a configured feed: with the feed's
    folder gone (or lines fed from the command line) nothing opened or closed them but an open Lines page."""
    now = time.time()
    start = datetime.fromtimestamp(now - 2 * H, UTC).strftime("%H:%M")  # one 24-hour shift, begun 2 hours ago
    set_setting(db, key="shifts", value=[{"name": "all", "start": start, "end": start}], actor="admin")
    add_line(db, "A", last_frame_ts=now - H)  # silent for an hour
    observe(db, "A", now - 2 * H, now - H)
    set_target(db, line_id="A", shift="all", trays_per_hour=60, actor="ops")
    set_setting(db, key="line_feed_uri", value=str(tmp_path / "missing"), actor="admin")
    out = Housekeeping(ws, clock=lambda: 0.0).run_all()
    assert "missing" in out["errors"]["line_feed"]
    assert [(a["line_id"], a["kind"]) for a in open_alerts(db)] == [("A", "silent")]

    set_setting(db, key="line_feed_uri", value="", actor="admin")  # fed from elsewhere (cli lines-ingest --watch)
    observe(db, "A", now - H, time.time())  # frames again, but no tray: under target
    db.execute("UPDATE lines SET last_frame_ts = ?", [time.time()])
    out = Housekeeping(ws, clock=lambda: 0.0).run_all()
    assert out["line_feed"] is None and out["open_alerts"] == 1  # the silent alert gave way to an under one
    assert [a["kind"] for a in open_alerts(db)] == ["under"]
