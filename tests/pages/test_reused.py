"""Reused photos page (clear or confirm a flagged pair) and the queue's similar decided photos and reuse warning."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from services.core.storage import ObjectStore
from services.hitl.answers import submit
from services.hitl.queue import claim_next
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import check_reuse_now, classify_now, start_app, texts, write_photo


@pytest.fixture
def copied(ws, db, tmp_path):
    """Review 'first' (user ann) decided as a product shot; review 'again' (user bob) sends the same photo at half
    size; 'other' is a photo of its own. Returns the image ids by review."""
    first = write_photo(tmp_path / "p" / "first.jpg", (200, 40, 40))
    small = tmp_path / "p" / "again.jpg"
    Image.open(first).resize((48, 36)).save(small, "JPEG", quality=90)
    other = write_photo(tmp_path / "p" / "other.jpg", (20, 160, 220))
    rows = [{"review_id": "first", "review_type": "product", "user_id": "ann", "image_uris": [first]}]
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(json.dumps(rows[0]) + "\n")
    ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    classify_now(ws, db)
    item = claim_next(db, inspector="ines")
    submit(db, image_id=item["id"], label="product", actor="ines")
    later = [{"review_id": "again", "review_type": "product", "user_id": "bob", "image_uris": [str(small)]},
             {"review_id": "other", "review_type": "product", "user_id": "cy", "image_uris": [other]}]
    manifest = tmp_path / "two.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in later))
    ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    classify_now(ws, db)
    return dict(db.execute("SELECT review_id, id FROM images").fetchall())


def test_the_queue_shows_the_reuse_warning_and_similar_decided_photos(ws, db, copied):
    at = start_app("pages/queue.py")
    shown = [r.key for r in at.radio if (r.key or "").startswith("q_label_")][0]
    if shown != f"q_label_{copied['again']}":  # the queue's order may give 'other' first: skip it
        at.button(key="q_skip").click().run()
    assert any("looks reused from review first" in w for w in texts(at.warning))
    assert "Most similar photos already decided:" in texts(at.caption)
    from pages.common import _similarity_index
    from services.hitl.similar_cases import similar_decided

    cases = similar_decided(db, image_id=copied["again"], actor="ines", index=_similarity_index(str(ws.root)))
    assert [(c["review_id"], c["label"], c["source"], c["decided_by"]) for c in cases][0] == (
        "first", "product", "human", "ines")
    assert cases[0]["similarity"] >= 0.5  # a tiny made-up photo: its half-size copy embeds only so alike


def test_the_queue_says_whether_the_held_credit_waits_for_an_admin_or_was_confirmed(ws, db, copied):
    def warning() -> str:
        at = start_app("pages/queue.py")
        shown = [r.key for r in at.radio if (r.key or "").startswith("q_label_")][0]
        if shown != f"q_label_{copied['again']}":
            at.button(key="q_skip").click().run()
        return next(w for w in texts(at.warning) if "looks reused from review first" in w)

    assert "held until an admin clears it" in warning()
    db.execute("UPDATE reuse_flags SET status = 'confirmed' WHERE image_id = ?", [copied["again"]])
    db.conn.commit()
    text = warning()
    assert "an admin confirmed the copy: its credit stays held" in text and "until an admin clears" not in text


def test_an_admin_clears_a_flag_and_the_credit_flows(ws, db, copied):
    from services.reviews.decisions import review_outcomes

    (flag_id,) = db.execute("SELECT id FROM reuse_flags WHERE image_id = ?", [copied["again"]]).fetchone()
    at = start_app("pages/reused.py")
    assert any("reuses a photo of review **first**" in m for m in texts(at.markdown))
    assert at.dataframe[-1].value["user_id"].tolist()  # the accounts involved
    submit(db, image_id=copied["again"], label="product", actor="ines")  # decided: its credit is held
    assert review_outcomes(db, review_ids=["again"])["again"]["credit"] is None
    at.text_input(key=f"rp_note_{flag_id}").set_value("her own photo, resized")
    at.button(key=f"rp_clear_{flag_id}").click().run()
    assert texts(at.success) == [f"Flag {flag_id} cleared."]
    assert review_outcomes(db, review_ids=["again"])["again"]["credit"] is True
    assert db.execute("SELECT status, note FROM reuse_flags").fetchall() == [("cleared", "her own photo, resized")]
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'reuse.cleared'").fetchone()[0] == 1
    check_reuse_now(ws, db)  # nothing is checked twice: the cleared flag stays cleared
    assert db.execute("SELECT COUNT(*) FROM reuse_flags").fetchone()[0] == 1
