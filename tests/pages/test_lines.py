"""Line throughput page: empty workspace guidance, seeded lines side by side, alerts, filters, targets."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime

import pytest
from streamlit.elements.lib.utils import user_key_from_element_id
from streamlit.proto.Block_pb2 import Block
from streamlit.proto.Metric_pb2 import Metric

from services.core import clock
from services.core.config import set_setting
from services.lines.counter import LineState
from services.lines.targets import set_target, targets
from tests.pages.helpers import ROOT, run_page, texts
from tests.services.lines.test_stats import observe

PAGE = str(ROOT / "pages" / "lines.py")


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch) -> float:
    """The page's "now" (``clock.now_ts``) held at one instant for the whole test: the data are seeded relative
    to it, so a rate over the trailing window cannot drift while seconds pass before the page renders."""
    now = float(int(time.time()))
    monkeypatch.setattr(clock, "now_ts", lambda: now)
    return now


def chart_keys(at) -> set[str]:
    return {user_key_from_element_id(node.proto.id) for node in at.get("plotly_chart")}


def seed(db) -> float:
    """Line A live, about 36 trays/h over the last 20 minutes against a target of 60 (an under alert): half
    of the last closed bin (5 trays) and the open bin's 7; line B silent.

    One 24-hour shift that began two hours ago, so the alert window is inside it whatever the time of day."""
    now = clock.now_ts()
    start = datetime.fromtimestamp(now - 2 * 3600, UTC).strftime("%H:%M")
    set_setting(db, key="shifts", value=[{"name": "all", "start": start, "end": start}], actor="admin")
    db.execute("INSERT INTO lines (id, name, created_at, last_frame_ts) VALUES ('A', 'Line A', '', ?), "
               "('B', 'Line B', '', ?)", [now - 5, now - 3600])
    observe(db, "A", now - 90 * 60, now)  # the feeds were seen: A for the last 90 minutes, B up to an hour ago
    observe(db, "B", now - 3 * 3600, now - 3600)
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
    assert "Live feed" in badges and "Silent 60 min" in badges
    metrics = {(m.label, m.value) for m in at.metric}
    assert ("Bins", "3") in metrics and ("Bins", "0") in metrics  # in the last hour
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
        assert [m.value for m in at.metric if m.label == "Trays/h now"] == ["0"], choice  # B only, any range
    day = datetime.fromtimestamp(clock.now_ts(), UTC).date()
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


# --------------------------------------------------------------------------- issue 18, item 4 (Lines page)


def test_the_now_rate_is_the_same_whatever_the_range(ws, db):
    """"Trays/h now" read 709 in "Last hour" and 72 in "Last 7 days": it is the trailing window before now."""
    seed(db)
    at = run_page(PAGE)
    for choice in ("Last hour", "This shift", "Today (UTC)", "Last 7 days", "Last 30 days", "Custom"):
        at.selectbox(key="lines_range").set_value(choice).run()
        assert not at.exception, (choice, at.exception)
        a, b = (m for m in at.metric if m.label == "Trays/h now")  # "now" is frozen: exactly the same figure
        assert (a.value, a.proto.delta) == ("36", "-40% vs 60"), (choice, a.value)
        assert (b.value, b.proto.delta) == ("0", ""), choice


def test_a_target_change_closes_the_old_alert_at_once(ws, db):
    seed(db)
    at = run_page(PAGE)
    assert len(at.error) == 1 and "target of 60 trays/h" in at.error[0].value
    at.number_input(key="lines_target_A_all").set_value(100.0)
    at.button(key="lines_target_save").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "64% under the all shift target of 100 trays/h" in at.error[0].value
    assert [(a["target_per_hour"], a["ended_ts"] is None) for a in db.query(
        "SELECT target_per_hour, ended_ts FROM line_alerts ORDER BY id")] == [(60.0, False), (100.0, True)]
    at.number_input(key="lines_target_A_all").set_value(40.0)  # 36 is 10 % under: within the band
    at.button(key="lines_target_save").click().run()
    assert not at.exception and not at.error
    assert db.execute("SELECT COUNT(*) FROM line_alerts WHERE ended_ts IS NULL").fetchone()[0] == 0


def metric_colours(at) -> dict[str, tuple[int, str]]:
    """{label: (the delta's percentage, its colour)} of line A's metrics with a delta (B has no target)."""
    return {m.label: (int(re.match(r"([+-]\d+)%", m.proto.delta).group(1)), Metric.MetricColor.Name(m.proto.color))
            for m in at.metric if m.proto.delta}


def shift_cell_colours(at) -> list[tuple[str, str]]:
    """(shown value, background) of every "vs target %" cell of the shift table."""
    table = next(d for d in at.dataframe if "vs target %" in d.value.columns)
    col = list(table.value.columns).index("vs target %")
    styler = table.proto.arrow_data.styler
    styles = dict(re.findall(r"#T_\w*?row(\d+)_col" + str(col) + r"\s*\{\s*background-color:\s*([^;}]+?)\s*;?\s*\}",
                             styler.styles))
    shown = table.value["vs target %"].tolist()
    return [(f"{v:+.1f}" if v == v else "", styles.get(str(i), "").strip()) for i, v in enumerate(shown)]


def test_deltas_below_target_are_red(ws, db):
    """A -11 % trays delta was green: the colours followed the alert band (15 %), not the sign."""
    seed(db)  # A: 36 trays/h over the last 20 minutes, about 32 trays placed in the last hour
    set_target(db, line_id="A", shift="all", trays_per_hour=35, actor="ops")
    at = run_page(PAGE)
    assert metric_colours(at) == {"Trays/h now": (3, "GREEN"), "Trays": (-9, "RED")}  # -9 %: within the band
    (shown, colour), none = shift_cell_colours(at)
    assert -9.5 < float(shown) < -8 and colour == "rgba(255, 75, 75, 0.25)" and none == ("", "")  # B: no target
    set_target(db, line_id="A", shift="all", trays_per_hour=40.5, actor="ops")
    at.run()
    assert metric_colours(at)["Trays/h now"] == (-11, "RED")
    set_target(db, line_id="A", shift="all", trays_per_hour=30, actor="ops")  # +20 % now: over the band
    at.run()
    assert metric_colours(at) == {"Trays/h now": (20, "ORANGE"), "Trays": (7, "GREEN")}
    (shown, colour), _ = shift_cell_colours(at)
    assert 6 < float(shown) < 7.5 and colour == "rgba(33, 195, 84, 0.2)"


def test_last_7_days_compares_each_shift_over_the_hours_its_feed_was_seen(ws, db):
    """In "Last 7 days" every shift row showed -100 % in red: the days before the line's first frame."""
    seed(db)
    at = run_page(PAGE)
    at.selectbox(key="lines_range").set_value("Last 7 days").run()
    assert not at.exception
    table = next(d for d in at.dataframe if "vs target %" in d.value.columns).value
    a = table[table["line"] == "Line A"]
    assert len(a) == 8 and a["vs target %"].iloc[:-1].isna().all()  # seven earlier days: never seen, no verdict
    hours, pct = a["hours seen"].iloc[-1], a["vs target %"].iloc[-1]
    assert abs(hours - 1.5) < 0.02 and pct == pytest.approx((47 - 60 * hours) / (60 * hours) * 100, abs=0.1)  # 47 trays
    assert [c for c in shift_cell_colours(at) if c[0]] == [(f"{pct:+.1f}", "rgba(255, 75, 75, 0.25)")]


# A model of Streamlit's layout at a 1440 px wide window: the sidebar (18.75rem) open, the wide layout's side
# padding (5rem each), a small gap (1rem) between columns, a bordered container's padding (1rem) and border;
# labels in 14 px Source Sans at 7.5 px a character at most, a help icon 20 px, a badge's icon and padding 36 px.
WINDOW, SIDEBAR, SIDE_PADDING, GAP, BOX_PADDING, CHAR = 1440, 300, 80, 16, 16, 7.5


def widths(node, width: float, out: list) -> None:
    """(element, the width it gets in px) for every element under ``node`` rendered ``width`` wide."""
    proto = getattr(node, "proto", None)
    if isinstance(proto, Block) and proto.HasField("flex_container"):
        box = proto.flex_container
        if box.border:
            width -= 2 * BOX_PADDING + 2
        children = list(node.children.values())
        if box.direction == Block.FlexContainer.Direction.HORIZONTAL:
            weights = [c.weight for c in children]
            for child, weight in zip(children, weights):
                widths(child, (width - GAP * (len(children) - 1)) * weight / sum(weights), out)
            return
    if hasattr(node, "children"):
        for child in node.children.values():
            widths(child, width, out)
    else:
        out.append((node, width))


def test_metric_labels_and_badges_fit_at_1440_px(ws, db):
    """At 1440 px the cards cut their labels ("Trays/h ...", "Bins compl...", "Silent feed ...")."""
    seed(db)
    at = run_page(PAGE)
    placed: list = []
    widths(at._tree.main, WINDOW - SIDEBAR - 2 * SIDE_PADDING, placed)
    cut = []
    for element, width in placed:
        if element.type == "metric":
            need = len(element.label) * CHAR + (20 if element.proto.help else 0)
            text = element.label
        elif element.type == "markdown" and "-badge[" in element.value:
            text = re.sub(r":material/\w+: ", "", element.value.split("[", 1)[1].rstrip("]"))
            need = len(text) * CHAR + 36
        else:
            continue
        if need > width:
            cut.append((text, round(need), round(width)))
    assert len([e for e, _ in placed if e.type == "metric"]) == 6
    assert cut == [], cut  # (text, px needed, px available)


def test_bins_an_outage_hid_are_marked_estimated_with_their_range(ws, db):
    now = seed(db)
    db.execute("INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at, estimated, trays_low, "
               "trays_high) VALUES ('A', ?, ?, 20, 'drop', '', 1, 14, 27)", [now - 900, now - 300])
    at = run_page(PAGE)
    shown = {m.label: m.value for m in at.metric}["Trays (est.)"]
    total = int(re.fullmatch(r"≈ (\d+)", shown).group(1))  # the range is a caption: it is cut in a card at 1440 px
    ranges = [re.search(r"Trays between (\d+) and (\d+): 1 bin\(s\) changed during an outage", c.value) for c in at.caption]
    low, high = map(int, next(m for m in ranges if m).groups())
    assert (low, high) == (total - 20 + 14, total - 20 + 27)  # bins of 10 seen whole, one of 20 estimated (14-27)
    shifts = next(d for d in at.dataframe if "vs target %" in d.value.columns).value
    assert shifts.loc[shifts["line"] == "Line A", "trays"].iloc[0].startswith("≈ ")
    assert "estimated from the line's pace" in " ".join(c.value for c in at.caption)
    from services.lines.stats import csv_from_dashboard, dashboard_data

    data = dashboard_data(db, since_ts=now - 3 * 3600, until_ts=now + 1, now_ts=now, actor="ops")
    rows = list(csv.DictReader(io.StringIO(csv_from_dashboard(data))))
    estimated = [r for r in rows if r["estimated_bins"] not in ("", "0")]
    assert {(r["period"], r["line_id"]) for r in estimated} >= {("shift", "A"), ("day", "A")}
    assert all(int(r["trays_low"]) < int(r["trays"]) < int(r["trays_high"]) for r in estimated)
    whole = [r for r in rows if r["line_id"] == "B"]
    assert whole and all(r["estimated_bins"] == "0" and r["trays_low"] == r["trays_high"] == "" for r in whole)
