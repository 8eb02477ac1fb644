"""Review queue, shipping labels (issue 26 item 1): a photo the model classed as a package shows its label boxes in
an expander drawn only while open (the photo with its boxes and the photo as published); the inspector removes a
box and adds one, each change stored and recorded; other photos get no editor."""

from __future__ import annotations

import numpy as np
import pytest

from services.redaction.labels import LabelBox
from services.redaction.store import label_boxes, save_found
from tests.pages.helpers import classify_now, seed_reviews, start_app
from tests.pages.markdown_check import shown_text


@pytest.fixture
def package(ws, db, tmp_path) -> tuple[int, int]:
    """(the package photo, the other photo): two photos queued without a model; the first then predicted a
    package (confidence low enough to stay queued) with a barcode and a text block found on it."""
    seed_reviews(db, tmp_path / "photos", [
        {"review_id": "r1", "review_type": "product", "product": "kettle", "submitted_at": "2024-05-01T10:00:00Z"},
        {"review_id": "r2", "review_type": "product", "product": "coat", "submitted_at": "2024-05-02T10:00:00Z"},
    ])
    classify_now(ws, db)
    first, second = [r[0] for r in db.execute("SELECT id FROM images ORDER BY review_id, id")]
    with db.conn:
        db.execute("INSERT INTO predictions (image_id, label, confidence, probabilities, created_at) "
                   "VALUES (?, 'package', 0.55, '{}', '2024-05-03T10:00:00Z')", [first])
        # a box of another photo made first, removed: the first photo's box ids are not its boxes' numbers 1, 2
        db.execute("INSERT INTO label_boxes (image_id, kind, x1, y1, x2, y2, score, source, created_at, removed_at, "
                   "removed_by) VALUES (?, 'qr', 1, 1, 9, 9, 1.0, 'auto', '2024-05-03T10:00:00Z', "
                   "'2024-05-03T10:00:00Z', 'ada')", [second])
    save_found(db, image_id=first, boxes=[LabelBox("barcode", 10, 10, 50, 30, 1.0), LabelBox("text", 5, 40, 80, 60, 0.8)])
    return first, second


def editor_open(at, image_id: int):  # type: ignore[no-untyped-def]
    """Open the photo's label expander, as a click on it does (it reruns the page)."""
    at.session_state[f"q_labels_{image_id}"] = True
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_editor_is_closed_and_draws_nothing_until_opened(package, db, monkeypatch):
    import services.redaction.store as store

    first, _ = package
    reads = []
    boxes_of = store.label_boxes
    monkeypatch.setattr(store, "label_boxes", lambda *a, **k: reads.append(1) or boxes_of(*a, **k))
    at = start_app("pages/queue.py")
    assert "Shipping labels: boxes hidden when published" in [e.label for e in at.expander]
    assert not [b for b in at.button if (b.key or "").startswith("q_lb_")]  # closed: nothing drawn...
    assert reads == []  # ...nor read (issue 23: a decision does not pay for the editor)
    images = len(at.image)
    editor_open(at, first)
    assert reads
    assert len(at.image) == images + 2  # the boxes drawn on the photo, and the photo as published
    captions = [c for img in at.image for c in img.captions]
    assert "2 boxes to hide" in captions and "as published" in captions
    ids = [b["id"] for b in label_boxes(db, image_id=first, actor="local operator")["boxes"]]
    assert [b.key for b in at.button if (b.key or "").startswith("q_lb_rm_")] == [f"q_lb_rm_{i}" for i in ids]
    assert at.button(key=f"q_lb_add_{first}")


def test_removing_and_adding_a_box_is_stored_and_recorded(package, db):
    first, _ = package
    at = editor_open(start_app("pages/queue.py"), first)
    barcode, text = label_boxes(db, image_id=first, actor="local operator")["boxes"]
    at.button(key=f"q_lb_rm_{text['id']}").click().run()
    assert not at.exception, at.exception
    assert text["id"] != 2
    assert any(s.value.startswith("Removed text block 2 ") for s in at.success)  # numbered on the photo, not by row id
    at.selectbox(key=f"q_lb_kind_{first}").set_value("qr")
    at.number_input(key=f"q_lb_x1_{first}").set_value(20)
    at.number_input(key=f"q_lb_y1_{first}").set_value(30)
    at.number_input(key=f"q_lb_x2_{first}").set_value(60)
    at.number_input(key=f"q_lb_y2_{first}").set_value(70)
    at.button(key=f"q_lb_add_{first}").click().run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Added QR or 2D code 3 ") for s in at.success)
    left = label_boxes(db, image_id=first, actor="local operator")["boxes"]
    assert [(b["kind"], b["source"], b["x1"], b["y2"]) for b in left] == [
        ("barcode", "auto", 10, 30), ("qr", "inspector", 20, 70)]
    edits = db.execute("SELECT action, kind, actor FROM label_box_edits ORDER BY id").fetchall()
    assert edits == [("removed", "text", "local operator"), ("added", "qr", "local operator")]
    audit = db.execute("SELECT action, target FROM audit_log WHERE action LIKE 'labels.%' ORDER BY id").fetchall()
    assert audit == [("labels.box_removed", f"image:{first}"), ("labels.box_added", f"image:{first}")]
    assert [b.key for b in at.button if (b.key or "").startswith("q_lb_rm_")] == [
        f"q_lb_rm_{b['id']}" for b in left]
    assert any("local operator added QR or 2D code 3 " in c.value for c in at.caption)
    assert any("**QR or 2D code 3** (added by an inspector)" in c.value for c in at.caption)
    assert at.radio(key=f"q_label_{first}")  # the photo is still the one on screen, undecided


def test_an_empty_box_is_refused_with_the_reason(package, db):
    first, _ = package
    at = editor_open(start_app("pages/queue.py"), first)
    at.button(key=f"q_lb_add_{first}").click().run()  # all four corners still 0
    assert not at.exception, at.exception
    assert any("needs x1 < x2 and y1 < y2, got (0, 0, 0, 0)" in shown_text(e.value) for e in at.error)
    assert db.execute("SELECT COUNT(*) FROM label_box_edits").fetchone()[0] == 0


def test_a_photo_not_classed_as_a_package_has_no_label_editor(package, db):
    first, second = package
    at = start_app("pages/queue.py")
    at.button(key="q_quick_product").click().run()  # decide the package photo: the next one comes
    assert not at.exception, at.exception
    assert at.radio(key=f"q_label_{second}")
    assert "Shipping labels: boxes hidden when published" not in [e.label for e in at.expander]


def _in_order(at) -> list:  # type: ignore[no-untyped-def]
    """Every element of the page in the order it is drawn."""
    out, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(list(getattr(node, "children", {}).values())))
    return out


def _size(db, image_id: int) -> tuple[int, int]:
    return db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone()


def _corners(at, image_id: int, x1, y1, x2, y2) -> None:  # type: ignore[no-untyped-def]
    for name, value in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
        at.number_input(key=f"q_lb_{name}_{image_id}").set_value(value)


def test_a_corner_past_the_edge_is_refused_not_replaced_and_the_message_is_by_the_button(package, db):
    first, _ = package
    width, height = _size(db, first)
    at = editor_open(start_app("pages/queue.py"), first)
    _corners(at, first, 20, 30, width + 100, 70)  # the widget takes it: no max to fall back from
    at.button(key=f"q_lb_add_{first}").click().run()
    assert not at.exception, at.exception
    assert at.number_input(key=f"q_lb_x2_{first}").value == width + 100  # what was typed stays, to correct
    why = f"outside the photo: corners go from (0, 0) to ({width}, {height})"
    assert any(why in shown_text(e.value) for e in at.error)
    assert any(why in t.proto.body for t in at.toast)
    assert [b["kind"] for b in label_boxes(db, image_id=first, actor="local operator")["boxes"]] == ["barcode", "text"]
    drawn = _in_order(at)
    add = next(n for n in drawn if getattr(n, "key", None) == f"q_lb_add_{first}")
    error = next(n for n in drawn if getattr(n, "type", None) == "error" and why in shown_text(n.value))
    assert drawn.index(error) == drawn.index(add) + 1  # right under the button, not at the top of the editor


def test_an_exact_copy_of_a_box_is_refused(package, db):
    first, _ = package
    at = editor_open(start_app("pages/queue.py"), first)
    _corners(at, first, 10, 10, 50, 30)  # the barcode found
    at.button(key=f"q_lb_add_{first}").click().run()
    assert not at.exception, at.exception
    assert any("already hides the photo at (10, 10, 50, 30): nothing added" in shown_text(e.value) for e in at.error)
    assert db.execute("SELECT COUNT(*) FROM label_box_edits").fetchone()[0] == 0


def test_a_removed_box_shows_its_corners_and_comes_back_with_restore(package, db):
    first, _ = package
    barcode, text = label_boxes(db, image_id=first, actor="local operator")["boxes"]
    at = editor_open(start_app("pages/queue.py"), first)
    at.button(key=f"q_lb_rm_{text['id']}").click().run()
    assert not at.exception, at.exception
    assert "1 box to hide" in [c for img in at.image for c in img.captions]  # one box, not "1 boxes"
    assert any("Removed text block 2 (x 5–80, y 40–60)" in shown_text(s.value) for s in at.success)
    assert any("~~text block 2~~" in c.value and "x 5–80, y 40–60" in shown_text(c.value) for c in at.caption)
    edit = next(shown_text(c.value) for c in at.caption if "removed text block" in c.value)
    assert edit.endswith("local operator removed text block 2 (x 5–80, y 40–60)")
    assert " UTC · " in edit and "T" not in edit.split(" UTC")[0]  # 2026-12-05 10:51 UTC, not raw ISO
    at.button(key=f"q_lb_restore_{text['id']}").click().run()
    assert not at.exception, at.exception
    assert [b["id"] for b in label_boxes(db, image_id=first, actor="local operator")["boxes"]] == [
        barcode["id"], text["id"]]
    assert "2 boxes to hide" in [c for img in at.image for c in img.captions]
    assert db.execute("SELECT action FROM label_box_edits ORDER BY id").fetchall() == [("removed",), ("restored",)]


def test_corners_with_decimals_show_as_whole_pixels(package, db):
    first, _ = package
    save_found(db, image_id=first, boxes=[LabelBox("qr", 10.4, 20.6, 50.2, 60.5, 1.0),
                                          LabelBox("text", 100.2, 20, 1163.487, 60, 1.0)])
    at = editor_open(start_app("pages/queue.py"), first)
    assert any("x 10–50, y 21–60" in shown_text(c.value) for c in at.caption)
    text = label_boxes(db, image_id=first, actor="local operator")["boxes"][1]
    at.button(key=f"q_lb_rm_{text['id']}").click().run()
    at.button(key=f"q_lb_restore_{text['id']}").click().run()
    # the list, the message and the history say the same corner (one rounding, not 1164 in one and 1163 in another)
    said = [shown_text(c.value) for c in at.caption if "x 100–" in shown_text(c.value)]
    said += [shown_text(s.value) for s in at.success]
    assert len(said) == 4 and len({s.split("x 100–")[1][:4] for s in said}) == 1, said


def test_the_history_says_when_it_shows_only_the_latest_changes(package, db):
    first, _ = package
    barcode, _ = label_boxes(db, image_id=first, actor="local operator")["boxes"]
    at = editor_open(start_app("pages/queue.py"), first)
    for _ in range(3):  # six changes
        at.button(key=f"q_lb_rm_{barcode['id']}").click().run()
        at.button(key=f"q_lb_restore_{barcode['id']}").click().run()
    history = [c.value for c in at.caption if "local operator removed" in c.value or "local operator restored" in c.value]
    assert len(history) == 5
    assert at.toggle(key=f"q_lb_all_{first}").label == "Show all 6 changes"
    assert any(c.value == "The latest 5 of 6 changes, newest first:" for c in at.caption)
    at.toggle(key=f"q_lb_all_{first}").set_value(True).run()
    assert any(c.value == "All 6 changes, newest first:" for c in at.caption)
    history = [c.value for c in at.caption if "local operator removed" in c.value or "local operator restored" in c.value]
    assert len(history) == 6 and "restored" in history[0] and "removed" in history[-1]  # latest first


def test_a_package_photo_not_searched_yet_says_so_truthfully(package, db):
    from services.core.config import set_setting

    first, second = package
    with db.conn:
        db.execute("INSERT INTO predictions (image_id, label, confidence, probabilities, created_at) "
                   "VALUES (?, 'package', 0.55, '{}', '2024-05-03T10:00:00Z')", [second])
    at = start_app("pages/queue.py")
    at.button(key="q_quick_product").click().run()  # the next photo: a package the search has not reached
    assert at.radio(key=f"q_label_{second}")
    editor_open(at, second)
    assert any("not been searched yet: the worker's label search will look at it soon" in c.value for c in at.caption)
    assert not any("setting was off" in c.value for c in at.caption)
    set_setting(db, key="redact_package_labels", value=False, actor="cli:test")
    at.run()
    assert any("Settings > Shipping labels" in shown_text(c.value) and "is off" in c.value for c in at.caption)


def test_with_the_suggestion_hidden_every_photo_has_the_editor(package, db):
    from services.core.config import set_setting

    first, second = package
    set_setting(db, key="hide_suggestion", value=True, actor="cli:test")
    at = start_app("pages/queue.py")
    assert "Shipping labels: boxes hidden when published" in [e.label for e in at.expander]
    at.button(key="q_quick_product").click().run()
    assert at.radio(key=f"q_label_{second}")  # the model did not call this one a package...
    assert "Shipping labels: boxes hidden when published" in [e.label for e in at.expander]  # ...nothing tells
    editor_open(at, second)
    assert any("have not been searched. Add boxes by hand" in c.value for c in at.caption)


def test_with_the_suggestion_hidden_the_setting_off_reads_alike_on_every_photo(package, db):
    from services.core.config import set_setting

    first, second = package
    with db.conn:
        db.execute("DELETE FROM label_boxes")
        db.execute("DELETE FROM label_redactions")
    set_setting(db, key="hide_suggestion", value=True, actor="cli:test")
    set_setting(db, key="redact_package_labels", value=False, actor="cli:test")
    at = editor_open(start_app("pages/queue.py"), first)  # the model called this one a package
    said = [c.value for c in at.caption if "not searched" in c.value or "not been searched" in c.value]
    at.button(key="q_quick_product").click().run()
    editor_open(at, second)  # and not this one
    assert said and said == [c.value for c in at.caption if "not searched" in c.value or "not been searched" in c.value]


def test_a_long_list_of_boxes_scrolls_in_place_and_the_add_form_stays_in_reach(package, db):
    from pages.label_editor import LIST_HEIGHT, LIST_ROWS

    first, _ = package
    save_found(db, image_id=first, boxes=[LabelBox("text", 5, 10 * n, 80, 10 * n + 8, 0.8) for n in range(LIST_ROWS + 3)])
    at = editor_open(start_app("pages/queue.py"), first)

    def blocks(node):  # type: ignore[no-untyped-def]
        for child in getattr(node, "children", {}).values():
            yield child
            yield from blocks(child)

    scrolling = [b for b in blocks(at._tree) if type(b).__name__ == "Block"
                 and b.proto.WhichOneof("type") == "flex_container" and b.proto.height_config.pixel_height == LIST_HEIGHT]
    assert len(scrolling) == 1, "the boxes are listed in one box of fixed height"
    inside = [b.key for b in blocks(scrolling[0]) if type(b).__name__ == "Button"]
    assert len(inside) == len(label_boxes(db, image_id=first, actor="local operator")["boxes"]) > LIST_ROWS
    assert at.button(key=f"q_lb_add_{first}") and f"q_lb_add_{first}" not in inside


def test_number_tags_of_boxes_with_close_corners_do_not_cover_each_other():
    from pages.label_editor import boxes_drawn, tag_shift

    assert tag_shift((0, 0, 20, 10), [], height=100) == 0
    assert tag_shift((0, 0, 20, 10), [(30, 0, 50, 10)], height=100) == 0  # beside it: stays
    assert tag_shift((0, 0, 20, 10), [(5, 0, 25, 10)], height=100) == 13  # one tag's height and a gap down
    assert tag_shift((0, 0, 20, 10), [(5, 0, 25, 10), (5, 13, 25, 23)], height=100) == 26
    assert tag_shift((0, 0, 20, 10), [(5, 6, 25, 16)], height=100) == 26  # one tag can block two steps
    # at the photo's bottom the tags stack upward, never past the edge
    assert tag_shift((0, 88, 20, 98), [(5, 88, 25, 98)], height=100) == -13
    assert tag_shift((0, 88, 20, 98), [(5, 88, 25, 98), (5, 75, 25, 85)], height=100) == -26
    assert tag_shift((0, 95, 20, 105), [], height=100) == -5  # a box at the bottom edge: its tag onto the photo
    assert tag_shift((0, 95, 20, 105), [(5, 85, 25, 95)], height=100) == -31  # -18 would still overlap it
    assert tag_shift((0, 0, 20, 10), [(0, 0, 20, 8)], height=8) == 0  # no room: drawn over the other, not lost
    frame = np.full((300, 400, 3), 255, np.uint8)
    boxes = [{"id": i, "kind": "text", "x1": 50 + i, "y1": 50, "x2": 200, "y2": 150} for i in range(1, 4)]
    drawn = boxes_drawn(frame, boxes, width=400, height=300, numbers={1: 1, 2: 2, 3: 3})
    green = (drawn == (20, 150, 20)).all(axis=2)
    rows = np.flatnonzero(green[:140, 57:59].any(axis=1))  # the tags' fills (inside the outlines, above the bottom one)
    assert rows.max() - rows.min() > 3 * 14, rows  # three tags, not one on top of the others
    boxes = [{"id": i, "kind": "text", "x1": 50 + i, "y1": 280, "x2": 200, "y2": 299} for i in range(1, 4)]
    drawn = boxes_drawn(frame, boxes, width=400, height=300, numbers={1: 1, 2: 2, 3: 3})
    green = (drawn == (20, 150, 20)).all(axis=2)
    rows = np.flatnonzero(green[:279, 57:59].any(axis=1))  # near the bottom: stacked upward, inside the photo
    assert len(rows) and rows.min() < 280 - 2 * 14, rows
