"""Reviews: a filterable, sortable table of photos with thumbnails, labels and decisions; a detail view."""

import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from pages.common import current_user, db, md, show_error, thumbnail
from pages.markup import plural, when
from pages.photos import data_url, review_name
from pages.photos import show as show_photo
from services.core.config import CLASSES, get_settings
from services.core.errors import ConsoleError
from services.core.wording import SOURCES, STATUSES, queue_reason_text
from services.faces.label_masks import redact_photo
from services.redaction.store import label_boxes
from services.reviews.outcomes import list_images, review_detail

PAGE_SIZE = 50
PUBLISHED_SIZE = 512


def show_published(container, photo: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """A photo with shipping-label boxes to hide, as it is published (the export writes this copy; the queue's
    editor shows the same masks). Nothing for a photo with nothing to hide."""
    hidden = label_boxes(conn, image_id=photo["id"], actor=user.name)["boxes"]
    if not hidden:
        return
    data, _ = thumbnail(photo["uri"], photo["sha256"], PUBLISHED_SIZE)
    if data:
        frame = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        n = len(hidden)
        container.image(redact_photo(conn, image_id=photo["id"], frame=frame, actor=user.name),
                        caption=f"photo {photo['id']} as published · {n} label {'box' if n == 1 else 'boxes'} hidden")


st.title("Reviews")
conn = db(needs="reviews.read")
user = current_user()
settings = get_settings(conn)

f = st.columns([2, 2, 2, 2, 3])
review_type = f[0].selectbox("Review type", [None, *settings["credit_rules"]], key="rv_type", format_func=lambda v: v or "all")
status = f[1].selectbox("Status", [None, "pending", "queued", "decided", "failed"], key="rv_status",
                        format_func=lambda v: STATUSES.get(v, v) if v else "all")
label = f[2].selectbox("Decided label", [None, *CLASSES], key="rv_label", format_func=lambda v: v or "all")
source = f[3].selectbox("Decided by", [None, "auto", "human"], key="rv_source",
                        format_func=lambda v: SOURCES.get(v, v) if v else "anyone")
search = f[4].text_input("Search review, product or user", key="rv_search")
s = st.columns([2, 1, 3])
SORTS = {"submitted_at": "time submitted", "confidence": "model confidence", "review_id": "review",
         "label": "decided label", "status": "status"}
sort = s[0].selectbox("Sort by", list(SORTS), key="rv_sort", format_func=SORTS.get)
descending = s[1].toggle("Descending", value=True, key="rv_desc")


def fetch(page: int) -> tuple[list[dict], int]:
    return list_images(conn, actor=user.name, review_type=review_type, status=status, label=label, source=source,
                       search=search, sort=sort, descending=descending, limit=PAGE_SIZE, offset=PAGE_SIZE * (page - 1))


page = st.session_state.get("rv_page", 1)
rows, total = fetch(page)
pages = max(1, -(-total // PAGE_SIZE))
if page > pages:  # narrower filters left the page number past the end: show the last page that exists
    st.session_state["rv_page"] = page = pages
    rows, total = fetch(page)
s[2].number_input(f"Page (of {pages}; {plural(total, 'photo')})", min_value=1, max_value=pages, key="rv_page")


if rows:
    table = pd.DataFrame(
        [
            {
                "photo": data_url(r["uri"], r["sha256"]),
                "review": review_name(r["review_id"]),
                "type": r["review_type"],
                "product": r["product"],
                "user": r["user_id"],
                "submitted": when(r["submitted_at"]),
                "status": STATUSES.get(r["status"], r["status"])
                + (f" ({queue_reason_text(r['queue_reason'])})" if r["queue_reason"] else ""),
                "model label": r["predicted"],
                "confidence": r["confidence"],
                "decision": r["label"],
                "credit": None if r["credit"] is None else bool(r["credit"]),
                "by": SOURCES.get(r["source"], r["source"]),
                "reason": r["reason"] or r["error"],
            }
            for r in rows
        ]
    )
    st.dataframe(
        table,
        key="rv_table",
        hide_index=True,
        width="stretch",
        column_config={
            "photo": st.column_config.ImageColumn("photo", width="small"),
            "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="percent"),
        },
    )
else:
    st.info("No photos match these filters.")

st.subheader("Review detail")
choices = list(dict.fromkeys(r["review_id"] for r in rows))
selected = st.selectbox("Review", choices, key="rv_detail", index=None, placeholder="Pick a review from this page",
                        format_func=review_name)
if selected:
    try:
        detail = review_detail(conn, selected, actor=user.name)
    except ConsoleError as exc:
        show_error(exc)
        st.stop()
    rv, outcome = detail["review"], detail["outcome"]
    credit = {True: "credit granted", False: "no credit", None: "undecided"}[outcome["credit"]]
    st.markdown(f"**{md(rv['review_type'])}** review of **{md(rv['product'] or 'unknown product')}** by **{md(rv['user_id'] or '?')}** "
                f"on {when(rv['submitted_at'])}: **{credit}** — {md(outcome['reason'])}")
    if rv["text"]:
        st.text(rv["text"])  # customer text is shown as plain text, never as markdown
    for photo in detail["photos"]:
        c1, c2 = st.columns([1, 2])
        show_photo(c1, label=f"photo {photo['id']}", uri=photo["uri"], sha256=photo["sha256"], size=512)
        try:
            show_published(c1, photo)
        except ConsoleError as exc:
            show_error(exc)
        c2.write(f"Status: **{STATUSES.get(photo['status'], photo['status'])}**"
                 + (f" ({md(queue_reason_text(photo['queue_reason']))})" if photo["queue_reason"] else ""))
        if photo["predictions"]:
            p = photo["predictions"][0]
            c2.write(f"Model {md(p['model_version'])}: **{md(p['label'])}** at {p['confidence']:.0%}")
            c2.bar_chart(pd.Series(p["probabilities"], name="probability"), height=160)
        if photo["decisions"]:
            history = pd.DataFrame([{"decided": when(d["decided_at"]), "label": d["label"],
                                     "credit": None if d["credit"] is None else bool(d["credit"]),
                                     "by": SOURCES.get(d["source"], d["source"]), "who": d["decided_by"],
                                     "reason": d["reason"]} for d in photo["decisions"]])
            c2.dataframe(history, hide_index=True, key=f"rv_hist_{photo['id']}")
