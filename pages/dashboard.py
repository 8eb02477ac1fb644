"""Inspector dashboard: per inspector and day, throughput and quality; for the team, queue size and automation."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from pages.common import current_user, db, show_error
from pages.markup import plural
from services.core.errors import ConsoleError
from services.hitl.inspector_stats import (
    ACTIVE_SECONDS_CAP,
    MIN_RATE_ANSWERS,
    MIN_RATE_SECONDS,
    SNAPSHOT_SECONDS,
    has_activity,
    inspector_stats,
    list_inspectors,
    queue_size_series,
    record_queue_snapshot_if_stale,
    team_daily,
)

WORDS = {"items_per_hour": "items per hour", "median_seconds": "median seconds", "auto_share": "share automatic",
         "agreement_with_consensus": "agreement with consensus", "gold_accuracy": "gold accuracy",
         "decided_automatically": "decided automatically"}

st.title("Inspector dashboard")
conn = db(needs="stats.read")
user = current_user()


def _chart(frame: pd.DataFrame, key: str, empty: str, draw) -> None:  # type: ignore[no-untyped-def]
    if frame.empty:
        st.caption(empty)
    else:
        st.plotly_chart(draw(frame), key=key)


def _days(fig):  # type: ignore[no-untyped-def]
    fig.update_xaxes(type="category", categoryorder="category ascending", title="day (UTC)")  # ISO days sort as text
    return fig


def _percent(fig):  # type: ignore[no-untyped-def]
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return fig


try:
    if not has_activity(conn):
        st.info(
            "Nothing to show yet. Once photos are imported and inspectors answer them in the Review queue, this "
            "page shows per inspector and day: items per hour, median seconds per item, agreement with the "
            "consensus, accuracy on gold items and override rate per predicted class; and for the team: the "
            "queue size over time and the share of photos decided automatically.",
            icon=":material/monitoring:",
        )
    else:
        # so the queue chart has a current point even when no worker is recording snapshots
        record_queue_snapshot_if_stale(conn, max_age_seconds=SNAPSHOT_SECONDS)
        today = datetime.now(UTC).date()
        left, right = st.columns([1, 2])
        picked = left.date_input("Period (UTC days)", value=(today - timedelta(days=29), today), key="dash_range")
        days = tuple(picked) if isinstance(picked, list | tuple) else (picked,)
        start, end = (days[0], days[-1]) if days else (today - timedelta(days=29), today)
        chosen = right.multiselect("Inspectors", list_inspectors(conn), key="dash_inspectors",
                                   placeholder="All inspectors")
        stats = inspector_stats(conn, actor=user.name, since=start, until=end, inspectors=chosen or None)
        daily, totals = pd.DataFrame(stats["daily"]), pd.DataFrame(stats["totals"])
        for frame in (daily, totals):  # a rate from a few seconds' work is not shown as one; the table says why
            if not frame.empty:
                frame.loc[frame["rate_note"].notna(), "items_per_hour"] = None

        st.subheader("Per inspector")
        if totals.empty:
            st.caption("No inspector answers in this period.")
            st.dataframe(pd.DataFrame(columns=["inspector", "items"]), key="dash_table", hide_index=True)
        else:
            st.dataframe(
                totals[["inspector", "items", "items_per_hour", "rate_note", "median_seconds",
                        "agreement_with_consensus", "overlap_answers", "gold_accuracy", "gold_answers", "override_rate",
                        "predicted_answers"]],
                key="dash_table",
                hide_index=True,
                column_config={
                    "items_per_hour": st.column_config.NumberColumn(
                        "items / hour", format="%.1f",
                        help=f"Answers per hour of active time (each answer counts at most {ACTIVE_SECONDS_CAP:.0f} s)"),
                    "rate_note": st.column_config.TextColumn(
                        "about the rate", help=f"A rate needs {MIN_RATE_ANSWERS} answers and "
                                               f"{MIN_RATE_SECONDS / 60:.0f} minutes of active time"),
                    "median_seconds": st.column_config.NumberColumn("median s / item", format="%.1f"),
                    "agreement_with_consensus": st.column_config.NumberColumn(
                        "agreement", format="percent", help="Overlap answers equal to the settled consensus"),
                    "overlap_answers": st.column_config.NumberColumn("overlap answers"),
                    "gold_accuracy": st.column_config.NumberColumn("gold accuracy", format="percent"),
                    "gold_answers": st.column_config.NumberColumn("gold answers"),
                    "override_rate": st.column_config.NumberColumn(
                        "override rate", format="percent", help="Answers that differ from the model's prediction"),
                    "predicted_answers": st.column_config.NumberColumn("answers with a prediction"),
                },
            )
        days_seen = 0 if daily.empty else daily["day"].nunique()
        if days_seen == 1:  # one day is one dot per line: the table above says it better
            st.caption("Charts over days appear once there are answers on two days or more; the figures for "
                       f"{daily['day'].iloc[0]} are in the table above.")
        else:
            no_answers = "No inspector answers in this period."
            rated = daily.dropna(subset=["items_per_hour"]) if not daily.empty else daily
            _chart(rated, "dash_items_per_hour",
                   no_answers if daily.empty else "Too little data for a rate on any day yet (each day needs "
                   f"{MIN_RATE_ANSWERS} answers and {MIN_RATE_SECONDS / 60:.0f} minutes of active time).",
                   lambda f: _days(px.line(f, x="day", y="items_per_hour", color="inspector", markers=True,
                                           title="Items per hour of active time", labels=WORDS)))
            _chart(daily.dropna(subset=["median_seconds"]) if not daily.empty else daily, "dash_median_seconds",
                   no_answers, lambda f: _days(px.line(f, x="day", y="median_seconds", color="inspector", markers=True,
                                                       title="Median seconds per item", labels=WORDS)))
            quality = (daily.melt(id_vars=["day", "inspector"], value_vars=["agreement_with_consensus", "gold_accuracy"],
                                  var_name="measure", value_name="share").dropna(subset=["share"])
                       if not daily.empty else daily)
            if not quality.empty:
                quality["measure"] = quality["measure"].map(WORDS)
            _chart(quality, "dash_quality", "No overlap or gold answers in this period.",
                   lambda f: _percent(_days(px.line(f, x="day", y="share", color="inspector", line_dash="measure",
                                                    markers=True, title="Agreement with consensus and gold accuracy"))))
        overrides = pd.DataFrame(
            [{"inspector": r["inspector"], "predicted class": cls, "override rate": rate}
             for r in stats["totals"] for cls, rate in r["override_rate_by_class"].items()]
        )
        _chart(overrides, "dash_override_by_class", "No answers on photos with a model prediction in this period.",
               lambda f: _percent(px.bar(f, x="predicted class", y="override rate", color="inspector", barmode="group",
                                         title="Override rate per predicted class")))

        st.subheader("Team")
        queue = pd.DataFrame(queue_size_series(conn, since=start, until=end))
        if not queue.empty:
            queue["time (UTC)"] = pd.to_datetime(queue["at"], utc=True)
        if len(queue) == 1:  # one snapshot is one dot: say the number instead
            st.caption(f"{plural(int(queue['queued'].iloc[0]), 'photo')} in the queue at {queue['at'].iloc[0]}; the queue "
                       "over time appears from the next snapshot (one a minute while the worker runs).")
        else:
            _chart(queue, "dash_queue_size", "No queue snapshots in this period.",
                   lambda f: px.line(f, x="time (UTC)", y="queued", markers=len(f) < 50, title="Photos in the queue"))
        team = pd.DataFrame(team_daily(conn, actor=user.name, since=start, until=end))
        _chart(team.dropna(subset=["auto_share"]) if not team.empty else team, "dash_auto_share",
               "No photos decided in this period.",
               lambda f: _percent(_days(px.bar(f, x="day", y="auto_share", labels=WORDS,
                                               hover_data=["decided", "decided_automatically"],
                                               title="Share of photos decided automatically (by first decision)"))))
except ConsoleError as exc:
    show_error(exc)
