"""Yes/no checks: images a dataset filter was unsure about, one at a time, answered from the keyboard."""

import streamlit as st

from pages.common import current_user, db, md, show_error
from pages.photos import show as show_photo
from services.core.errors import ConsoleError
from services.dataset_filter.checks import answer_check, checks_summary, claim_next_check, release_check
from services.dataset_filter.job import store_for

PHOTO_SIZE = 720  # the image large, above the fold

st.title("Yes/no checks")
conn = db(needs="reviews.label")
user = current_user()
inspector = user.name
if "ck_flash" in st.session_state:
    st.success(st.session_state.pop("ck_flash"), icon=":material/check:")

summary = checks_summary(conn)
st.caption(f"{summary['open']:,} check{'' if summary['open'] == 1 else 's'} open · {summary['yes']:,} answered yes · "
           f"{summary['no']:,} answered no")

skipped = st.session_state.setdefault("ck_skipped", [])
try:
    check = claim_next_check(conn, inspector=inspector, skip=skipped)
except ConsoleError as exc:
    show_error(exc)
    st.stop()

if check is None:
    st.info("No yes/no checks are waiting." + (" (Some were skipped this session.)" if skipped else ""))
    if skipped and st.button("Show skipped checks again", key="ck_unskip"):
        st.session_state["ck_skipped"] = []
        st.rerun()
    st.stop()

left, right = st.columns([3, 2])
with left:
    show_photo(st, label=f"check {check['id']}", uri=check["uri"], sha256=None, size=PHOTO_SIZE)
with right:
    st.subheader(md(check["question"]))  # names the label someone typed
    st.caption(f"The detector's confidence: {check['confidence']:.0%} (in the band sent to a person) · "
               f"filter job #{check['job_id']} · check #{check['id']}")

    def answer(yes: bool) -> None:
        try:
            done = answer_check(conn, check_id=check["id"], yes=yes, actor=inspector, store=store_for(conn))
        except ConsoleError as exc:
            show_error(exc)
            return
        where = f": copied to {done['copied_to']}" if yes and done.get("copied_to") else ""
        st.session_state["ck_flash"] = f"Check #{check['id']}: {'yes' if yes else 'no'}{md(where)}"
        st.rerun()

    b1, b2, b3 = st.columns(3)
    if b1.button("Yes", key="ck_yes", shortcut="Y", type="primary", width="stretch", icon=":material/check:"):
        answer(True)
    if b2.button("No", key="ck_no", shortcut="N", width="stretch", icon=":material/close:"):
        answer(False)
    if b3.button("Skip", key="ck_skip", shortcut="S", width="stretch"):
        try:
            release_check(conn, check_id=check["id"], inspector=inspector)  # another inspector can take it now
        except ConsoleError as exc:
            show_error(exc)
        else:
            skipped.append(check["id"])
            st.rerun()
    st.caption("Keyboard: Y yes (the image is copied to the filter's output), N no, S skip.")
