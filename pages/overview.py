"""Overview: photos in, decided automatically, in the queue, credits granted, per day."""

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from pages.common import current_user, db, md, workspace
from services.core.authz import allowed
from services.core.config import Workspace
from services.models.registry import active_version
from services.reviews.outcomes import data_version, overview


@st.cache_data(show_spinner="Counting…", max_entries=16)
def cached_overview(root: str, version: tuple, actor: str) -> dict:  # type: ignore[type-arg]
    """The figures for one state of the data (``version``): revisits are instant until something changes."""
    conn_ = Workspace(Path(root)).db()
    try:
        return overview(conn_, actor=actor)
    finally:
        conn_.close()


st.title("Overview")
conn = db(needs="stats.read")
stats = cached_overview(str(workspace().root), data_version(conn), current_user().name)
model = active_version(conn)

if stats["photos"] == 0:
    st.info(
        "This workspace is empty. **First step:** import reviews on the Jobs page — a CSV or JSON Lines "
        "manifest, or a folder of photos — then train a model from labelled photos and classify.",
        icon=":material/upload:",
    )
    if allowed(conn, actor=current_user().name, action="jobs.manage"):  # the Jobs page's own permission
        st.page_link("pages/jobs.py", label="Go to Jobs to import", icon=":material/arrow_forward:")
if model is None:
    st.warning(
        "No model has been trained yet, so every photo goes to people in the review queue. "
        "Import labelled photos and train one on the Jobs page.",
        icon=":material/model_training:",
    )
else:
    f1 = (model.get("metrics") or {}).get("macro_f1")
    st.caption(f"Active model **{md(model['name'])}**" + (f" — cross-validated macro-F1 {f1:.3f}" if f1 is not None else ""))

cols = st.columns(6)
cols[0].metric("Photos in", f"{stats['photos']:,}")
cols[1].metric("Decided automatically", f"{stats['decided_automatically']:,}")
cols[2].metric("Decided by people", f"{stats['decided_by_people']:,}")
cols[3].metric("In the queue", f"{stats['queued']:,}",
               help="Waiting for a person, including automatic decisions sent to people as audits")
cols[4].metric("Not classified yet", f"{stats['pending']:,}")
cols[5].metric("Failed", f"{stats['failed']:,}")
audits = stats["queued_audits"]
st.caption(  # each photo is counted once, where it is now, so the figures add up
    f"{stats['photos']:,} photos in = {stats['decided_automatically']:,} decided automatically + "
    f"{stats['decided_by_people']:,} decided by people + {stats['queued']:,} in the queue"
    + (f" ({audits:,} of them automatic decisions being audited by people)" if audits else "")
    + f" + {stats['pending']:,} not classified yet + {stats['failed']:,} failed.")
cols = st.columns(6)
cols[0].metric("Reviews", f"{stats['reviews']:,}")
cols[1].metric("Credits granted", f"{stats['credits_granted']:,}", help="Reviews that earned their credit")

OUTCOMES = {"decided_automatically": ("decided automatically", "#2e7d32"),
            "decided_by_people": ("decided by people", "#1565c0"), "in_queue": ("in the queue", "#f9a825"),
            "pending": ("not classified yet", "#9e9e9e"), "failed": ("failed", "#c62828")}
if stats["per_day"]:
    frame = pd.DataFrame(stats["per_day"]).fillna(0)
    long = frame.melt(id_vars="day", value_vars=list(OUTCOMES), var_name="outcome", value_name="photos")
    long["outcome"] = long["outcome"].map(lambda k: OUTCOMES[k][0])  # legends in words, not column names
    fig = px.bar(long, x="day", y="photos", color="outcome", title="Photos per day, by where they are now",
                 color_discrete_map={name: color for name, color in OUTCOMES.values()},
                 labels={"day": "day imported (UTC)"})
    fig.update_xaxes(type="category")
    st.plotly_chart(fig, key="overview_per_day")
if stats["credits_per_day"]:
    credits = px.bar(pd.DataFrame(stats["credits_per_day"]), x="day", y="credits_granted",
                     title="Credits granted per day (by review date)",
                     labels={"day": "review date", "credits_granted": "credits granted"})
    credits.update_xaxes(type="category")  # days, not a time axis: one day is one bar, not a dot at 23:59:59.999
    st.plotly_chart(credits, key="overview_credits")
