"""The worker's periodic chores: each on its interval; the line feed is read, counted and alerted on."""

from __future__ import annotations

from services.core.config import set_setting
from services.lines import simulator as linesim
from services.worker.housekeeping import LINE_POLL_SECONDS, Housekeeping


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_chores_run_on_their_own_intervals_and_the_line_feed_is_read_once(ws, db, tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    streams, truth = linesim.simulate(lines=2, hours=0.25, seed=4, start_ts=1_790_000_000.0)
    linesim.write_jsonl(feed / "a.jsonl", streams)
    set_setting(db, key="line_feed_uri", value=str(feed), actor="admin")
    clock = Clock()
    chores = Housekeeping(ws, clock=clock)
    first = chores.run_due()
    assert first["line_feed"] == str(feed) and first["frames_added"] == sum(len(s.ts) for s in streams.values())
    assert "queue_snapshot" in first and "raw_frames_pruned" in first
    assert chores.run_due() == {}  # nothing is due yet
    clock.now += LINE_POLL_SECONDS
    again = chores.run_due()
    assert set(again) == {"line_feed", "frames_added", "open_alerts"} and again["frames_added"] == 0
    trays = db.execute("SELECT COALESCE(SUM(trays), 0) FROM line_bins").fetchone()[0]
    assert 0 < trays <= sum(sum(v) for v in truth.values())


def test_an_unreachable_feed_is_reported_and_retried_without_stopping_the_rest(ws, db, tmp_path):
    set_setting(db, key="line_feed_uri", value=str(tmp_path / "missing"), actor="admin")
    chores = Housekeeping(ws, clock=Clock())
    out = chores.run_all()
    assert "missing" in out["errors"]["line_feed"] and "queue_snapshot" in out  # the other chores still ran
    (tmp_path / "missing").mkdir()
    assert "errors" not in chores.run_all()  # the folder is back: the error clears
