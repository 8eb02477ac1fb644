import sqlite3

import pytest

from db.database import connect
from db.migrations import MIGRATIONS, apply_migrations


def test_fresh_database_gets_every_table_wal_and_records_migrations(tmp_path):
    db = connect(tmp_path / "c.db")
    tables = set(db.table_names())
    assert {"reviews", "images", "predictions", "decisions", "model_versions", "jobs", "job_items",
            "settings", "audit_log", "labels", "embeddings"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == [name for name, _ in MIGRATIONS]


def test_the_registry_lists_each_migration_once_in_order_under_its_function_name():
    names = [name for name, _ in MIGRATIONS]
    assert names == [fn.__name__ for _, fn in MIGRATIONS]
    assert names == sorted(set(names))
    assert [name[:4] for name in names] == [f"m{i:03d}" for i in range(1, len(names) + 1)]


def test_migrations_apply_once(tmp_path):
    db = connect(tmp_path / "c.db")
    assert apply_migrations(db) == []
    db.close()
    again = connect(tmp_path / "c.db")  # reopening applies nothing and keeps data
    assert apply_migrations(again) == []


def test_decisions_and_audit_log_are_append_only(tmp_path):
    db = connect(tmp_path / "c.db")
    db.execute("INSERT INTO reviews (id, review_type) VALUES ('r1', 'product')")
    db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (1, 'r1', 'a.jpg', 'queued')")
    db.execute("INSERT INTO decisions (image_id, label, credit, source) VALUES (1, 'product', 1, 'human')")
    db.execute("INSERT INTO audit_log (actor, action) VALUES ('a', 'x')")
    for sql in ("UPDATE decisions SET label = 'package'", "DELETE FROM decisions",
                "UPDATE audit_log SET actor = 'b'", "DELETE FROM audit_log"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)


def test_a_failing_migration_rolls_back(tmp_path, monkeypatch):
    db = connect(tmp_path / "c.db")

    def broken(d):
        d.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS + [("m999_broken", broken)])
    with pytest.raises(RuntimeError):
        apply_migrations(db)
    assert "half_done" not in db.table_names()
    assert db.execute("SELECT COUNT(*) FROM _migrations WHERE name = 'm999_broken'").fetchone()[0] == 0


def test_a_run_stopped_by_a_failing_migration_resumes_with_it(tmp_path, monkeypatch):
    attempts = []

    def flaky(d):
        attempts.append(1)
        d.execute("CREATE TABLE flaky_done (x)")
        if len(attempts) == 1:
            raise RuntimeError("boom")

    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS[:2] + [("m900_flaky", flaky)] + MIGRATIONS[2:3])
    with pytest.raises(RuntimeError):
        connect(tmp_path / "c.db")
    db = connect(tmp_path / "c.db", migrate=False)
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == [name for name, _ in MIGRATIONS[:2]]
    assert apply_migrations(db) == ["m900_flaky", MIGRATIONS[2][0]]
    assert "flaky_done" in db.table_names() and len(attempts) == 2


def test_m002_points_each_image_at_its_latest_decision(tmp_path, monkeypatch):
    first = [(n, fn) for n, fn in MIGRATIONS if n.startswith("m001")]
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", first)
    db = connect(tmp_path / "c.db")
    db.execute("INSERT INTO reviews (id, review_type) VALUES ('r1', 'product')")
    db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (1, 'r1', 'a.jpg', 'decided'), (2, 'r1', 'b.jpg', 'queued')")
    for label in ("package", "product"):
        db.execute("INSERT INTO decisions (image_id, label, credit, source) VALUES (1, ?, 1, 'human')", [label])
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS)
    assert apply_migrations(db) == [n for n, _ in MIGRATIONS if not n.startswith("m001")]
    latest = db.execute("SELECT d.label FROM images i JOIN decisions d ON d.id = i.decision_id WHERE i.id = 1").fetchone()
    assert latest == ("product",)
    assert db.execute("SELECT decision_id FROM images WHERE id = 2").fetchone() == (None,)


def test_m004_m005_copy_review_and_latest_prediction_onto_images_and_keep_them(tmp_path, monkeypatch):
    upto3 = [(n, fn) for n, fn in MIGRATIONS if n[:4] in ("m001", "m002", "m003")]
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", upto3)
    db = connect(tmp_path / "c.db")
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES ('r1', 'style', '2026-01-02T00:00:00Z')")
    db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (1, 'r1', 'a.jpg', 'queued')")
    for label, conf in (("package", 0.4), ("product", 0.7)):
        db.execute("INSERT INTO predictions (image_id, label, confidence) VALUES (1, ?, ?)", [label, conf])
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS)
    apply_migrations(db)
    row = "SELECT submitted_at, review_type, pred_label, pred_confidence FROM images WHERE id = ?"
    assert db.execute(row, [1]).fetchone() == ("2026-01-02T00:00:00Z", "style", "product", 0.7)  # backfilled
    db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (2, 'r1', 'b.jpg', 'queued')")
    db.execute("INSERT INTO predictions (image_id, label, confidence) VALUES (2, 'full_length', 0.9)")
    assert db.execute(row, [2]).fetchone() == ("2026-01-02T00:00:00Z", "style", "full_length", 0.9)  # by triggers
    db.execute("UPDATE reviews SET review_type = 'product', submitted_at = '2026-01-03T00:00:00Z' WHERE id = 'r1'")
    assert db.execute(row, [1]).fetchone()[:2] == ("2026-01-03T00:00:00Z", "product")
    plan = " ".join(r[3] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT i.id FROM images i INDEXED BY idx_images_queue_order WHERE i.status = 'queued' "
        "AND i.pred_label = 'product' ORDER BY CASE i.queue_reason WHEN 'audit' THEN 0 WHEN 'rereview' THEN 0 "
        "WHEN 'low_confidence' THEN 1 WHEN 'adjudication' THEN 3 ELSE 2 END, i.queue_rank, i.id LIMIT 1"))  # since m015
    assert "COVERING INDEX idx_images_queue_order" in plan and "TEMP B-TREE" not in plan
