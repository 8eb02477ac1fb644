"""Line throughput page: empty workspace guidance, seeded lines side by side, alerts, filters, targets."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from streamlit.elements.lib.utils import user_key_from_element_id

from services.core.config import set_setting
from services.lines.counter import LineState
from services.lines.targets import set_target, targets
from tests.pages.helpers import ROOT, run_page, texts

PAGE = str(ROOT / "pages" / "lines.py")




def chart_keys(at) -> set[str]:
    return {user_key_from_element_id(node.proto.id) for node in at.get("plotly_chart")}




def seed(db) -> float:
    """Line A live, about 36 trays/h over the last 20 minutes against a target of 60 (an under alert): half
    of the last closed bin (5 trays) and the open bin's 7; line B silent.

    One 24-hour shift that began two hours ago, so the alert window is inside it whatever the time of day."""
    now = time.time()
    start = datetime.fromtimestamp(now - 2 * 3600, UTC).strftime("%H:%M")
    set_setting(db, key="shifts", value=[{"name": "all", "start": start, "end": start}], actor="admin")
    db.execute("INSERT INTO lines (id, name, created_at, last_frame_ts) VALUES ('A', 'Line A', '', ?), "
               "('B', 'Line B', '', ?)", [now - 5, now - 3600])
    for k in range(4):  # a 10-tray bin every 20 minutes on A, the latest closed 10 minutes ago
        end = now - 600 - 1200 * k
        db.execute("INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at) "
                   "VALUES ('A', ?, ?, 10, 'drop', '')", [end - 1200, end])
    db.execute("INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at) "
               "VALUES ('B', ?, ?, 12, 'zero', '')", [now - 3 * 3600, now - 2 * 3600])
    db.execute("INSERT INTO line_state (line_id, state, counted_to_ts, updated_at) VALUES ('A', ?, ?, '')",
               [LineState(bin_start_ts=now - 600, bin_max=7, last_ts=now - 5).to_json(), now - 5])
    set_target(db, line_id="A", shift="all", trays_per_hour=60, actor="ops")
    return now


def test_empty_workspace_explains_how_frames_arrive(ws, db):
    at = run_page(PAGE)
    assert at.title[0].value == "Line throughput"
    assert "No packaging line has sent frames yet" in at.info[0].value
    assert "simulator" in at.info[0].value
    assert not at.get("plotly_chart") and not at.error
    assert db.execute("SELECT COUNT(*) FROM line_alerts").fetchone()[0] == 0


def test_seeded_lines_side_by_side_with_alerts_and_filters(ws, db):
    now = seed(db)
    at = run_page(PAGE)
    assert chart_keys(at) == {"lines_chart_A", "lines_chart_B"}
    assert not at.info
    badges = " ".join(texts(at.markdown))
    assert "Live feed" in badges and "Silent feed (60 min)" in badges
    metrics = {(m.label, m.value) for m in at.metric}
    assert ("Bins completed", "3") in metrics and ("Bins completed", "0") in metrics  # in the last hour
    assert ("Trays/h now", "36") in metrics
    assert [p.proto.text for p in at.progress] == ["Current bin: 7 trays of about 10"
                                                   f", since {datetime.fromtimestamp(now - 600, UTC):%H:%M} UTC"]
    # the under alert is raised by the page and shown
    alerts = list(db.query("SELECT line_id, kind, shift FROM line_alerts WHERE ended_ts IS NULL"))
    assert alerts == [{"line_id": "A", "kind": "under", "shift": "all"}]
    assert len(at.error) == 1 and "40% under the all shift target of 60 trays/h" in at.error[0].value
    assert {user_key_from_element_id(b.proto.id) for b in at.get("download_button")} == {"lines_csv"}

    at.run()  # a refresh keeps one open alert
    assert not at.exception
    assert db.execute("SELECT COUNT(*) FROM line_alerts").fetchone()[0] == 1

    at.multiselect(key="lines_pick").set_value(["B"]).run()
    assert not at.exception and not at.error
    assert chart_keys(at) == {"lines_chart_B"}

    for choice in ("This shift", "Today (UTC)", "Last 7 days", "Last 30 days", "Custom"):
        at.selectbox(key="lines_range").set_value(choice).run()
        assert not at.exception, (choice, at.exception)
        assert all("under the all shift target" in e for e in texts(at.error)), (choice, texts(at.error))
    day = datetime.now(UTC).date()
    at.date_input(key="lines_custom").set_value((day,)).run()  # half-picked range: that one day
    assert not at.exception and chart_keys(at) == {"lines_chart_B"}

    at.toggle(key="lines_live").set_value(False).run()
    assert not at.exception and chart_keys(at) == {"lines_chart_B"}


def test_set_and_clear_a_target_through_the_page(ws, db):
    seed(db)
    at = run_page(PAGE)
    assert at.number_input(key="lines_target_A_all").value == 60.0
    assert at.number_input(key="lines_target_B_all").value is None
    at.number_input(key="lines_target_B_all").set_value(120.0)
    at.button(key="lines_target_save").click().run()
    assert not at.exception
    assert targets(db) == {("A", "all"): 60.0, ("B", "all"): 120.0}
    assert "Saved 1 target." in texts(at.success)
    audit = db.execute("SELECT actor, target, detail FROM audit_log WHERE action = 'line.target' "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    assert (audit[0], audit[1], json.loads(audit[2])["trays_per_hour"]) == ("local operator", "B/all", 120.0)

    at.number_input(key="lines_target_A_all").set_value(None)
    at.button(key="lines_target_save").click().run()
    assert not at.exception
    assert targets(db) == {("B", "all"): 120.0}

    at.button(key="lines_target_save").click().run()
    assert "No target changed." in texts(at.success)
