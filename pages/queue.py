"""Review queue: confirm or override the model, one photo at a time."""

import streamlit as st

from pages.common import current_user, db, md, show_error, show_photo
from services.config import CLASSES, get_settings
from services.errors import ConsoleError
from services.queue import claim_next, queue_counts, release, submit
from services.rules import photo_qualifies

st.title("Review queue")
conn = db()
settings = get_settings(conn)
counts = queue_counts(conn)
st.caption(
    f"{sum(counts.values()):,} photos waiting: {counts.get('audit', 0):,} audits, "
    f"{counts.get('low_confidence', 0):,} low confidence, {counts.get('no_model', 0):,} waiting for a first model"
)
if "q_last" in st.session_state:
    st.success(st.session_state.pop("q_last"), icon=":material/check:")

f1, f2, f3 = st.columns(3)
f_type = f1.selectbox("Review type", [None, *settings["credit_rules"]], key="q_f_type", format_func=lambda v: v or "all")
f_label = f2.selectbox("Model's class", [None, *CLASSES], key="q_f_label", format_func=lambda v: v or "all")
f_band = f3.slider("Model confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="q_f_band")
band = None if f_band == (0.0, 1.0) else (f_band[0], f_band[1] + (1e-9 if f_band[1] == 1.0 else 0.0))

inspector = current_user().name
skipped = st.session_state.setdefault("q_skipped", [])
try:
    item = claim_next(conn, inspector=inspector, skip=skipped, review_type=f_type, label=f_label, band=band)
except ConsoleError as exc:
    show_error(exc)
    st.stop()
if item is None:
    filtered = f_type or f_label or band
    st.info("The queue is empty" + (" for these filters" if filtered else "") + "."
            + (" (Some photos were skipped this session.)" if skipped else ""))
    if skipped and st.button("Show skipped photos again", key="q_unskip"):
        st.session_state["q_skipped"] = []
        st.rerun()
    st.stop()

left, right = st.columns([3, 2])
show_photo(left, uri=item["uri"], sha256=item["sha256"], size=600)  # the whole photo above the fold
with right:
    st.markdown(f"**{md(item['review_type'])}** review · product **{md(item['product'] or '?')}** · user **{md(item['user_id'] or '?')}**")
    st.caption(f"Submitted {item['submitted_at']} · in the queue because: {item['queue_reason'] or 'audit'}")
    if item["text"]:
        st.text(item["text"])
    pred = item["prediction"]
    if pred and not settings["hide_suggestion"]:
        st.metric("Model suggests", pred["label"].replace("_", " "))
        st.caption(f"{pred['confidence']:.0%} confidence")
    elif not pred:
        st.caption("No model prediction: no model had been trained when this photo arrived.")
    for other in item["other_photos"]:
        show_photo(st, uri=other["uri"], sha256=other["sha256"], size=160, width=120,
                   caption=f"other photo in this review ({other['status']})")
    choice = st.radio("Label", CLASSES, key=f"q_label_{item['id']}", horizontal=True,
                      index=CLASSES.index(pred["label"]) if pred and not settings["hide_suggestion"] else None,
                      format_func=lambda c: c.replace("_", " "))
    if choice:
        ok, why = photo_qualifies(review_type=item["review_type"], label=choice, rules=settings["credit_rules"])
        (st.success if ok else st.warning)(f"Credit rule: {why}")

    def save(label: str) -> None:
        try:
            d = submit(conn, image_id=item["id"], label=label, actor=inspector)
            st.session_state["q_last"] = f"Saved {d['label']} for image {item['id']}: {d['reason']}"
            st.rerun()
        except ConsoleError as exc:
            show_error(exc)

    b1, b2 = st.columns(2)
    if b1.button("Submit label", key="q_submit", type="primary", disabled=choice is None, shortcut="Enter"):
        save(choice)
    if b2.button("Skip", key="q_skip", shortcut="S"):
        release(conn, image_id=item["id"], inspector=inspector)
        skipped.append(item["id"])
        st.rerun()
    st.caption("Keyboard: 1–4 decide at once, Enter submits the selected label, S skips.")
    quick = st.columns(len(CLASSES))
    for n, cls in enumerate(CLASSES, start=1):
        if quick[n - 1].button(f"{n} · {cls.replace('_', ' ')}", key=f"q_quick_{cls}", shortcut=str(n)):
            save(cls)
