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
cols[3].metric("In the queue", f"{stats['queued']:,}")
cols[4].metric("Failed", f"{stats['failed']:,}")
cols[5].metric("Credits granted", f"{stats['credits_granted']:,}", help=f"of {stats['reviews']:,} reviews")
if stats["pending"]:
    st.caption(f"{stats['pending']:,} photos wait for classification.")

if stats["per_day"]:
    frame = pd.DataFrame(stats["per_day"]).fillna(0)
    long = frame.melt(id_vars="day", value_vars=["decided_automatically", "decided_by_people", "in_queue", "failed"],
                      var_name="outcome", value_name="photos")
    colors = {"decided_automatically": "#2e7d32", "decided_by_people": "#1565c0", "in_queue": "#f9a825",
              "failed": "#c62828"}
    fig = px.bar(long, x="day", y="photos", color="outcome", title="Photos per day by outcome",
                 color_discrete_map=colors)
    fig.update_xaxes(type="category")
    st.plotly_chart(fig, key="overview_per_day")
if stats["credits_per_day"]:
    st.plotly_chart(px.line(pd.DataFrame(stats["credits_per_day"]), x="day", y="credits_granted", markers=True,
                            title="Credits granted per day (by review date)"), key="overview_credits")
