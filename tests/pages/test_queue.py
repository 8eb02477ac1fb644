"""Review queue page: label, submit, skip; the empty queue; photos with and without a model's suggestion."""

from __future__ import annotations

import pytest

from services.core.config import CLASSES, set_setting
from tests.pages.helpers import classify_now, seed_reviews, start_app
from tests.pages.markdown_check import shown_text


@pytest.fixture
def queued(ws, db, tmp_path) -> list[int]:
    """Three photos queued without a model: r1 (product, oldest), then r2's two photos (style)."""
    seed_reviews(db, tmp_path / "photos", [
        {"review_id": "r1", "review_type": "product", "product": "kettle", "user_id": "u1",
         "submitted_at": "2024-05-01T10:00:00Z", "text": "Arrived *fast* <b>great</b>"},
        {"review_id": "r2", "review_type": "style", "product": "coat", "user_id": "u2", "photos": 2,
         "submitted_at": "2024-05-02T10:00:00Z"},
    ])
    classify_now(ws, db)
    return [r[0] for r in db.execute("SELECT id FROM images ORDER BY review_id, id")]


def shown_item(at) -> int:
    """The image id of the photo on screen (its label radio is keyed by it)."""
    assert not at.exception, at.exception
    keys = [r.key for r in at.radio if (r.key or "").startswith("q_label_")]
    assert len(keys) == 1, keys
    return int(keys[0].removeprefix("q_label_"))


def test_empty_queue_says_so(ws):
    at = start_app("pages/queue.py")
    assert [i.value for i in at.info] == ["The queue is empty."]
    assert not at.radio and not at.button
    assert at.caption[0].value.startswith("0 photos waiting")


def test_photo_without_a_model_explains_why_there_is_no_suggestion(queued, tmp_path):
    at = start_app("pages/queue.py")
    assert shown_item(at) == queued[0]  # the oldest first
    assert at.caption[0].value == "3 photos waiting: 0 audits and re-reviews, 0 low confidence, 3 waiting for a first model"
    assert any(c.value == "No model prediction: no model had been trained when this photo arrived." for c in at.caption)
    assert any("in the queue because no model had been trained yet" in c.value for c in at.caption)  # not no_model
    assert not at.metric  # no "Model suggests"
    assert at.radio(key=f"q_label_{queued[0]}").value is None
    assert at.button(key="q_submit").disabled  # nothing chosen yet
    assert [t.value for t in at.text] == ["Arrived *fast* <b>great</b>"]
    # issue 20 item 2: a neutral caption; the stored path only under Details, for an admin (here the local operator)
    assert [shown_text(c) for img in at.image for c in img.captions] == [f"photo {queued[0]}"]
    assert [e.label for e in at.expander] == ["Details: where it is stored"]
    assert [c.value for c in at.expander[0].code] == [str(tmp_path / "photos" / "r1_0.jpeg")]


def test_the_count_follows_the_review_type_filter(queued):
    at = start_app("pages/queue.py")
    at.selectbox(key="q_f_type").set_value("style").run()
    assert at.caption[0].value == ("2 photos waiting that match these filters: 0 audits and re-reviews, 0 low "
                                   "confidence, 2 waiting for a first model")
    assert shown_item(at) in queued[1:]
    at.selectbox(key="q_f_type").set_value(None).run()
    assert at.caption[0].value.startswith("3 photos waiting: ")


def test_submit_stores_a_human_decision_and_shows_the_next_photo(queued, db):
    first, second, _ = queued
    at = start_app("pages/queue.py")
    at.radio(key=f"q_label_{first}").set_value("product").run()
    assert any(s.value.startswith("Credit rule: photo is a product shot; meets the product rule") for s in at.success)
    assert not at.button(key="q_submit").disabled
    at.button(key="q_submit").click().run()

    rows = list(db.query("SELECT image_id, label, source, decided_by, credit FROM decisions"))
    assert rows == [{"image_id": first, "label": "product", "source": "human", "decided_by": "local operator", "credit": 1}]
    assert db.execute("SELECT status FROM images WHERE id = ?", [first]).fetchone()[0] == "decided"
    assert shown_item(at) == second
    assert any(s.value.startswith(f"Saved product for image {first}") for s in at.success)
    assert at.caption[0].value.startswith("2 photos waiting")
    # the second photo of the same review is shown beside it
    captions = [c for img in at.image for c in img.captions]  # "photo 12 · what it is": a neutral id first
    assert all(c.startswith("photo ") for c in captions)
    captions = [c.split(" · ", 1)[-1] for c in captions]
    assert [c for c in captions[1:] if c.startswith("other photo")] == ["other photo in this review (queued)"]
    # and the first review's photo, just decided, among the most similar decided photos
    assert [c for c in captions[1:] if not c.startswith("other photo")][0].startswith("product · by a person")
    captions = [c for img in at.image for c in img.captions]
    assert shown_text(captions[0]) == f"photo {second}"


def test_a_label_that_misses_the_rule_warns_before_submitting(queued, db):
    at = start_app("pages/queue.py")
    at.radio(key=f"q_label_{queued[0]}").set_value("package").run()
    assert any("does not meet the product rule" in w.value for w in at.warning)
    at.button(key="q_submit").click().run()
    assert db.execute("SELECT label, source, credit FROM decisions").fetchall() == [("package", "human", 0)]


def test_skip_moves_on_and_the_skipped_photos_can_come_back(queued, db):
    first, second, third = queued
    at = start_app("pages/queue.py")
    at.button(key="q_skip").click().run()
    assert shown_item(at) == second
    at.button(key="q_skip").click().run()
    assert shown_item(at) == third
    at.button(key="q_skip").click().run()
    assert [i.value for i in at.info] == ["Nothing for you to label right now. The photos still in the queue are: "
                                          "3 skipped by you this session."]
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0  # skipping decides nothing
    at.button(key="q_unskip").click().run()
    assert shown_item(at) == first


def test_model_suggestion_preselects_the_label_and_can_be_hidden(trained_ws, tmp_path):
    db = trained_ws.db()
    try:
        # every prediction decides, and every automatic decision is also sent to people as an audit
        set_setting(db, key="thresholds", value=dict.fromkeys(CLASSES, 0.0), actor="test")
        set_setting(db, key="audit_rate", value=1.0, actor="test")
        seed_reviews(db, tmp_path / "photos", [{"review_id": "a1", "review_type": "product"}])
        classify_now(trained_ws, db)
        image_id, predicted = db.execute("SELECT image_id, label FROM predictions").fetchone()

        at = start_app("pages/queue.py")
        assert shown_item(at) == image_id
        assert at.caption[0].value.startswith("1 photo waiting: 1 audits and re-reviews")
        assert [m.label for m in at.metric] == ["Model suggests"]
        assert at.metric[0].value == predicted.replace("_", " ")
        assert at.radio(key=f"q_label_{image_id}").value == predicted
        at.button(key="q_accept").click().run()  # "A": accept the suggestion
        last = db.execute("SELECT label, source, reason FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
        assert last[:2] == (predicted, "human") and last[2].startswith("inspector confirmed the model")
        assert [i.value for i in at.info] == ["The queue is empty."]

        # with the suggestion hidden, nothing is preselected
        seed_reviews(db, tmp_path / "more", [{"review_id": "a2", "review_type": "product"}], name="more.jsonl")
        classify_now(trained_ws, db)
        set_setting(db, key="hide_suggestion", value=True, actor="test")
        at.run()
        second = shown_item(at)
        assert second != image_id
        assert not at.metric
        assert at.radio(key=f"q_label_{second}").value is None
        assert at.button(key="q_accept").disabled
    finally:
        db.close()


def test_two_inspectors_see_different_photos_and_filters_narrow_the_queue(queued, db):
    ann = start_app()
    ann.session_state["user_name"] = "ann"
    ann.switch_page("pages/queue.py").run()
    bob = start_app()
    bob.session_state["user_name"] = "bob"
    bob.switch_page("pages/queue.py").run()
    assert shown_item(ann) != shown_item(bob)  # each holds a lease on their own photo
    claims = dict(db.execute("SELECT inspector, image_id FROM queue_claims").fetchall())
    assert claims == {"ann": shown_item(ann), "bob": shown_item(bob)}
    bob.selectbox(key="q_f_type").set_value("product").run()
    assert not bob.exception
    assert [i.value for i in bob.info] == [  # r1, the only product photo, is ann's
        "Nothing for you to label right now. The photos still in the queue are: 1 being labelled by other "
        "inspectors (or waiting for their answers); 2 outside these filters."]


def test_number_buttons_decide_at_once(queued, db):
    at = start_app("pages/queue.py")
    first = shown_item(at)
    at.button(key="q_quick_package").click().run()
    assert shown_item(at) != first
    row = db.execute("SELECT label, source, decided_by FROM decisions WHERE image_id = ?", [first]).fetchone()
    assert row == ("package", "human", "local operator")
    assert any("Keyboard: 1–4" in c.value for c in at.caption)


def test_undo_brings_the_last_photo_back_and_keeps_the_history(queued, db):
    at = start_app("pages/queue.py")
    first = shown_item(at)
    assert at.button(key="q_undo").disabled  # nothing to undo yet
    at.button(key="q_quick_package").click().run()
    assert shown_item(at) != first
    at.button(key="q_undo").click().run()
    assert shown_item(at) == first
    assert any(s.value.startswith(f"Undid your package for image {first}") for s in at.success)
    assert db.execute("SELECT status, decision_id FROM images WHERE id = ?", [first]).fetchone() == ("queued", None)
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1  # kept, no longer current
    at.button(key="q_quick_product").click().run()
    assert db.execute("SELECT d.label FROM images i JOIN decisions d ON d.id = i.decision_id WHERE i.id = ?",
                      [first]).fetchone()[0] == "product"
    actions = [r[0] for r in db.execute("SELECT action FROM queue_events WHERE image_id = ? ORDER BY id", [first])]
    assert actions == ["claim", "answer", "undo", "claim", "answer"]


def test_zoom_flag_and_the_next_photo_loaded_ahead(queued, db):
    from pages.common import _thumbnails

    at = start_app("pages/queue.py")
    first = shown_item(at)
    from services.core.config import object_store, workspace_root

    store = object_store(db)  # the cache of the page's store (with the storage roots the tests set)
    cache = _thumbnails(store.endpoint_url or "", None if store.roots is None else tuple(store.roots),
                        str(workspace_root(db) / "thumbs"))
    cache.wait()
    upcoming = db.execute("SELECT uri, sha256 FROM images WHERE id = ?", [queued[1]]).fetchone()
    assert cache.cached(upcoming[0], upcoming[1], 720)  # loaded while the first photo was on screen
    assert at.button(key="q_zoom").label == "Zoom in"
    at.button(key="q_zoom").click().run()
    assert at.button(key="q_zoom").label == "Zoom out" and shown_item(at) == first
    # issue 20 item 4: zoomed, the photo spans the page as tall as the window; 2x and 4x pan in a window-high box
    zoomed = [h.proto.body for h in at.get("html")]
    assert len(zoomed) == 1 and 'data-zoom="fit"' in zoomed[0] and "data:image/jpeg;base64," in zoomed[0]
    assert "height:calc(100vh - 120px);overflow:auto" in zoomed[0] and not at.image  # not also the small one
    at.segmented_control(key="q_zoom_level").set_value("4x").run()
    zoomed = [h.proto.body for h in at.get("html")]
    assert 'data-zoom="4x"' in zoomed[0] and "width:400%" in zoomed[0] and shown_item(at) == first
    at.text_input(key="q_flag_reason").set_value("shows a blank square")
    at.button(key="q_flag").click().run()
    assert db.execute("SELECT status, error FROM images WHERE id = ?", [first]).fetchone() == (
        "failed", "flagged in the queue by local operator: shows a blank square")
    assert shown_item(at) == queued[1]


def test_an_inspector_sees_no_server_path_and_is_told_where_the_waiting_photos_are(queued, db):
    """Issue 20 items 2 and 3: no caption, detail or id tells an inspector where a photo is stored (its folder
    can name the answer); with photos held by another inspector, the empty queue says so instead of 'empty'."""
    from services.access.accounts import create_user
    from services.hitl.queue import claim_next
    from tests.pages.test_sign_in import GOOD, sign_in

    create_user(db, username="ines", password=GOOD, roles=["inspector"], actor="cli:root")
    at = start_app()
    sign_in(at, "ines", GOOD)
    at.switch_page("pages/queue.py")
    at.run()
    shown = shown_item(at)
    assert [shown_text(c) for img in at.image for c in img.captions][0] == f"photo {shown}"
    assert not at.expander  # no Details for an inspector
    page_text = " ".join(shown_text(e.value) for kind in (at.caption, at.markdown, at.text, at.info)
                         for e in kind if isinstance(e.value, str))
    assert "/photos/" not in page_text and ".jpeg" not in page_text, page_text
    for name in ("otto", "olga"):  # two other inspectors hold the other photos
        create_user(db, username=name, password=GOOD, roles=["inspector"], actor="cli:root")
        claim_next(db, inspector=name)
    db.execute("UPDATE queue_claims SET inspector = 'otto' WHERE inspector = 'ines'")  # and hers, once she left
    at.run()
    assert [i.value for i in at.info] == ["Nothing for you to label right now. The photos still in the queue are: "
                                          "3 being labelled by other inspectors (or waiting for their answers)."]


def fragment_click(at, monkeypatch, key: str) -> None:
    """Click the button ``key`` as the browser does when it is drawn in a fragment: only that fragment reruns."""
    import dataclasses

    from streamlit.runtime.scriptrunner import RerunData
    from streamlit.testing.v1 import local_script_runner

    fragment_ids = list(at._fragment_storage._fragments)
    assert len(fragment_ids) == 1, fragment_ids  # the photo panel

    def fragment_rerun(**kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(RerunData(**kwargs), fragment_id_queue=fragment_ids)

    with monkeypatch.context() as patch:
        patch.setattr(local_script_runner, "RerunData", fragment_rerun)
        at.button(key=key).click().run()
    assert not at.exception, at.exception


def test_a_number_key_reruns_only_the_photo_panel_once(queued, db, monkeypatch):
    """Issue 23: a decision is one run of the photo panel (its callback saves, the panel draws the next photo),
    not the whole page twice (the old photo again, then ``st.rerun()``)."""
    import streamlit

    import services.hitl.queue as queue_service

    first, second, _ = queued
    titles, claims = [], []
    claim = queue_service.claim_next
    monkeypatch.setattr(queue_service, "claim_next", lambda *a, **k: claims.append(1) or claim(*a, **k))
    at = start_app("pages/queue.py")
    assert shown_item(at) == first and len(claims) == 1
    claims.clear()
    monkeypatch.setattr(streamlit, "title", lambda *a, **k: titles.append(a))
    fragment_click(at, monkeypatch, "q_quick_product")
    assert db.execute("SELECT image_id, label, source FROM decisions").fetchall() == [(first, "product", "human")]
    assert titles == [] and len(claims) == 1  # the page's top was not run; one claim, of the next photo
    assert shown_item(at) == second
    assert any(s.value.startswith(f"Saved product for image {first}") for s in at.success)
    assert any(c.value.startswith("2 photos waiting") for c in at.caption)  # the counts are in the panel
    fragment_click(at, monkeypatch, "q_undo")  # undo, skip: callbacks too
    assert shown_item(at) == first and any(s.value.startswith("Undid your product") for s in at.success)
    fragment_click(at, monkeypatch, "q_skip")
    assert shown_item(at) == second and titles == []


def test_a_page_run_opens_one_connection(queued, monkeypatch):
    """Issue 23: one sqlite connection per script run's thread (opening one runs PRAGMAs and the migrations check),
    not one per helper call; photos' thumbnails open none."""
    from services.core.config import Workspace

    at = start_app("pages/queue.py")
    opened = []
    open_db = Workspace.db
    monkeypatch.setattr(Workspace, "db", lambda self: opened.append(1) or open_db(self))
    at.run()
    assert not at.exception and shown_item(at) == queued[0] and at.image
    assert len(opened) == 1
    opened.clear()
    at.button(key="q_quick_package").click().run()  # AppTest reruns the whole script: still one
    assert shown_item(at) == queued[1] and len(opened) == 1


def test_a_key_press_in_the_photo_panel_counts_as_activity(queued, db, monkeypatch):
    """The panel's runs are fragment runs; one a person's key started keeps the session alive (a page refreshing
    itself does not, tests/pages/test_idle_fragments.py)."""
    from services.access.accounts import create_user
    from tests.pages.test_sign_in import GOOD, sign_in

    create_user(db, username="ines", password=GOOD, roles=["inspector"], actor="cli:root")
    at = start_app()
    sign_in(at, "ines", GOOD)
    at.switch_page("pages/queue.py").run()
    first = shown_item(at)
    idle_since = at.session_state["auth_user"]["last_seen"] - 29 * 60
    at.session_state["auth_user"]["last_seen"] = idle_since
    fragment_click(at, monkeypatch, "q_quick_product")
    assert shown_item(at) != first
    assert at.session_state["auth_user"]["last_seen"] > idle_since + 28 * 60  # the key press counted


def test_small_photos_are_sent_at_their_display_width_so_streamlit_does_not_resize_them_every_run(
        ws, db, tmp_path, monkeypatch):
    """Issue 23: an image wider than its ``width`` is decoded, resized and encoded again by Streamlit on every run;
    the review's other photo (shown 120 px wide) is sent at 120 px, from the thumbnail cache."""
    import json

    import numpy as np
    from PIL import Image
    from streamlit.elements.lib import image_utils

    from services.core.storage import ObjectStore
    from services.reviews.ingest import ingest_manifest

    rng = np.random.default_rng(7)
    uris = []
    for k in range(2):
        path = tmp_path / f"wide{k}.jpg"
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path)
        uris.append(str(path))
    (tmp_path / "m.jsonl").write_text(json.dumps({"review_id": "r1", "review_type": "product", "image_uris": uris}))
    ingest_manifest(db, uri=str(tmp_path / "m.jsonl"), store=ObjectStore(), actor="test")
    db.execute("UPDATE images SET status = 'queued', queue_reason = 'no_model'")
    reencoded = []
    encode = image_utils._pil_to_bytes
    monkeypatch.setattr(image_utils, "_pil_to_bytes", lambda *a, **k: reencoded.append(1) or encode(*a, **k))
    at = start_app("pages/queue.py")
    assert shown_item(at) and len(at.image) == 2  # the photo and the review's other one
    at.run()
    assert reencoded == []
