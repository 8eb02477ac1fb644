"""Line throughput: trays per hour against target per packaging line, bins, shift and day totals, alerts.

The figures refresh themselves (a fragment with ``run_every``); ops and admins set the targets.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.common import current_user, db, md, show_error, workspace
from services.core import clock
from services.core.authz import allowed
from services.core.config import get_settings
from services.core.errors import ConsoleError
from services.core.shifts import shift_of
from services.lines.alerts import alert_log, evaluate_alerts
from services.lines.stats import csv_from_dashboard, dashboard_data
from services.lines.targets import clear_target, list_lines, set_target, targets

REFRESH_SECONDS = 10
PER_ROW = 2  # line cards side by side: at three, a 1440 px window cut the metric labels and the badges
RANGES = ("Last hour", "This shift", "Today (UTC)", "Last 7 days", "Last 30 days", "Custom")
SAVED_KEY = "lines_target_saved"  # the outcome of the last target save, shown once

st.title("Line throughput")
conn = db(needs="lines.read")
user = current_user()


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _hhmm(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _range(choice: str, now: float, shifts: list[dict[str, Any]], custom: Any) -> tuple[float, float, str]:
    """(since, until, caption) for the chosen range; rolling ranges end now."""
    midnight = now - now % 86400
    if choice == "This shift":
        current = shift_of(now, shifts)
        if current is None:
            return now - 8 * 3600, now, "No shift is running now: the last 8 hours."
        return current[1], now, f"The {current[0]} shift, since {_hhmm(current[1])} UTC."
    if choice == "Today (UTC)":
        return midnight, now, "Since midnight UTC."
    if choice == "Last 7 days":
        return now - 7 * 86400, now, ""
    if choice == "Last 30 days":
        return now - 30 * 86400, now, ""
    if choice == "Custom":
        days = tuple(custom) if isinstance(custom, list | tuple) else (custom,)
        days = tuple(d for d in days if isinstance(d, date))
        if not days:
            return midnight, now, "Pick the first and last day."
        first = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC).timestamp()
        last = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC).timestamp() + 86400
        return first, last, f"{days[0]} to {days[-1]} (UTC days)."
    return now - 3600, now, ""


def _pct_text(pct: float) -> str:
    """A percentage against target as shown on the cards: whole, signed, never "-0"."""
    return f"{round(pct):+d}%"


def _target_colour(pct: float | None, band: float, *, decimals: int = 0) -> str:
    """Red below target (as shown, rounded to ``decimals``), orange more than ``band`` % over it (an over
    alert's territory), green on target or over within the band; gray without a target."""
    if pct is None:
        return "gray"
    shown = round(pct, decimals)
    if shown < 0:
        return "red"
    return "orange" if shown > band else "green"


def _chart(line: dict[str, Any]) -> go.Figure:
    series = line["series"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[_utc(s["start_ts"]) for s in series], y=[s["trays_per_hour"] for s in series],
                             mode="lines+markers" if len(series) < 40 else "lines", name="trays / hour",
                             line={"shape": "hv"}, connectgaps=False))
    xs: list[Any] = []
    ys: list[Any] = []
    for seg in line["targets"]:
        xs += [_utc(seg["start_ts"]), _utc(seg["end_ts"]), None]
        ys += [seg["trays_per_hour"], seg["trays_per_hour"], None]
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="target", line={"dash": "dash", "color": "gray"}))
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      legend={"orientation": "h", "y": -0.25}, yaxis_title="trays / hour", xaxis_title=None)
    fig.update_yaxes(rangemode="tozero")
    return fig


def _card(line: dict[str, Any], band: float) -> None:
    lid = line["line_id"]
    with st.container(border=True):
        head, badge = st.columns([3, 2], vertical_alignment="center")
        head.markdown(f"**{md(line['name'])}**" + ("" if line["name"] == lid else f" · `{lid}`"))
        if line["silent"]:
            quiet = "No frame yet" if line["silent_for_s"] is None else f"Silent {line['silent_for_s'] / 60:.0f} min"
            badge.badge(quiet, icon=":material/signal_disconnected:", color="red",
                        help="Silent feed: no frame for longer than the line_silent_seconds setting")
        else:
            badge.badge("Live feed", icon=":material/sensors:", color="green")
        now, total = line["now"], line["vs_target_pct"]
        a, b, c = st.columns(3)
        a.metric("Trays/h now", f"{now['rate_per_hour']:.0f}",
                 delta=None if now["vs_target_pct"] is None
                 else f"{_pct_text(now['vs_target_pct'])} vs {now['target_per_hour']:g}",
                 delta_color=_target_colour(now["vs_target_pct"], band), delta_arrow="off",
                 help=f"Trays placed per hour over the last {now['window_minutes']} min whatever the range, "
                      f"against the {now['shift'] or 'current'} shift target")
        est = line.get("estimated_bins") or 0
        b.metric("Bins", line["bins"], help="Bins completed in the range"
                 + (f"; {est} estimated: an outage hid when they were changed" if est else ""))
        c.metric("Trays" + (" (est.)" if est else ""), f"≈ {line['trays']}" if est else f"{line['trays']}",
                 delta=None if total is None else f"{_pct_text(total)} vs target",
                 delta_color=_target_colour(total, band), delta_arrow="off",
                 help="Trays in bins completed in the range; the percentage compares trays placed with the "
                      "targets of the shifts in the range, over the hours the feed was seen"
                      + (f". {est} bin(s) an outage hid are estimated from the line's pace: the true total lies "
                         f"between {line['trays_low']} and {line['trays_high']}" if est else ""))
        if est:  # the range does not fit in a card's value at 1440 px: a line of its own
            st.caption(f"Trays between {line['trays_low']} and {line['trays_high']}: {est} bin(s) changed during "
                       "an outage, estimated from the line's pace.")
        opened, typical = line["open_bin"], line["typical_bin_trays"]
        if opened is None:
            st.caption("No bin filling now.")
        else:
            size = typical or max(opened["trays"], 1)
            st.progress(min(opened["trays"] / size, 1.0),
                        text=f"Current bin: {opened['trays']} trays" + (f" of about {typical:.0f}" if typical else "")
                        + f", since {_hhmm(opened['start_ts'])[11:]} UTC")
        st.plotly_chart(_chart(line), key=f"lines_chart_{lid}")


def _trays_text(row: dict[str, Any]) -> str:
    """Trays, with the range when some bin in them is estimated ("≈ 412 (398-431)")."""
    if not row.get("estimated_bins"):
        return f"{row['trays']}"
    return f"≈ {row['trays']} ({row['trays_low']}-{row['trays_high']})"


def _shift_table(lines: list[dict[str, Any]], band: float) -> None:
    rows = [{"line": ln["name"], "shift": r["shift"] or "(no shift)", "start (UTC)": _hhmm(r["start_ts"]),
             "bins": r["bins"], "trays": _trays_text(r), "target / h": r["target_per_hour"],
             "hours seen": r["hours_observed"], "expected": r["expected"], "vs target %": r["vs_target_pct"]}
            for ln in lines for r in ln["shifts"]]
    if not rows:
        st.caption("No shift in this range.")
        return
    frame = pd.DataFrame(rows)
    colours = {"red": "background-color: rgba(255, 75, 75, 0.25)", "orange": "background-color: rgba(255, 165, 0, 0.3)",
               "green": "background-color: rgba(33, 195, 84, 0.2)", "gray": ""}
    styled = frame.style.map(lambda v: colours[_target_colour(None if pd.isna(v) else float(v), band, decimals=1)],
                             subset=["vs target %"]).format(
        {"vs target %": "{:+.1f}", "expected": "{:.0f}", "target / h": "{:g}", "hours seen": "{:.1f}"}, na_rep="")
    st.caption("Each shift is compared with its own target over the hours its feed was seen (no frame, no "
               "verdict); below target is red, more than the alert share over it orange. ≈: some bins were "
               "changed during an outage and are estimated from the line's pace; the range is in brackets.")
    st.dataframe(styled, key="lines_shift_table", hide_index=True)


def _day_table(lines: list[dict[str, Any]]) -> None:
    rows = [{"day": r["day"], "line": ln["name"], "trays": r["trays"]} for ln in lines for r in ln["days"]]
    if not rows:
        st.caption("No day in this range.")
        return
    pivot = pd.DataFrame(rows).pivot_table(index="day", columns="line", values="trays", aggfunc="sum", fill_value=0)
    pivot["all lines"] = pivot.sum(axis=1)
    st.dataframe(pivot.sort_index(ascending=False), key="lines_day_table")


def _alerts(open_now: list[dict[str, Any]]) -> None:
    if not open_now:
        st.caption("No open alerts.")
    for alert in open_now:
        text = f"{md(alert['message'])} (since {_hhmm(alert['started_ts'])} UTC)"
        if alert["kind"] == "silent":
            st.error(text, icon=":material/signal_disconnected:")
        elif alert["kind"] == "under":
            st.error(text, icon=":material/trending_down:")
        else:
            st.warning(text, icon=":material/trending_up:")


def _alert_log(conn) -> None:  # type: ignore[no-untyped-def]
    log = alert_log(conn, limit=200)
    if not log:
        st.caption("No alerts raised yet.")
        return
    st.dataframe(pd.DataFrame([{
        "line": a["line_id"], "shift": a["shift"], "kind": a["kind"], "started (UTC)": _hhmm(a["started_ts"]),
        "ended (UTC)": _hhmm(a["ended_ts"]) if a["ended_ts"] is not None else "open",
        "trays / h": a["rate_per_hour"], "target / h": a["target_per_hour"], "message": a["message"]}
        for a in log]), key="lines_alert_log", hide_index=True)


def _save_targets(line_ids: list[str], shift_names: list[str]) -> None:
    """Form callback (runs before the script, so this run already shows the new targets)."""
    store = workspace().db()
    try:
        stored = targets(store)
        changed = 0
        for lid in line_ids:
            for shift in shift_names:
                value = st.session_state.get(f"lines_target_{lid}_{shift}")
                before = stored.get((lid, shift))
                if value is None and before is not None:
                    changed += clear_target(store, line_id=lid, shift=shift, actor=user.name)
                elif value is not None and (before is None or float(value) != before):
                    set_target(store, line_id=lid, shift=shift, trays_per_hour=float(value), actor=user.name)
                    changed += 1
        st.session_state[SAVED_KEY] = ("ok", f"Saved {changed} target{'s' if changed != 1 else ''}."
                                       if changed else "No target changed.")
    except ConsoleError as exc:
        st.session_state[SAVED_KEY] = ("error", str(exc))
    finally:
        store.close()


def _targets_editor(lines: list[dict[str, Any]], shift_names: list[str]) -> None:
    stored = targets(conn)
    with st.expander("Targets (trays per hour, per line and shift)", icon=":material/flag:",
                     expanded=not stored):
        st.caption("Shifts are set by an admin on the Settings page (UTC). Leave a box empty for no target; "
                   "0 means the line is not planned to run in that shift (no alerts).")
        with st.form("lines_target_form", border=False):
            header = st.columns([2] + [1] * len(shift_names))
            header[0].markdown("**Line**")
            for col, shift in zip(header[1:], shift_names):
                col.markdown(f"**{md(shift)}**")
            for ln in lines:
                cols = st.columns([2] + [1] * len(shift_names), vertical_alignment="center")
                cols[0].write(ln["name"])
                for col, shift in zip(cols[1:], shift_names):
                    key = f"lines_target_{ln['line_id']}_{shift}"
                    if key not in st.session_state:  # seeded through the state, so the default stays None
                        st.session_state[key] = stored.get((ln["line_id"], shift))  # and an emptied box means none
                    col.number_input(f"{ln['name']} · {shift}", min_value=0.0, value=None, step=10.0, format="%.1f",
                                     key=key, label_visibility="collapsed", placeholder="no target")
            st.form_submit_button("Save targets", key="lines_target_save", icon=":material/save:",
                                  on_click=_save_targets, args=([ln["line_id"] for ln in lines], shift_names))
        outcome = st.session_state.pop(SAVED_KEY, None)
        if outcome:
            (st.success if outcome[0] == "ok" else st.error)(outcome[1])


try:
    all_lines = list_lines(conn)
    settings = get_settings(conn)
    if not all_lines:
        st.info(
            "No packaging line has sent frames yet. The edge devices' detector output — JSON Lines or CSV files "
            "with one row per frame (line id, camera id, timestamp, tray count, optionally boxes with their "
            "confidences) — is read from a folder or an S3 prefix, each file once, and counted into bins. "
            "Set that folder as the line feed in **Settings → Packaging lines** and the app reads it every few "
            "seconds; or from the command line: `python -m services.cli.main --data-dir DIR lines-ingest --source FOLDER_OR_S3_PREFIX` (add `--watch 10` "
            "to keep polling). For a demo, the line simulator writes realistic streams for several lines "
            "(`lines-simulate --out FOLDER`), and `lines-replay` feeds a file at real speed. Once frames arrive, "
            "this page shows per line: trays per hour against target, bins completed, the bin filling now, "
            "totals per shift and per day, silent feeds and alerts.",
            icon=":material/conveyor_belt:",
        )
    else:
        names = {ln["line_id"]: ln["name"] for ln in all_lines}
        top = st.columns([2, 2, 4, 2], vertical_alignment="bottom")
        choice = top[0].selectbox("Time range", RANGES, key="lines_range")
        today = datetime.fromtimestamp(clock.now_ts(), UTC).date()
        custom = (top[1].date_input("Days (UTC)", value=(today - timedelta(days=6), today), key="lines_custom")
                  if choice == "Custom" else None)
        picked = top[2].multiselect("Lines", list(names), format_func=lambda x: names.get(x, x), key="lines_pick",
                                    placeholder="All lines")
        live = top[3].toggle("Live", value=True, key="lines_live",
                             help=f"Refresh the figures every {REFRESH_SECONDS} s and evaluate alerts")

        @st.fragment(run_every=REFRESH_SECONDS if live else None)
        def live_part() -> None:
            """Figures, alerts and the CSV, refreshed on their own every few seconds."""
            fresh = db()  # a fragment rerun gets its own connection (connections belong to their thread)
            try:
                now = clock.now_ts()
                since, until, caption = _range(choice, now, settings["shifts"], custom)
                if caption:
                    st.caption(caption)
                if until <= since:
                    st.warning("The range is empty.")
                    return
                data = dashboard_data(fresh, actor=user.name, since_ts=since, until_ts=until, now_ts=now, line_ids=picked or None)
                open_now = evaluate_alerts(fresh, now_ts=now)
                band = data["settings"]["alert_pct"]
                shown = {ln["line_id"] for ln in data["lines"]}
                st.subheader("Alerts")
                _alerts([a for a in open_now if a["line_id"] in shown])
                if data["silent"]:
                    st.caption("Silent feeds: " + ", ".join(md(names.get(x, x)) for x in data["silent"])
                               + f" (no frame for over {data['settings']['silent_seconds']:.0f} s).")
                for start in range(0, len(data["lines"]), PER_ROW):
                    row = data["lines"][start:start + PER_ROW]
                    for col, line in zip(st.columns(PER_ROW), row):
                        with col:
                            _card(line, band)
                st.caption(f"Trays per hour in {data['bucket_minutes']}-minute buckets: each bin's trays spread "
                           f"over the time it filled; a gap means no frames. Updated {_hhmm(now)[11:]} UTC.")
                st.subheader("Totals per shift")
                _shift_table(data["lines"], band)
                st.subheader("Totals per day (UTC)")
                _day_table(data["lines"])
                stamp = datetime.fromtimestamp(since, UTC).strftime("%Y%m%d-%H%M")
                st.download_button("Download CSV", data=csv_from_dashboard(data), file_name=f"line-throughput-{stamp}.csv",
                                   mime="text/csv", key="lines_csv", icon=":material/download:", on_click="ignore")
                with st.expander("Alert log", icon=":material/history:"):
                    _alert_log(fresh)
            except ConsoleError as exc:
                show_error(exc)

        live_part()
        if allowed(conn, actor=user.name, action="lines.targets"):
            _targets_editor(all_lines, [s["name"] for s in settings["shifts"]])
except ConsoleError as exc:
    show_error(exc)
