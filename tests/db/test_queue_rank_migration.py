"""m015: ``images.queue_rank`` backfilled to each photo's submitted time, kept by triggers, indexed for the queue."""

from __future__ import annotations

from datetime import datetime

import pytest

from db.database import connect
from db.migrations import MIGRATIONS, QUEUE_ORDER, apply_migrations

BEFORE = [(n, fn) for n, fn in MIGRATIONS if n < "m015"]
ORDER = f"ORDER BY {QUEUE_ORDER}, {{}}, id"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def old_db(tmp_path, monkeypatch):
    """A database made by the migrations before m015, with a queue in it."""
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", BEFORE)
    db = connect(tmp_path / "c.db")
    rows = [  # image id, submitted, reason
        (1, "2026-03-01T10:00:00.000000Z", "low_confidence"), (2, "2026-01-01T10:00:00.000000Z", "low_confidence"),
        (3, "2026-01-01T10:00:00.000000Z", "low_confidence"), (4, "2026-02-01T10:00:00.500000Z", "audit"),
        (5, "2026-02-01T10:00:00.250000Z", "no_model"), (6, "2025-12-31T23:59:59.999000Z", "no_model"),
        (7, "2026-01-15T00:00:00.000000Z", "rereview"), (8, "2026-01-02T00:00:00.000000Z", "adjudication"),
        (9, "2026-01-01T09:59:59.999999Z", "low_confidence"),
    ]
    for image_id, submitted, reason in rows:
        db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?)", [f"r{image_id}", submitted])
        db.execute("INSERT INTO images (id, review_id, uri, status, queue_reason, created_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                   [image_id, f"r{image_id}", f"{image_id}.jpg", reason, "2026-06-01T00:00:00Z"])
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS)
    return db


def test_existing_rows_keep_their_queue_order(old_db):
    before = [r[0] for r in old_db.execute(f"SELECT id FROM images WHERE status = 'queued' {ORDER.format('submitted_at')}")]
    assert apply_migrations(old_db)[0] == "m015_queue_rank"
    after = [r[0] for r in old_db.execute(f"SELECT id FROM images WHERE status = 'queued' {ORDER.format('queue_rank')}")]
    assert after == before == [7, 4, 9, 2, 3, 1, 6, 5, 8]
    for submitted, rank in old_db.execute("SELECT submitted_at, queue_rank FROM images"):
        assert rank == pytest.approx(_epoch(submitted), abs=1e-6)  # epoch seconds, to the microsecond


def test_triggers_rank_new_photos_and_keep_ranks_in_step(old_db):
    apply_migrations(old_db)
    rank = "SELECT queue_rank FROM images WHERE id = ?"
    old_db.execute("INSERT INTO images (id, review_id, uri, status, queue_reason) VALUES (10, 'r1', 'b.jpg', 'queued', 'no_model')")
    assert old_db.execute(rank, [10]).fetchone()[0] == pytest.approx(_epoch("2026-03-01T10:00:00Z"))  # the review's time
    old_db.execute("INSERT INTO reviews (id, review_type) VALUES ('bare', 'product')")  # no submitted time
    old_db.execute("INSERT INTO images (id, review_id, uri, status, created_at) VALUES (11, 'bare', 'c.jpg', 'queued', "
                   "'2026-04-01T00:00:00Z')")
    assert old_db.execute(rank, [11]).fetchone()[0] == pytest.approx(_epoch("2026-04-01T00:00:00Z"))  # its created time
    # a low-confidence photo moved up by its value keeps that lead when its review's time changes ...
    old_db.execute("UPDATE images SET queue_rank = queue_rank - 3600 WHERE id = 1")
    old_db.execute("UPDATE reviews SET submitted_at = '2026-03-02T10:00:00Z' WHERE id = 'r1'")
    assert old_db.execute(rank, [1]).fetchone()[0] == pytest.approx(_epoch("2026-03-02T10:00:00Z") - 3600)
    assert old_db.execute(rank, [10]).fetchone()[0] == pytest.approx(_epoch("2026-03-02T10:00:00Z"))
    old_db.execute("UPDATE reviews SET review_type = 'style' WHERE id = 'r1'")  # ... and when only its type changes
    assert old_db.execute(rank, [1]).fetchone()[0] == pytest.approx(_epoch("2026-03-02T10:00:00Z") - 3600)
    # ... and loses it when it is queued for another reason
    old_db.execute("UPDATE images SET queue_reason = 'audit' WHERE id = 1")
    assert old_db.execute(rank, [1]).fetchone()[0] == pytest.approx(_epoch("2026-03-02T10:00:00Z"))


def test_the_queue_order_is_read_from_the_covering_index(old_db):
    apply_migrations(old_db)
    plan = " ".join(r[3] for r in old_db.execute(
        "EXPLAIN QUERY PLAN SELECT i.id FROM images i INDEXED BY idx_images_queue_order WHERE i.status = 'queued' "
        f"AND i.pred_label = 'product' ORDER BY {QUEUE_ORDER.replace('queue_reason', 'i.queue_reason')}, i.queue_rank, "
        "i.id LIMIT 1"))
    assert "COVERING INDEX idx_images_queue_order" in plan and "TEMP B-TREE" not in plan
