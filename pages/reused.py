"""Reused photos (admin): pairs of photos found to be copies across reviews, side by side, to clear or
confirm; the customer accounts involved; whether credit is held meanwhile."""

import pandas as pd
import streamlit as st

from pages.common import current_user, db, md, show_error
from pages.photos import review_name
from pages.photos import show as show_photo
from services.core.config import get_settings
from services.core.errors import ConsoleError
from services.reuse import detection as reuse

st.title("Reused photos")
conn = db(needs="quality.manage")
user = current_user()
if "rp_flash" in st.session_state:
    st.success(st.session_state.pop("rp_flash"), icon=":material/check:")

hold = get_settings(conn)["hold_credit_on_reuse"]
waiting = reuse.unchecked_count(conn)
st.caption(("Credit is held on reviews with an open or confirmed flag (Settings)." if hold else
            "Credit is not held for flagged photos (Settings → Reused photos).")
           + (f" {waiting} classified photos wait for the check (the worker runs it within seconds)." if waiting else ""))

status = st.segmented_control("Show", ["open", "confirmed", "cleared", "all"], default="open", key="rp_status")
flags = reuse.list_flags(conn, actor=user.name, status=None if status in (None, "all") else status)
if not flags:
    st.info("No flagged pairs" + ("" if status in (None, "all") else f" with status {status}") + ".")


def resolve(flag_id: int, outcome: str, note: str) -> None:
    try:
        reuse.resolve(conn, flag_id=flag_id, status=outcome, actor=user.name, note=note)
        st.session_state["rp_flash"] = f"Flag {flag_id} {outcome}."
        st.rerun()
    except ConsoleError as exc:
        show_error(exc)


for f in flags:
    with st.container(border=True):
        same = "the same account" if f["same_user"] else f"users {md(f['user_id'] or '?')} and {md(f['other_user_id'] or '?')}"
        facts = [f"{f['similarity']:.0%} alike"] if f["similarity"] is not None else []
        facts.append(f"{f['inliers']} matching points" if f["inliers"] else f"hash distance {f['hash_distance']} of 64")
        detail = "the same bytes" if f["kind"] == "exact" else f"an edited copy (found by {f['how']}: {', '.join(facts)})"
        st.markdown(f"**Review {md(review_name(f['review_id']))}** reuses a photo of review "
                    f"**{md(review_name(f['other_review_id']))}**: "
                    f"{detail}, from {same}. Status: **{f['status']}**")
        left, right = st.columns(2)
        show_photo(left, label=f"photo {f['image_id']}", uri=f["uri"], sha256=f["sha256"], size=360, caption="later")
        show_photo(right, label=f"photo {f['other_image_id']}", uri=f["other_uri"], sha256=f["other_sha256"], size=360,
                   caption="earlier")
        if f["status"] == "open":
            note = st.text_input("Note (optional)", key=f"rp_note_{f['id']}")
            c1, c2 = st.columns(2)
            if c1.button("Clear: not a reuse (credit flows)", key=f"rp_clear_{f['id']}"):
                resolve(f["id"], "cleared", note)
            if c2.button("Confirm reuse (credit stays held)", key=f"rp_confirm_{f['id']}", type="primary"):
                resolve(f["id"], "confirmed", note)
        elif f["resolved_by"]:
            st.caption(f"{f['status']} by {md(f['resolved_by'])} at {f['resolved_at']}"
                       + (f": {md(f['note'])}" if f["note"] else ""))

st.subheader("Accounts involved")
accounts = reuse.accounts_involved(conn, actor=user.name)
if accounts:
    st.dataframe(pd.DataFrame(accounts), hide_index=True, key="rp_accounts")
else:
    st.caption("No account is part of a flagged pair.")
