"""Review queue: confirm or override the model, one photo at a time, from the keyboard.

A decision reruns only the photo panel (``st.fragment``): its buttons act in callbacks, before the panel is
drawn, so a key press is one run that draws the next photo (not the old photo again, then the next). The title
and the filters are drawn by full runs only (a filter change is one).

Shipping labels (issue 26 item 1): a package photo (and, with the suggestion hidden, every photo) has an expander
with its label boxes, the editor of ``pages.label_editor``. The expander tracks whether it is open and draws
nothing while closed, and the editor is a fragment of its own: decisions do not pay for it, and editing a box
reruns the editor alone.
"""

import streamlit as st

from pages.common import current_user, db, md, person_acted, show_error, similarity_index, thumbnails
from pages.label_editor import label_boxes_section
from pages.markup import plural, when
from pages.photos import ZOOM_LEVELS, review_name, zoomed
from pages.photos import show as show_photo
from services.core.config import CLASSES, get_settings
from services.core.errors import ConsoleError
from services.core.wording import queue_reason_text
from services.hitl.answers import last_answer, submit, undo_last
from services.hitl.queue import claim_next, flag, out_of_reach, peek_next, queue_counts, release
from services.hitl.similar_cases import catalog_flags_of, reuse_flag_of, similar_decided
from services.reviews.rules import photo_qualifies

PHOTO_SIZE = 720  # the photo large, above the fold
ZOOM_SIZE = 2048  # zoomed: full width, detail kept
PREFETCH = 2  # photos loaded ahead while the inspector looks at this one
ERROR_KEY = "q_error"  # a callback's refusal, shown by the panel it reran

st.title("Review queue")
conn = db(needs="reviews.label")
f1, f2, f3 = st.columns(3)
f_type = f1.selectbox("Review type", [None, *get_settings(conn)["credit_rules"]], key="q_f_type",
                      format_func=lambda v: v or "all")
f_label = f2.selectbox("Model's class", [None, *CLASSES], key="q_f_label",
                       format_func=lambda v: (v or "all").replace("_", " "))
f_band = f3.slider("Model confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="q_f_band")
band = None if f_band == (0.0, 1.0) else (f_band[0], f_band[1] + (1e-9 if f_band[1] == 1.0 else 0.0))
filters = {"review_type": f_type, "label": f_label, "band": band}


def held_while(status: str) -> str:
    """What a live copy flag means for the review's credit, by the flag's status (open or confirmed)."""
    if status == "confirmed":
        return "an admin confirmed the copy: its credit stays held."
    return "its credit is held until an admin clears it."


def acting():  # type: ignore[no-untyped-def]
    """(connection, inspector) for a callback: a person's action, on this run's connection."""
    person_acted()
    return db(), current_user().name


def failed(exc: ConsoleError) -> None:
    st.session_state[ERROR_KEY] = str(exc)


def decide(image_id: int, label: str | None) -> None:
    if label is None:
        return
    conn, inspector = acting()
    try:
        saved = submit(conn, image_id=image_id, label=label, actor=inspector)
        st.session_state["q_last"] = f"Saved {saved['label']} for image {image_id}: {md(saved['reason'])}"
    except ConsoleError as exc:
        failed(exc)


def submit_selected(image_id: int) -> None:
    decide(image_id, st.session_state.get(f"q_label_{image_id}"))


def skip(image_id: int) -> None:
    conn, inspector = acting()
    try:
        release(conn, image_id=image_id, inspector=inspector)
        st.session_state.setdefault("q_skipped", []).append(image_id)
    except ConsoleError as exc:
        failed(exc)


def undo() -> None:
    conn, inspector = acting()
    try:
        undone = undo_last(conn, actor=inspector)
        st.session_state["q_last"] = f"Undid your {undone['label'].replace('_', ' ')} for image {undone['image_id']}: it is back in front of you."
        st.session_state["q_skipped"] = [i for i in st.session_state.get("q_skipped", []) if i != undone["image_id"]]
    except ConsoleError as exc:
        failed(exc)


def unskip() -> None:
    person_acted()
    st.session_state["q_skipped"] = []


def flag_photo(image_id: int) -> None:
    conn, inspector = acting()
    try:
        flag(conn, image_id=image_id, inspector=inspector,
             reason=st.session_state.get("q_flag_reason", "the photo does not load"))
        st.session_state["q_last"] = f"Flagged image {image_id}: it left the queue and will be retried on the next import."
    except ConsoleError as exc:
        failed(exc)


def toggle_zoom() -> None:
    person_acted()
    st.session_state["q_zoomed"] = not st.session_state.get("q_zoomed", False)


@st.fragment
def panel() -> None:
    """What a decision changes: the counts, the photo on screen with its review, and the buttons. A service's
    refusal is shown here (a fragment's run is not inside app.py's handler)."""
    try:
        draw_panel()
    except ConsoleError as exc:
        show_error(exc)


def draw_panel() -> None:
    conn = db()  # a fragment's run has a thread (and a connection) of its own
    settings = get_settings(conn)
    inspector = current_user().name
    filtered = any(filters.values())
    counts = queue_counts(conn, **filters)  # the photos these filters let through: what this page will show
    waiting = sum(n for reason, n in counts.items() if reason != "adjudication")
    st.caption(
        f"{plural(waiting, 'photo')} waiting{' that match these filters' if filtered else ''}: "
        f"{counts.get('audit', 0) + counts.get('rereview', 0):,} audits and re-reviews, "
        f"{counts.get('low_confidence', 0):,} low confidence, {counts.get('no_model', 0):,} waiting for a first model"
        + (f" · {counts['adjudication']:,} waiting for an admin's adjudication" if counts.get("adjudication") else "")
    )
    if "q_last" in st.session_state:
        st.success(st.session_state.pop("q_last"), icon=":material/check:")
    if ERROR_KEY in st.session_state:
        st.error(md(st.session_state.pop(ERROR_KEY)), icon=":material/error:")

    skipped = st.session_state.setdefault("q_skipped", [])
    try:
        item = claim_next(conn, inspector=inspector, skip=skipped, settings=settings, **filters)
    except ConsoleError as exc:
        show_error(exc)
        return
    mine = last_answer(conn, actor=inspector)
    if item is None:
        away = out_of_reach(conn, inspector=inspector, skip=skipped, **filters)
        where = [f"{n:,} {what}" for n, what in (
            (away["held_by_others"], "being labelled by other inspectors (or waiting for their answers)"),
            (away["answered_by_you"], "answered by you, waiting for other inspectors' independent answers"),
            (away["skipped"], "skipped by you this session"),
            (away["filtered_out"], "outside these filters"),
            (away["adjudication"], "waiting for an admin's adjudication")) if n]
        if where:
            st.info("Nothing for you to label right now. The photos still in the queue are: " + "; ".join(where) + ".",
                    icon=":material/hourglass_empty:")
        else:
            st.info("The queue is empty.", icon=":material/done_all:")
        if skipped:
            st.button("Show skipped photos again", key="q_unskip", on_click=unskip)
        if mine:
            st.button(f"Undo your last label (image {mine['image_id']})", key="q_undo", shortcut="U", on_click=undo)
        return
    photo(conn, item, settings=settings, inspector=inspector, mine=mine)
    # load the next photos while this one is being looked at, so deciding shows the next one at once
    cache = thumbnails()
    for upcoming in peek_next(conn, inspector=inspector, skip=[*skipped, item["id"]], limit=PREFETCH, **filters):
        cache.prefetch(upcoming["uri"], upcoming["sha256"], PHOTO_SIZE)


def photo(conn, item: dict, *, settings: dict, inspector: str, mine: dict | None) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The photo on screen, what is known of it, and the buttons that decide it."""
    zoom = st.session_state.get("q_zoomed", False)
    z1, z2 = st.columns([1, 3])
    z1.button("Zoom out" if zoom else "Zoom in", key="q_zoom", shortcut="Z", type="tertiary",
              icon=":material/zoom_out:" if zoom else ":material/zoom_in:", on_click=toggle_zoom)
    if zoom:  # across the whole page, as tall as the window; 2x and 4x pan with the scroll bars, wheel or trackpad
        level = z2.segmented_control("Zoom", list(ZOOM_LEVELS), default="fit", key="q_zoom_level",
                                     format_func=ZOOM_LEVELS.get, label_visibility="collapsed") or "fit"
        zoomed(label=f"photo {item['id']}", uri=item["uri"], sha256=item["sha256"], size=ZOOM_SIZE, level=level)
    left, right = st.columns([3, 2])
    with left:
        if not zoom:
            show_photo(st, label=f"photo {item['id']}", uri=item["uri"], sha256=item["sha256"], size=PHOTO_SIZE)
        # the label boxes to hide (pages.label_editor), drawn only while its expander is open
        label_boxes_section(item, hide_suggestion=settings["hide_suggestion"])
    with right:
        st.markdown(f"**{md(item['review_type'])}** review · product **{md(item['product'] or '?')}** · user **{md(item['user_id'] or '?')}**")
        st.caption(f"Submitted {when(item['submitted_at'])} · in the queue because {md(queue_reason_text(item['queue_reason']))}")
        if item["text"]:
            st.text(item["text"])  # customer text, shown literally
        pred = item["prediction"]
        suggest = pred if pred and not settings["hide_suggestion"] else None
        if suggest:
            st.metric("Model suggests", suggest["label"].replace("_", " "))
            st.caption(f"{suggest['confidence']:.0%} confidence")
        elif not pred:
            st.caption("No model prediction: no model had been trained when this photo arrived.")
        for other in item["other_photos"]:
            show_photo(st, label=f"photo {other['id']}", uri=other["uri"], sha256=other["sha256"], size=160, width=120,
                       caption=f"other photo in this review ({other['status']})", details=False)
        reused = reuse_flag_of(conn, image_id=item["id"], actor=inspector)
        if reused:
            st.warning(f"This photo looks reused from review {md(review_name(reused['other_review_id']))} (user "
                       f"{md(reused['other_user_id'] or '?')}); {held_while(reused['status'])}",
                       icon=":material/content_copy:")
            show_photo(st, label=f"photo {reused['other_image_id']}", uri=reused["other_uri"],
                       sha256=reused["other_sha256"], size=160, width=160, details=False,
                       caption=f"the earlier photo ({md(reused['kind'])} copy, {md(reused['how'])})")
        for flag in catalog_flags_of(conn, image_id=item["id"], actor=inspector):
            held = f" {held_while(flag['status']).capitalize()}" if flag["kind"] == "copy" else ""
            st.warning(f"Catalog check: {md(flag['reason'] or '')}.{held}", icon=":material/storefront:")
            cols = st.columns(max(1, min(3, len(flag["shown"]))))
            for n, near in enumerate(flag["shown"][:6]):
                show_photo(cols[n % len(cols)], label="catalog", uri=near["uri"], sha256=near["sha256"] or None,
                           size=160, width=120, details=False, caption=md(near["caption"]))
        similar = similar_decided(conn, image_id=item["id"], actor=inspector, index=similarity_index())
        if similar:
            st.caption("Most similar photos already decided:")
            cols = st.columns(len(similar))
            for col, case in zip(cols, similar):
                who = "the model" if case["source"] == "auto" else "a person"
                show_photo(col, label=f"photo {case['image_id']}", uri=case["uri"], sha256=case["sha256"], size=160,
                           width=120, details=False,
                           caption=f"{case['label'].replace('_', ' ')} · by {who} · {case['similarity']:.0%} alike")
        choice = st.radio("Label", CLASSES, key=f"q_label_{item['id']}", horizontal=True,
                          index=CLASSES.index(suggest["label"]) if suggest else None,
                          format_func=lambda c: c.replace("_", " "))
        if choice:
            ok, why = photo_qualifies(review_type=item["review_type"], label=choice, rules=settings["credit_rules"])
            (st.success if ok else st.warning)(f"Credit rule: {md(why)}")
        b1, b2 = st.columns(2)
        b1.button("Submit label", key="q_submit", type="primary", disabled=choice is None, shortcut="Enter",
                  width="stretch", on_click=submit_selected, args=(item["id"],))
        b2.button("Accept suggestion", key="q_accept", disabled=suggest is None, shortcut="A", width="stretch",
                  on_click=decide, args=(item["id"], suggest["label"] if suggest else None))
        b3, b4 = st.columns(2)
        b3.button("Skip", key="q_skip", shortcut="S", width="stretch", on_click=skip, args=(item["id"],))
        b4.button("Undo last", key="q_undo", shortcut="U", disabled=mine is None, width="stretch", on_click=undo,
                  help=f"Take back your label for image {mine['image_id']}" if mine else "Nothing to undo yet")
        st.caption("Keyboard: 1–4 decide at once, A accepts the suggestion, Enter submits the selected label, "
                   "S skips, U undoes your last label, Z zooms.")
        quick = st.columns(2)
        for n, cls in enumerate(CLASSES, start=1):
            quick[(n - 1) % 2].button(f"{n} · {cls.replace('_', ' ')}", key=f"q_quick_{cls}", shortcut=str(n),
                                      width="stretch", on_click=decide, args=(item["id"], cls))
        with st.popover("Photo will not load or is unusable", key="q_flag_menu"):
            st.text_input("What is wrong?", "the photo does not load", key="q_flag_reason")
            st.button("Flag and skip", key="q_flag", on_click=flag_photo, args=(item["id"],))


panel()
