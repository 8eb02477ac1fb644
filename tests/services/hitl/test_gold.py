"""Gold items: marking decides a queued photo; accuracy counts only active gold answers."""

from __future__ import annotations

import pytest

from services.core.errors import InvalidInput, NotFound
from services.hitl.gold import gold_accuracy, gold_items, mark_gold, unmark_gold


def _photo(db, image_id: int, *, status: str = "queued", reason: str | None = "low_confidence") -> None:
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', '2026-01-01T00:00:00Z')",
               [f"r{image_id}"])
    db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, ?, ?)",
               [image_id, f"r{image_id}", f"s3://b/{image_id}.jpg", f"{image_id:064x}", status, reason])


def _gold_answer(db, image_id: int, inspector: str, label: str, kind: str = "gold") -> int:
    return db.execute("INSERT INTO answers (image_id, inspector, label, kind, answered_at) VALUES (?, ?, ?, ?, 'x')",
                      [image_id, inspector, label, kind]).lastrowid


def test_mark_gold_decides_a_queued_photo_and_leaves_a_trail(db):
    with db.atomic():
        _photo(db, 1)
        _photo(db, 2, status="decided", reason=None)
        _photo(db, 3, reason="adjudication")
        db.execute("INSERT INTO queue_claims (image_id, inspector, kind, claimed_at, claimed_ts, lease_expires) "
                   "VALUES (1, 'ann', 'queue', 'x', 0, 1e12)")
    got = mark_gold(db, image_id=1, label="product", actor="admin")
    assert got["label"] == "product" and got["decision_id"] is not None
    row = db.execute("SELECT i.status, i.queue_reason, d.label, d.decided_by, d.reason FROM images i "
                     "JOIN decisions d ON d.id = i.decision_id WHERE i.id = 1").fetchone()
    assert row[:4] == ("decided", None, "product", "admin") and row[4].startswith("gold item")
    assert db.execute("SELECT COUNT(*) FROM queue_claims").fetchone()[0] == 0
    assert db.execute("SELECT actor, target FROM audit_log WHERE action = 'gold.mark'").fetchall() == [("admin", "image:1")]
    assert db.execute("SELECT inspector, action, label FROM queue_events WHERE image_id = 1").fetchall() == \
        [("admin", "gold", "product")]

    assert mark_gold(db, image_id=2, label="package", actor="admin")["decision_id"] is None  # decided already
    assert mark_gold(db, image_id=3, label="package", actor="admin")["decision_id"] is None  # adjudication stays
    assert db.execute("SELECT status, queue_reason FROM images WHERE id = 3").fetchone() == ("queued", "adjudication")
    mark_gold(db, image_id=2, label="half_length", actor="boss")  # marking again changes the label
    assert db.execute("SELECT label, created_by FROM gold_items WHERE image_id = 2").fetchone() == ("half_length", "boss")

    with pytest.raises(InvalidInput, match="unknown label"):
        mark_gold(db, image_id=1, label="cat", actor="admin")
    with pytest.raises(NotFound):
        mark_gold(db, image_id=99, label="product", actor="admin")
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1


def test_gold_accuracy_ignores_undone_answers_and_other_kinds(db):
    with db.atomic():
        for i in (1, 2, 3):
            _photo(db, i, status="decided", reason=None)
        _photo(db, 4)
    for i, label in ((1, "product"), (2, "package"), (3, "full_length")):
        mark_gold(db, image_id=i, label=label, actor="admin")
    with db.atomic():
        _gold_answer(db, 1, "ann", "product")
        _gold_answer(db, 2, "ann", "package")
        withdrawn = _gold_answer(db, 3, "ann", "half_length")  # wrong, then undone
        db.execute("INSERT INTO queue_events (at, ts, image_id, inspector, action, answer_id) "
                   "VALUES ('x', 0, 3, 'ann', 'undo', ?)", [withdrawn])
        _gold_answer(db, 3, "ann", "full_length")
        _gold_answer(db, 1, "bob", "package")
        _gold_answer(db, 2, "bob", "package")
        _gold_answer(db, 3, "bob", "package", kind="overlap")  # not served as gold: not scored
        _gold_answer(db, 4, "bob", "package")  # not a gold item
    acc = gold_accuracy(db)
    assert acc == {"ann": {"answers": 3, "correct": 3, "accuracy": 1.0},
                   "bob": {"answers": 2, "correct": 1, "accuracy": 0.5}}
    items = {g["image_id"]: g for g in gold_items(db)}
    assert set(items) == {1, 2, 3}
    assert (items[1]["answers"], items[1]["correct"]) == (2, 1)
    assert (items[3]["answers"], items[3]["correct"]) == (1, 1)
    assert items[1]["uri"] == "s3://b/1.jpg" and items[1]["sha256"] == f"{1:064x}" and items[1]["label"] == "product"

    removed = unmark_gold(db, image_id=2, actor="admin")
    assert removed["label"] == "package"
    assert gold_accuracy(db)["bob"] == {"answers": 1, "correct": 0, "accuracy": 0.0}
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'gold.unmark'").fetchone()[0] == 1
    with pytest.raises(NotFound):
        unmark_gold(db, image_id=2, actor="admin")
