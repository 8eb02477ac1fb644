"""Label quality page: adjudication, likely mistakes and re-review, gold items, reliability, photo history."""

from __future__ import annotations

import json

import pytest

from services.core.config import set_setting
from services.hitl.answers import submit
from services.hitl.queue import claim_next
from tests.pages.helpers import ROOT, classify_now, run_page, seed_reviews, start_app
from tests.pages.markdown_check import shown_text

PAGE = "pages/quality.py"


def _answer(db, ids: list[int], image_id: int, inspector: str, label: str) -> None:
    item = claim_next(db, inspector=inspector, skip=[i for i in ids if i != image_id])
    assert item is not None and item["id"] == image_id
    submit(db, image_id=image_id, label=label, actor=inspector)


@pytest.fixture
def seeded(ws, db, tmp_path) -> dict[str, int]:
    """adjudicate: split 1-1, waiting for an admin; disagree: ann against a 97% model; split: 2 of 3 agree
    (decided); queued: untouched."""
    seed_reviews(db, tmp_path / "photos", [
        {"review_id": "r1", "review_type": "product", "submitted_at": "2024-05-01T10:00:00Z",
         "text": "Looks *great* <b>5 stars</b>"},
        {"review_id": "r2", "review_type": "product", "submitted_at": "2024-05-02T10:00:00Z"},
        {"review_id": "r3", "review_type": "product", "submitted_at": "2024-05-03T10:00:00Z"},
        {"review_id": "r4", "review_type": "product", "submitted_at": "2024-05-04T10:00:00Z"},
    ])
    classify_now(ws, db)  # no model yet: all four are queued
    for key, value in {"overlap_rate": 0.0, "gold_rate": 0.0}.items():
        set_setting(db, key=key, value=value, actor="admin")
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY review_id")]
    adj, disagree, split, queued = ids
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (901, 'm-test', 0)")
    db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
               "VALUES (?, 901, 'product', 0.97, '{}')", [disagree])
    db.execute("UPDATE images SET required_answers = 2 WHERE id = ?", [adj])
    db.execute("UPDATE images SET required_answers = 3 WHERE id = ?", [split])
    _answer(db, ids, adj, "ann", "product")
    _answer(db, ids, adj, "bob", "package")
    _answer(db, ids, disagree, "ann", "package")
    for inspector, label in [("ann", "product"), ("bob", "product"), ("cat", "package")]:
        _answer(db, ids, split, inspector, label)
    assert db.execute("SELECT queue_reason FROM images WHERE id = ?", [adj]).fetchone()[0] == "adjudication"
    return {"adjudicate": adj, "disagree": disagree, "split": split, "queued": queued}


def infos(at) -> list[str]:
    return [i.value for i in at.info]


def test_an_empty_database_explains_what_each_tab_will_show(ws):
    at = run_page(PAGE)
    assert [t.label for t in at.tabs] == ["Adjudication", "Likely mistakes", "Gold items", "Inspectors", "Photo history",
                                         "Export"]
    shown = infos(at)
    assert len(shown) == 6 and not at.error
    assert shown[0].startswith("No photos are waiting for adjudication")
    assert shown[1].startswith("No likely mistakes")
    assert shown[2].startswith("No gold items yet") and shown[3].startswith("No inspector has answered a gold photo")
    assert shown[4].startswith("No reliability estimates yet") and shown[5].startswith("Enter an image id")
    assert at.number_input(key="ql_gold_image").value is None
    assert at.number_input(key="ql_history_image").value is None
    at.button(key="ql_reestimate").click().run()  # nothing to estimate: still fine
    assert not at.exception and not at.error
    at.button(key="ql_gold_mark").click().run()  # no id given
    assert [w.value for w in at.warning] == ["Enter the id of the photo to mark."]
    for widget in [*at.button, *at.number_input, *at.selectbox, *at.text_input, *at.multiselect, *at.radio]:
        assert (widget.key or "").startswith("ql_"), widget


def test_seeded_page_renders_every_tab(seeded):
    at = run_page(PAGE)
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.text] == ["Looks *great* <b>5 stars</b>"]  # the review text, literally
    assert at.radio(key=f"ql_adj_label_{seeded['adjudicate']}").value in ("product", "package")
    assert all((w.key or "").startswith("ql_") for w in [*at.button, *at.radio, *at.multiselect, *at.text_input])


def test_an_admin_adjudicates_through_the_page(seeded, db):
    image_id = seeded["adjudicate"]
    at = run_page(PAGE)
    answers = at.dataframe[0].value
    assert list(answers["inspector"]) == ["ann", "bob"] and list(answers["label"]) == ["product", "package"]
    assert list(answers["reliability"]) == [pytest.approx(r) for r in answers["reliability"]]
    at.radio(key=f"ql_adj_label_{image_id}").set_value("package")
    at.button(key=f"ql_adj_decide_{image_id}").click().run()
    assert not at.exception and not at.error

    row = db.execute("SELECT d.label, d.decided_by, i.status FROM images i JOIN decisions d ON d.id = i.decision_id "
                     "WHERE i.id = ?", [image_id]).fetchone()
    assert row == ("package", "local operator", "decided")
    assert db.execute("SELECT outcome FROM consensus WHERE image_id = ?", [image_id]).fetchone()[0] == "adjudicated"
    assert any(s.value.startswith(f"Image {image_id} decided as package") for s in at.success)
    assert infos(at)[0].startswith("No photos are waiting for adjudication")
    # now decided with a 50% agreement, the photo is one of the likely mistakes
    assert image_id in list(at.dataframe[0].value["image"])


def test_likely_mistakes_are_listed_and_sent_for_re_review(seeded, db):
    at = run_page(PAGE)
    tables = [d.value for d in at.dataframe if "kind" in d.value.columns]
    assert len(tables) == 1
    table = tables[0]
    assert list(table["image"]) == [seeded["disagree"], seeded["split"]]  # the adjudication photo is still queued
    assert list(table["kind"]) == ["model disagrees", "inspectors split"]
    assert list(table["inspectors"]) == ["ann: package", "ann: product, bob: product, cat: package"]
    # issue 20 item 11: the photo in the table itself, to judge who is right without opening it
    assert all(str(u).startswith("data:image/jpeg;base64,") and len(u) > 500 for u in table["photo"])
    assert at.button(key="ql_requeue").disabled  # nothing chosen

    at.multiselect(key="ql_mistakes_ids").set_value([seeded["disagree"]]).run()
    assert not at.button(key="ql_requeue").disabled
    at.button(key="ql_requeue").click().run()  # no reason given
    assert [shown_text(e.value) for e in at.error] == ["say why the photo needs another look (for example: the model disagrees)"]
    assert db.execute("SELECT status FROM images WHERE id = ?", [seeded["disagree"]]).fetchone()[0] == "decided"

    at.text_input(key="ql_requeue_reason").input("model is 97% sure")
    at.button(key="ql_requeue").click().run()
    assert not at.exception and not at.error
    row = db.execute("SELECT status, queue_reason, required_answers FROM images WHERE id = ?",
                     [seeded["disagree"]]).fetchone()
    assert row == ("queued", "rereview", 2)
    detail = db.execute("SELECT detail FROM queue_events WHERE action = 'requeue'").fetchone()[0]
    assert json.loads(detail) == {"reason": "model is 97% sure"}
    assert any(s.value.startswith("Sent 1 photo(s) for re-review") for s in at.success)
    assert at.multiselect(key="ql_mistakes_ids").value == [] and at.text_input(key="ql_requeue_reason").value == ""
    tables = [d.value for d in at.dataframe if "kind" in d.value.columns]
    assert list(tables[0]["image"]) == [seeded["split"]]
    # only another inspector is offered it
    assert claim_next(db, inspector="ann", skip=[seeded["queued"]]) is None
    assert claim_next(db, inspector="dan")["id"] == seeded["disagree"]


def test_gold_items_are_marked_listed_and_unmarked(seeded, db):
    image_id = seeded["queued"]
    at = run_page(PAGE)
    at.number_input(key="ql_gold_image").set_value(image_id)
    at.selectbox(key="ql_gold_label").set_value("full_length")
    at.button(key="ql_gold_mark").click().run()
    assert not at.exception and not at.error
    assert db.execute("SELECT label, created_by FROM gold_items").fetchall() == [("full_length", "local operator")]
    assert db.execute("SELECT status FROM images WHERE id = ?", [image_id]).fetchone()[0] == "decided"
    assert any(s.value.startswith(f"Image {image_id} is a gold item (full length) and was decided") for s in at.success)
    gold = [d.value for d in at.dataframe if "marked by" in d.value.columns][0]
    assert list(gold["image"]) == [image_id] and list(gold["answers"]) == [0]

    at.number_input(key="ql_gold_image").set_value(999)
    at.button(key="ql_gold_mark").click().run()
    assert [e.value for e in at.error] == ["image 999 does not exist"]

    at.selectbox(key="ql_gold_unmark_id").set_value(image_id).run()
    at.button(key="ql_gold_unmark").click().run()
    assert not at.exception and not at.error
    assert db.execute("SELECT COUNT(*) FROM gold_items").fetchone()[0] == 0
    assert any(i.startswith("No gold items yet") for i in infos(at))


def test_reliability_is_re_estimated_and_shown(seeded, db):
    at = run_page(PAGE)
    at.button(key="ql_reestimate").click().run()
    assert not at.exception and not at.error
    assert any(s.value.startswith("Re-estimated the reliability of 3 inspector(s)") for s in at.success)
    table = [d.value for d in at.dataframe if "method" in d.value.columns][0]
    assert list(table["inspector"]) == ["ann", "bob", "cat"]
    assert set(table.columns) >= {"method", "accuracy", "answers"}
    assert dict(zip(table["inspector"], table["answers"], strict=True)) == {"ann": 3, "bob": 2, "cat": 1}


def test_photo_history_lists_everything_that_happened(seeded):
    at = run_page(PAGE)
    at.number_input(key="ql_history_image").set_value(seeded["disagree"]).run()
    assert not at.exception and not at.error
    history = [d.value for d in at.dataframe if "what" in d.value.columns][0]
    whats = list(history["what"])
    assert "prediction" in whats and "claim" in whats and "answer" in whats and "decision (human)" in whats
    at.number_input(key="ql_history_image").set_value(99999).run()
    assert [e.value for e in at.error] == ["image 99999 does not exist"]


def test_the_page_is_reachable_from_the_app(ws):
    assert f'"{PAGE}"' in (ROOT / "app.py").read_text(encoding="utf-8")  # registered with the router
    at = start_app(PAGE)
    assert at.title[0].value == "Label quality"
