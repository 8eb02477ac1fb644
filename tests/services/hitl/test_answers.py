"""Answers, undo, gold mixing, overlap claims, flags and the queue history."""

from __future__ import annotations

import pytest

from services.core.config import set_setting
from services.core.errors import InvalidInput, NotFound
from services.hitl.answers import last_answer, submit, undo_last
from services.hitl.history import item_history
from services.hitl.queue import claim_next, flag, peek_next, release
from services.reviews.decisions import decide


def _seed(db, n: int, *, reason: str = "low_confidence") -> None:
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm1', 1)")
    with db.atomic():
        for i in range(1, n + 1):
            db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?)",
                       [f"r{i}", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"])
            db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, 'queued', ?)",
                       [i, f"r{i}", f"{i}.jpg", f"{i:064x}", reason])
            db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                       "VALUES (?, 1, 'product', 0.6, '{}')", [i])


def _settings(db, **values) -> None:
    for key, value in {"overlap_rate": 0.0, "gold_rate": 0.0, **values}.items():
        set_setting(db, key=key, value=value, actor="admin")


def _events(db, image_id: int) -> list[tuple[str, str]]:
    return db.execute("SELECT inspector, action FROM queue_events WHERE image_id = ? ORDER BY id", [image_id]).fetchall()


def test_submit_decides_records_the_answer_with_time_spent_and_the_history(db):
    _settings(db)
    _seed(db, 2)
    item = claim_next(db, inspector="ann")
    saved = submit(db, image_id=item["id"], label="package", actor="ann")
    assert saved["decision_id"] and saved["credit"] is False
    answer = db.execute("SELECT kind, label, seconds, prev_decision_id, decision_id FROM answers").fetchone()
    assert answer[0:2] == ("single", "package") and answer[2] is not None and answer[2] >= 0
    assert answer[3] is None and answer[4] == saved["decision_id"]
    assert _events(db, item["id"]) == [("ann", "claim"), ("ann", "answer")]
    history = item_history(db, image_id=item["id"])
    whats = [h["what"] for h in history]
    assert whats[0] == "prediction" and "claim" in whats and "answer" in whats and "decision (human)" in whats
    with pytest.raises(NotFound):
        item_history(db, image_id=999)
    with pytest.raises(InvalidInput, match="unknown label"):
        submit(db, image_id=2, label="cat", actor="ann")


def test_undo_puts_the_photo_back_for_the_same_inspector_and_keeps_the_history(db):
    _settings(db)
    _seed(db, 3)
    first = claim_next(db, inspector="ann")
    saved = submit(db, image_id=first["id"], label="package", actor="ann")
    second = claim_next(db, inspector="ann")
    assert second["id"] != first["id"]
    assert last_answer(db, actor="ann")["image_id"] == first["id"]
    undone = undo_last(db, actor="ann")
    assert undone == {"image_id": first["id"], "label": "package"}
    row = db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = ?", [first["id"]]).fetchone()
    assert row == ("queued", "low_confidence", None)
    assert claim_next(db, inspector="ann")["id"] == first["id"]  # the undone photo comes straight back
    assert claim_next(db, inspector="bob")["id"] != first["id"]  # and stays ann's
    # nothing was edited: the decision and the answer are still there, withdrawn by an event
    assert db.execute("SELECT COUNT(*) FROM decisions WHERE id = ?", [saved["decision_id"]]).fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM active_answers").fetchone()[0] == 0
    assert ("ann", "undo") in _events(db, first["id"])
    assert ("ann", "skip") in _events(db, second["id"])  # the photo she held meanwhile went back, on record
    submit(db, image_id=first["id"], label="product", actor="ann")  # a new answer after the undo
    assert db.execute("SELECT d.label FROM images i JOIN decisions d ON d.id = i.decision_id WHERE i.id = ?",
                      [first["id"]]).fetchone()[0] == "product"
    undo_last(db, actor="ann")  # nothing of ann's is active any more
    with pytest.raises(InvalidInput, match="nothing to undo"):
        undo_last(db, actor="ann")


def test_undo_of_an_audit_restores_the_automatic_decision(db):
    _settings(db)
    _seed(db, 1, reason="audit")
    auto = decide(db, image_id=1, label="product", actor="model", source="auto", keep_queued=True)
    claim_next(db, inspector="ann")
    submit(db, image_id=1, label="package", actor="ann")
    undo_last(db, actor="ann")
    assert db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = 1").fetchone() == (
        "queued", "audit", auto["id"])


def test_undo_refuses_when_the_photo_was_decided_again_since(db):
    _settings(db)
    _seed(db, 1)
    claim_next(db, inspector="ann")
    submit(db, image_id=1, label="package", actor="ann")
    decide(db, image_id=1, label="product", actor="admin")  # an admin corrects it afterwards
    with pytest.raises(InvalidInput, match="decided again by admin"):
        undo_last(db, actor="ann")


def test_skip_and_flag_are_recorded_and_a_flagged_photo_leaves_the_queue(db):
    _settings(db)
    _seed(db, 2)
    item = claim_next(db, inspector="ann")
    release(db, image_id=item["id"], inspector="ann")
    skipped = db.execute("SELECT seconds FROM queue_events WHERE action = 'skip'").fetchone()
    assert skipped is not None and skipped[0] >= 0
    again = claim_next(db, inspector="ann", skip=[item["id"]])
    with pytest.raises(InvalidInput, match="say why"):
        flag(db, image_id=again["id"], inspector="ann", reason=" ")
    flag(db, image_id=again["id"], inspector="ann", reason="does not load")
    status, error = db.execute("SELECT status, error FROM images WHERE id = ?", [again["id"]]).fetchone()
    assert status == "failed" and "flagged in the queue by ann: does not load" in error
    assert claim_next(db, inspector="bob")["id"] == item["id"]
    with pytest.raises(InvalidInput, match="failed"):
        flag(db, image_id=again["id"], inspector="ann", reason="again")


def test_overlap_photos_go_to_k_different_inspectors_and_wait_for_all(db):
    _settings(db, overlap_rate=1.0, overlap_k=3)
    _seed(db, 4)
    required = "SELECT required_answers FROM images WHERE id = ?"
    assert claim_next(db, inspector="ann")["id"] == 1
    assert db.execute(required, [1]).fetchone()[0] == 1  # ann worked alone when she took it
    assert claim_next(db, inspector="bob")["id"] == 2
    assert db.execute(required, [2]).fetchone()[0] == 2  # two at work: two answers
    assert claim_next(db, inspector="cat")["id"] == 2  # overlap: cat gets bob's photo too
    assert claim_next(db, inspector="dan")["id"] == 3  # photo 2 has its two inspectors
    assert db.execute(required, [3]).fetchone()[0] == 3  # k, with four at work
    assert claim_next(db, inspector="ann")["id"] == 1  # her own claim first
    submit(db, image_id=2, label="product", actor="bob")
    with pytest.raises(InvalidInput, match="already labelled"):
        submit(db, image_id=2, label="product", actor="bob")
    assert db.execute("SELECT status FROM images WHERE id = 2").fetchone()[0] == "queued"  # waits for cat
    assert claim_next(db, inspector="bob")["id"] == 3  # never photo 2 again
    assert claim_next(db, inspector="fay")["id"] == 3  # dan, bob and fay: photo 3 is full
    with pytest.raises(InvalidInput, match="all the inspectors it needs"):
        submit(db, image_id=3, label="product", actor="eve")  # eve was never offered it


def test_a_lone_inspector_is_never_left_waiting_for_colleagues(db):
    _settings(db, overlap_rate=1.0, overlap_k=3)
    _seed(db, 1)
    claim_next(db, inspector="ann")
    assert db.execute("SELECT required_answers FROM images WHERE id = 1").fetchone()[0] == 1
    assert submit(db, image_id=1, label="product", actor="ann")["decision_id"]


def test_gold_photos_are_mixed_in_unannounced_and_only_score_the_inspector(db):
    _settings(db, gold_rate=1.0)
    _seed(db, 3)
    decide(db, image_id=3, label="package", actor="admin")
    db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (3, 'package', 'admin', 'now')")
    ordinary = peek_next(db, inspector="ann")[0]
    item = claim_next(db, inspector="ann")
    assert item["id"] == 3 and ordinary["id"] == 1
    assert set(item) == set(claim_next(db, inspector="bob", skip=[3]) or item)  # same shape as any photo
    assert item["queue_reason"] == "low_confidence"
    saved = submit(db, image_id=3, label="product", actor="ann")
    assert saved["decision_id"] is None and set(saved) == {"image_id", "label", "credit", "reason", "answer_id",
                                                           "decision_id"}
    assert db.execute("SELECT kind, label FROM answers WHERE inspector = 'ann'").fetchone() == ("gold", "product")
    assert db.execute("SELECT COUNT(*) FROM decisions WHERE image_id = 3").fetchone()[0] == 1  # unchanged
    nxt = claim_next(db, inspector="ann")
    assert nxt["id"] != 3  # each gold photo once per inspector
