"""The review queue's shipping-label editor (issue 26 item 1): a photo's label boxes (barcodes, QR codes, text
blocks) drawn on it beside the photo as published; the inspector removes a box, restores a removed one or adds
one (corners in the photo's pixels; the box being typed is drawn in orange before it is added), each
change recorded by ``services.redaction.store``.

Which photos get the editor: with the model's suggestion shown, those whose labels were searched or should be
(``services.reviews.label_search.search_state``: the model, a decision or an answer calls it a package, or its
review type wants one). With the suggestion hidden, every photo: an editor on package photos alone would give the
suggestion away. The expander tracks whether it is open and draws (and reads) nothing while closed; the editor is
a fragment of its own, so editing a box reruns the editor alone. A change's outcome is shown right under the
"Add box" button and as a toast, where the inspector is looking.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from pages.common import current_user, db, md, person_acted, show_error, thumbnail
from pages.markup import plural, when
from services.core.config import get_settings
from services.core.errors import ConsoleError
from services.faces.label_masks import redact_photo
from services.redaction import store as label_store
from services.redaction.labels import KIND_NAMES, KINDS
from services.reviews.label_search import search_state

PREVIEW_SIZE = 720
LABEL_COLOURS = {"barcode": (230, 40, 40), "qr": (200, 0, 200), "text": (20, 150, 20)}
NEW_BOX_COLOUR = (255, 150, 0)  # the box typed into the form, drawn before it is added
CORNER_LABELS = {"x1": "Left (x1)", "y1": "Top (y1)", "x2": "Right (x2)", "y2": "Bottom (y2)"}
LABEL_NOTE_KEY = "q_lb_note"
LABEL_ERROR_KEY = "q_lb_error"
LABEL_EDITS_SHOWN = 5  # the latest edits listed under the form (a toggle lists them all)
LIST_ROWS = 6  # more boxes than this are listed in a scrolling box...
LIST_HEIGHT = 300  # ...this many pixels tall
TITLE = "Shipping labels: boxes hidden when published"
NOT_SEARCHED = {
    "pending": "This photo's labels have not been searched yet: the worker's label search will look at it soon "
               "(reopen this panel to see what it found). Boxes added by hand are kept.",
    "off": "This photo's labels were not searched: the shipping-label setting (Settings > Shipping labels) is "
           "off. Add boxes by hand below.",
    "not_wanted": "This photo's labels have not been searched. Add boxes by hand below if it shows a label.",
}


def labels_wanted(item: dict[str, Any], *, hide_suggestion: bool) -> bool:
    """Whether the photo gets the editor (see the module docstring)."""
    if hide_suggestion:
        return True
    pred = item.get("prediction")
    if pred and pred.get("label") == "package":
        return True
    return search_state(db(), image_id=item["id"], actor=current_user().name)["state"] != "not_wanted"


def labels_key(image_id: int) -> str:
    return f"q_labels_{image_id}"


def label_boxes_section(item: dict[str, Any], *, hide_suggestion: bool) -> None:
    """The expander with the editor inside, open or closed as the inspector left it for this photo."""
    try:
        if not labels_wanted(item, hide_suggestion=hide_suggestion):
            return
    except ConsoleError as exc:
        show_error(exc)
        return
    box = st.expander(TITLE, key=labels_key(item["id"]), on_change="rerun", icon=":material/qr_code_2:")
    if box.open:
        with box:
            label_editor(item["id"], item["uri"], item["sha256"], hide_suggestion)


def kind_name(kind: str) -> str:
    """A box's kind as the editor says it ("QR or 2D code"); an unknown kind as it is stored."""
    return KIND_NAMES.get(kind, kind)


def corners(b: dict[str, Any]) -> str:
    """A box's corners in whole pixels (what the number inputs take)."""
    return f"x {b['x1']:.0f}–{b['x2']:.0f}, y {b['y1']:.0f}–{b['y2']:.0f}"


def _told(note: str) -> None:
    st.session_state[LABEL_NOTE_KEY] = note
    st.toast(note, icon=":material/check:")


def _refused(exc: ConsoleError) -> None:
    st.session_state[LABEL_ERROR_KEY] = str(exc)
    st.toast(str(exc), icon=":material/error:")


def box_numbers(boxes: list[dict[str, Any]]) -> dict[int, int]:
    """Each of a photo's boxes (kept and removed) numbered 1, 2, ... in the order they were made: the number drawn
    on the photo and used in the list, the messages and the history (a row id means nothing to an inspector)."""
    return {box_id: n for n, box_id in enumerate(sorted(b["id"] for b in boxes), 1)}


def _box_action(change: Callable[..., dict[str, Any]], box_id: int, number: int, *, done: str, then: str) -> None:
    """Remove or restore a box (``change`` is the store's function), told or refused by the Add box button."""
    person_acted()
    try:
        b = change(db(), box_id=box_id, actor=current_user().name)
        _told(f"{done} {kind_name(b['kind'])} {number} ({corners(b)}): {then}.")
    except ConsoleError as exc:
        _refused(exc)


def remove_label(box_id: int, number: int) -> None:
    _box_action(label_store.remove_label_box, box_id, number, done="Removed", then="it will not be hidden")


def restore_label(box_id: int, number: int) -> None:
    _box_action(label_store.restore_label_box, box_id, number, done="Restored", then="it will be hidden again")


def add_label(image_id: int) -> None:
    person_acted()
    state = st.session_state
    try:
        b = label_store.add_label_box(db(), image_id=image_id, kind=state.get(f"q_lb_kind_{image_id}", "text"),
                          x1=state.get(f"q_lb_x1_{image_id}"), y1=state.get(f"q_lb_y1_{image_id}"),
                          x2=state.get(f"q_lb_x2_{image_id}"), y2=state.get(f"q_lb_y2_{image_id}"),
                          actor=current_user().name)
        found = label_store.label_boxes(db(), image_id=image_id, actor=current_user().name)
        number = box_numbers(found["boxes"] + found["removed"]).get(b["id"], "?")
        _told(f"Added {kind_name(b['kind'])} {number} ({corners(b)}): it will be hidden.")
    except ConsoleError as exc:
        _refused(exc)


@st.fragment
def label_editor(image_id: int, uri: str, sha256: str | None, hide_suggestion: bool) -> None:
    """The boxes on the photo, the photo as published, a Remove button per box, a Restore button per removed box
    and the form that adds one. A service's refusal is shown by the form."""
    try:
        draw_label_editor(image_id, uri, sha256, hide_suggestion)
    except ConsoleError as exc:
        show_error(exc)


def draw_label_editor(image_id: int, uri: str, sha256: str | None, hide_suggestion: bool) -> None:
    conn, inspector = db(), current_user().name
    found = label_store.label_boxes(conn, image_id=image_id, actor=inspector)
    boxes, width, height = found["boxes"], found["width"], found["height"]
    numbers = box_numbers(boxes + found["removed"])
    if found["error"]:
        st.warning(f"The search for labels failed: {md(found['error'])}", icon=":material/warning:")
    elif not found["looked"]:
        state = search_state(conn, image_id=image_id, actor=inspector)["state"]
        if hide_suggestion:  # why a photo is (not) searched would tell what the model thinks: said alike for all
            state = "off" if not get_settings(conn)["redact_package_labels"] else "not_wanted"
        st.caption(NOT_SEARCHED.get(state, NOT_SEARCHED["not_wanted"]))
    data, _ = thumbnail(uri, sha256, PREVIEW_SIZE)
    if data:
        frame = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        left, right = st.columns(2)
        new = pending_box(image_id)
        if new and any(all(abs(b[k] - v) < label_store.SAME_CORNERS for k, v in zip(("x1", "y1", "x2", "y2"), new))
                       for b in boxes):
            new = None  # the typed box was just added (or is already hidden): it is drawn with its number
        left.image(boxes_drawn(frame, boxes, width=width, height=height, numbers=numbers, new=new),
                   caption=f"{plural(len(boxes), 'box', 'boxes')} to hide"
                   + (" · orange: the box typed below, not added yet" if new else ""))
        right.image(redact_photo(conn, image_id=image_id, frame=frame, actor=inspector), caption="as published")
    else:  # why is said above the editor, where the photo would be; this says what is missing here
        st.caption("The photo could not be loaded, so its boxes cannot be drawn on it: the list below still "
                   "holds them.")
    rows = len(boxes) + len(found["removed"])  # a long list scrolls in place: the form below stays in reach
    listing = st.container(height=LIST_HEIGHT, key=f"q_lb_list_{image_id}") if rows > LIST_ROWS else st.container()
    for b in boxes:
        c1, c2 = listing.columns([4, 1])
        who = "found" if b["source"] == "auto" else "added by an inspector"
        c1.caption(f"**{kind_name(b['kind'])} {numbers[b['id']]}** ({who}): {corners(b)}")
        c2.button("Remove", key=f"q_lb_rm_{b['id']}", on_click=remove_label, args=(b["id"], numbers[b["id"]]),
                  type="tertiary",
                  icon=":material/delete:")
    for b in found["removed"]:
        c1, c2 = listing.columns([4, 1])
        c1.caption(f"~~{kind_name(b['kind'])} {numbers[b['id']]}~~ removed by {md(b['removed_by'])} {md(when(b['removed_at']))}: "
                   f"{corners(b)}")
        c2.button("Restore", key=f"q_lb_restore_{b['id']}", on_click=restore_label, args=(b["id"], numbers[b["id"]]),
                  type="tertiary", icon=":material/undo:")
    st.caption(f"Add a box the search missed, in the photo's pixels ({width or '?'} x {height or '?'}; x to the "
               "right, y down, from the top left corner):")
    k, x1, y1, x2, y2 = st.columns([2, 1, 1, 1, 1])  # the kind's selector fits "QR or 2D code"
    k.selectbox("Kind", KINDS, key=f"q_lb_kind_{image_id}", format_func=KIND_NAMES.get)
    for col, name in ((x1, "x1"), (y1, "y1"), (x2, "x2"), (y2, "y2")):
        # no min or max: a value past the edge would be silently replaced by the last valid one; the service
        # says what is wrong instead
        col.number_input(CORNER_LABELS[name], value=0, step=10, key=f"q_lb_{name}_{image_id}")
    st.button("Add box", key=f"q_lb_add_{image_id}", on_click=add_label, args=(image_id,), icon=":material/add_box:")
    if LABEL_NOTE_KEY in st.session_state:  # right by the button that was pressed (and as a toast)
        st.success(md(st.session_state.pop(LABEL_NOTE_KEY)), icon=":material/check:")
    if LABEL_ERROR_KEY in st.session_state:
        st.error(md(st.session_state.pop(LABEL_ERROR_KEY)), icon=":material/error:")
    edits = label_store.label_box_edits(conn, image_id=image_id, actor=inspector)
    every = st.session_state.get(f"q_lb_all_{image_id}", False)
    if len(edits) > LABEL_EDITS_SHOWN:  # said, not silently cut: the toggle lists them all
        st.toggle(f"Show all {len(edits)} changes", key=f"q_lb_all_{image_id}")
        st.caption(f"All {len(edits)} changes, newest first:" if every
                   else f"The latest {LABEL_EDITS_SHOWN} of {len(edits)} changes, newest first:")
    for e in (edits if every else edits[-LABEL_EDITS_SHOWN:])[::-1]:
        st.caption(f"{md(when(e['at']))} · {md(e['actor'])} {e['action']} {kind_name(e['kind'])} "
                   f"{numbers.get(e['box_id'], '?')} "
                   f"({corners(e)})")


def pending_box(image_id: int) -> tuple[float, float, float, float] | None:
    """The corners typed into the form when they make a box (x1 < x2, y1 < y2), else None."""
    try:
        x1, y1, x2, y2 = (float(st.session_state.get(f"q_lb_{n}_{image_id}") or 0) for n in ("x1", "y1", "x2", "y2"))
    except (TypeError, ValueError):
        return None
    return (x1, y1, x2, y2) if x1 < x2 and y1 < y2 else None


def boxes_drawn(frame: np.ndarray, boxes: list[dict[str, Any]], *, width: int | None, height: int | None,
                numbers: dict[int, int], new: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The frame with each box outlined in its kind's colour, scaled from the photo's pixels, and its number on a
    tag large enough to read with the photo shown small; ``new`` (the box typed into the form) in orange."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    fx = frame.shape[1] / width if width else 1.0
    fy = frame.shape[0] / height if height else 1.0
    line = max(2, frame.shape[1] // 300)
    font = ImageFont.load_default(size=max(14, max(frame.shape[:2]) // 26))
    tagged = [(b["x1"], b["y1"], b["x2"], b["y2"], LABEL_COLOURS[b["kind"]], str(numbers[b["id"]])) for b in boxes]
    if new:
        tagged.append((*new, NEW_BOX_COLOUR, "new"))
    for x1, y1, x2, y2, colour, tag in tagged:
        draw.rectangle((x1 * fx, y1 * fy, x2 * fx, y2 * fy), outline=colour, width=line + (tag == "new"))
    placed: list[tuple[float, float, float, float]] = []
    for x1, y1, _, _, colour, tag in tagged:  # the tags over every outline, none over another
        x, y = x1 * fx, y1 * fy
        left, top, right, bottom = draw.textbbox((x, y), tag, font=font)
        down = tag_shift((left - 2, top - 2, right + 2, bottom + 2), placed, height=frame.shape[0])
        placed.append((left - 2, top - 2 + down, right + 2, bottom + 2 + down))
        draw.rectangle(placed[-1], fill=colour)
        draw.text((x, y + down), tag, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def tag_shift(tag: tuple[float, float, float, float], placed: list[tuple[float, float, float, float]], *,
              height: float) -> float:
    """How far down (or up) a box's number tag (its rectangle at the box's top left corner) is moved so that it
    stays on a photo ``height`` pixels tall and covers no tag already ``placed``: first just onto the photo (a box
    at its bottom edge), then a tag's height (and a gap) at a time, down or up, nearest first, so boxes with close
    corners keep readable numbers. When no place is free (a photo shorter than the stack of tags) the tag is drawn
    just onto the photo, over another. Raises nothing."""
    left, top, right, bottom = tag
    base = max(-top, min(0.0, height - bottom))  # onto the photo (0 when it is on it)
    step = bottom - top + 3
    for n in range(2 * len(placed) + 1):  # a placed tag blocks at most two steps each way
        for shift in ((base,) if n == 0 else (base + n * step, base - n * step)):
            inside = top + shift >= 0 and bottom + shift <= height
            if inside and not any(left < r and right > lft and top + shift < b and bottom + shift > t
                                  for lft, t, r, b in placed):
                return float(shift)
    return float(base)
