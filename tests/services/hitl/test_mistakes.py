"""Likely mistakes (a confident model against one inspector; inspectors who split) and re-review."""

from __future__ import annotations

import json

import pytest

from services.core.config import set_setting
from services.core.errors import InvalidInput, NotFound
from services.hitl.answers import submit
from services.hitl.history import item_history
from services.hitl.mistakes import likely_mistakes, requeue
from services.hitl.queue import claim_next


def _seed(db, predictions: list[tuple[str, float] | None]) -> list[int]:
    """One queued photo per entry (its model's label and confidence, or None for no prediction)."""
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm1', 1)")
    ids = []
    with db.atomic():
        for i, pred in enumerate(predictions, start=1):
            db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?)",
                       [f"r{i}", f"2026-01-01T00:00:{i:02d}Z"])
            db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) "
                       "VALUES (?, ?, ?, ?, 'queued', 'low_confidence')", [i, f"r{i}", f"{i}.jpg", f"{i:064x}"])
            if pred:
                db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                           "VALUES (?, 1, 'half_length', 0.3, '{}')", [i])  # an older prediction: only the latest counts
                db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                           "VALUES (?, 1, ?, ?, '{}')", [i, pred[0], pred[1]])
            ids.append(i)
    return ids


@pytest.fixture
def one_at_a_time(db):
    for key, value in {"overlap_rate": 0.0, "gold_rate": 0.0}.items():
        set_setting(db, key=key, value=value, actor="admin")
    return db


def _answer(db, inspector: str, label: str) -> int:
    item = claim_next(db, inspector=inspector)
    assert item is not None
    submit(db, image_id=item["id"], label=label, actor=inspector)
    return item["id"]


def _answer_overlap(db, image_id: int, answers: list[tuple[str, str]]) -> None:
    """The photo needs len(answers) inspectors; each claims and answers it."""
    db.execute("UPDATE images SET required_answers = ? WHERE id = ?", [len(answers), image_id])
    for inspector, label in answers:
        item = claim_next(db, inspector=inspector)
        assert item["id"] == image_id
        submit(db, image_id=image_id, label=label, actor=inspector)


def _kinds(rows) -> list[tuple[int, str]]:
    return [(r["image_id"], r["kind"]) for r in rows]


def test_a_confident_model_against_one_inspector_is_listed_most_confident_first(one_at_a_time):
    db = one_at_a_time
    _seed(db, [("product", 0.95), ("product", 0.97), ("product", 0.5), ("product", 0.99), None])
    for label in ["package", "package", "package", "product", "package"]:
        _answer(db, "ann", label)
    set_setting(db, key="thresholds", value={"product": 0.98}, actor="admin")
    assert likely_mistakes(db) == []  # 0.99 (image 4) agrees with ann; the others are below 0.98
    # only 1 and 2: 3 is below the threshold, 4 agrees with the model, 5 has no prediction
    set_setting(db, key="thresholds", value={"product": 0.9}, actor="admin")
    rows = likely_mistakes(db)
    assert _kinds(rows) == [(2, "model_disagrees"), (1, "model_disagrees")]
    top = rows[0]
    assert top["uri"] == "2.jpg" and top["sha256"] == f"{2:064x}" and top["review_id"] == "r2"
    assert top["review_type"] == "product" and top["label"] == "package" and top["decided_by"] == "ann"
    assert top["answers"] == [{"inspector": "ann", "label": "package", "kind": "single"}]
    assert top["inspectors"] == ["ann"] and top["human_labels"] == "ann: package"
    assert (top["model_label"], top["model_confidence"], top["threshold"]) == ("product", 0.97, 0.9)
    assert top["decided_at"] and top["agreement"] is None and top["outcome"] is None
    # a class's own threshold counts
    set_setting(db, key="thresholds", value={"product": 0.96}, actor="admin")
    assert _kinds(likely_mistakes(db)) == [(2, "model_disagrees")]
    assert _kinds(likely_mistakes(db, limit=1)) == [(2, "model_disagrees")]
    with pytest.raises(InvalidInput):
        likely_mistakes(db, limit=0)


def test_an_earlier_answer_that_no_longer_decides_the_photo_is_not_listed(one_at_a_time):
    db = one_at_a_time
    set_setting(db, key="thresholds", value={"product": 0.9}, actor="admin")
    _seed(db, [("product", 0.95)])
    _answer(db, "ann", "package")
    assert _kinds(likely_mistakes(db)) == [(1, "model_disagrees")]
    requeue(db, image_id=1, actor="admin", reason="check")
    assert likely_mistakes(db) == []  # back in the queue
    _answer(db, "bob", "package")  # agrees with ann: consolidated, decided by the consensus
    assert db.execute("SELECT d.decided_by FROM images i JOIN decisions d ON d.id = i.decision_id").fetchone()[0] == "consensus"
    assert likely_mistakes(db) == []  # the decision is no longer one inspector's, and they agree


def test_inspectors_who_split_are_listed_lowest_agreement_first(one_at_a_time):
    db = one_at_a_time
    _seed(db, [("product", 0.6), ("product", 0.6), None, ("package", 0.7)])
    _answer_overlap(db, 1, [("ann", "product"), ("bob", "product"), ("cat", "package")])  # decided, 2/3
    _answer_overlap(db, 2, [("ann", "product"), ("bob", "product")])  # unanimous
    _answer_overlap(db, 3, [("ann", "product"), ("bob", "package"), ("cat", "full_length")])  # adjudication
    _answer_overlap(db, 4, [("ann", "product"), ("bob", "package")])  # adjudication, then adjudicated
    outcomes = dict(db.execute("SELECT image_id, outcome FROM consensus").fetchall())
    assert outcomes == {1: "decided", 2: "decided", 3: "adjudication", 4: "adjudication"}
    from services.hitl.consensus import adjudicate

    adjudicate(db, image_id=4, label="package", actor="admin")

    rows = likely_mistakes(db)
    assert _kinds(rows) == [(4, "inspectors_split"), (1, "inspectors_split")]  # 3 is still queued for an admin
    adjudicated, split = rows
    assert adjudicated["agreement"] == 0.5 and adjudicated["outcome"] == "adjudicated"
    assert adjudicated["label"] == "package" and adjudicated["decided_by"] == "admin"
    assert split["agreement"] == pytest.approx(2 / 3) and split["outcome"] == "decided"
    assert split["consensus_label"] == "product" and split["consensus_confidence"] >= 0.8
    assert split["human_labels"] == "ann: product, bob: product, cat: package"
    assert split["inspectors"] == ["ann", "bob", "cat"]
    assert (split["model_label"], split["model_confidence"]) == ("product", 0.6)
    assert split["label"] == "product" and split["decided_by"] == "consensus" and split["threshold"] is None


def test_requeue_sends_the_photo_to_a_different_inspector_and_consolidates_the_answers(one_at_a_time):
    db = one_at_a_time
    set_setting(db, key="thresholds", value={"product": 0.9}, actor="admin")
    _seed(db, [("product", 0.95), ("product", 0.95), ("product", 0.5), ("product", 0.5)])
    first = _answer(db, "ann", "package")
    second = _answer(db, "ann", "package")
    decision = db.execute("SELECT decision_id FROM images WHERE id = ?", [first]).fetchone()[0]

    requeue(db, image_id=first, actor="admin", reason="  the model is sure it is a product ")
    row = db.execute("SELECT status, queue_reason, required_answers, decision_id FROM images WHERE id = ?",
                     [first]).fetchone()
    assert row == ("queued", "rereview", 2, decision)  # the earlier decision counts until the re-review
    event = db.execute("SELECT inspector, detail FROM queue_events WHERE action = 'requeue'").fetchone()
    assert event[0] == "admin" and json.loads(event[1]) == {"reason": "the model is sure it is a product"}
    audit = db.execute("SELECT actor, target, detail FROM audit_log WHERE action = 'image.requeue'").fetchone()
    assert audit[:2] == ("admin", f"image:{first}") and json.loads(audit[2])["required_answers"] == 2
    assert any(h["what"] == "requeue" for h in item_history(db, image_id=first))

    # ann answered it already: she is offered something else; bob gets the re-review first (it has priority)
    assert claim_next(db, inspector="ann")["id"] != first
    assert claim_next(db, inspector="bob")["id"] == first
    assert claim_next(db, inspector="cat")["id"] != first  # exactly one more inspector
    saved = submit(db, image_id=first, label="product", actor="bob")
    assert saved["decision_id"] is None  # ann and bob disagree with equal weight: an admin decides
    cons = db.execute("SELECT n_answers, agreement, outcome FROM consensus WHERE image_id = ?", [first]).fetchone()
    assert cons == (2, 0.5, "adjudication")
    assert db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = ?", [first]).fetchone() == (
        "queued", "adjudication", decision)

    # the other photo: bob agrees with ann, so the consensus decides
    requeue(db, image_id=second, actor="admin", reason="again")
    assert claim_next(db, inspector="bob")["id"] == second
    assert submit(db, image_id=second, label="package", actor="bob")["decision_id"]
    cons = db.execute("SELECT n_answers, agreement, outcome, label FROM consensus WHERE image_id = ?", [second]).fetchone()
    assert cons == (2, 1.0, "decided", "package")
    assert db.execute("SELECT status, queue_reason FROM images WHERE id = ?", [second]).fetchone() == ("decided", None)


def test_requeue_removes_the_consensus_and_needs_one_more_than_answered(one_at_a_time):
    db = one_at_a_time
    _seed(db, [("product", 0.6)])
    _answer_overlap(db, 1, [("ann", "product"), ("bob", "product"), ("cat", "package")])
    requeue(db, image_id=1, actor="admin", reason="split")
    assert db.execute("SELECT COUNT(*) FROM consensus").fetchone()[0] == 0
    assert db.execute("SELECT required_answers FROM images WHERE id = 1").fetchone()[0] == 4
    for inspector in ("ann", "bob", "cat"):
        assert claim_next(db, inspector=inspector) is None
    assert claim_next(db, inspector="dan")["id"] == 1
    submit(db, image_id=1, label="product", actor="dan")
    assert db.execute("SELECT n_answers, agreement FROM consensus").fetchone() == (4, 0.75)


def test_requeue_refuses_what_it_cannot_do(one_at_a_time):
    db = one_at_a_time
    _seed(db, [("product", 0.6), ("product", 0.6)])
    decided = _answer(db, "ann", "product")
    with pytest.raises(NotFound):
        requeue(db, image_id=99, actor="admin", reason="x")
    with pytest.raises(InvalidInput, match="say why"):
        requeue(db, image_id=decided, actor="admin", reason="   ")
    with pytest.raises(InvalidInput, match="already in the queue"):
        requeue(db, image_id=2, actor="admin", reason="x")
    db.execute("UPDATE images SET status = 'failed' WHERE id = 2")
    with pytest.raises(InvalidInput, match="not decided"):
        requeue(db, image_id=2, actor="admin", reason="x")
    requeue(db, image_id=decided, actor="admin", reason="x")
    with pytest.raises(InvalidInput, match="already in the queue"):
        requeue(db, image_id=decided, actor="admin", reason="x")
    # nothing was half-done by the refusals
    assert db.execute("SELECT COUNT(*) FROM queue_events WHERE action = 'requeue'").fetchone()[0] == 1
