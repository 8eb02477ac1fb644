"""A photo that cannot be fetched for a passing reason (dead network) stays pending and is retried later."""

from __future__ import annotations

import socket

from services.core import jobs
from services.core.config import set_setting
from services.core.storage import ObjectStore
from services.reviews.ingest import Row, ingest_rows
from tests.conftest import jpeg_bytes


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused


def _classify(ws, db) -> dict:
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    jobs.run_job(ws, job_id=job_id)
    return jobs.get_job(db, job_id)


def test_unreachable_storage_keeps_the_photo_pending_for_the_next_run(ws, db, s3_bucket, s3_server):
    store, bucket = s3_bucket
    for i in range(2):
        store.write(f"s3://{bucket}/p{i}.jpg", jpeg_bytes(color=(40 * i, 90, 200)))
    ingest_rows(db, rows=[Row(i + 1, f"r{i}", "product", [f"s3://{bucket}/p{i}.jpg"]) for i in range(2)],
                store=store, batch="b", actor="t")
    set_setting(db, key="s3_endpoint_url", value=_dead_endpoint(), actor="t")
    job = _classify(ws, db)
    assert (job["state"], job["failed"]) == ("done", 2)
    rows = list(db.query("SELECT status, error FROM images ORDER BY id"))
    assert all(r["status"] == "pending" for r in rows)  # not failed: nothing is wrong with the photos
    assert all("cannot reach" in r["error"] and "next classify run retries it" in r["error"] for r in rows)
    set_setting(db, key="s3_endpoint_url", value=s3_server.endpoint_url, actor="t")
    job = _classify(ws, db)
    assert (job["state"], job["done"], job["failed"]) == ("done", 2, 0)
    assert [r["status"] for r in db.query("SELECT status FROM images")] == ["queued", "queued"]
    assert db.execute("SELECT COUNT(*) FROM images WHERE error IS NOT NULL").fetchone()[0] == 0


def test_two_classify_jobs_never_classify_a_photo_twice(trained_ws, tmp_path):
    db = trained_ws.db()
    paths = []
    for i in range(3):
        p = tmp_path / f"p{i}.jpg"
        p.write_bytes(jpeg_bytes(color=(80 * i, 10, 10)))
        paths.append(str(p))
    ingest_rows(db, rows=[Row(i + 1, f"r{i}", "product", [p]) for i, p in enumerate(paths)],
                store=ObjectStore(), batch="b", actor="t")
    first = jobs.create_job(db, kind="classify", params={}, actor="t")
    second = jobs.create_job(db, kind="classify", params={}, actor="t")
    # both listed the same pending photos before either ran, as two processes starting together would
    for job_id in (first, second):
        db.execute("INSERT INTO job_items (job_id, item, state) SELECT ?, CAST(id AS TEXT), 'pending' "
                   "FROM images WHERE status = 'pending'", [job_id])
        db.execute("UPDATE jobs SET total = 3 WHERE id = ?", [job_id])
    for job_id in (first, second):
        jobs.run_job(trained_ws, job_id=job_id)
    assert [r[0] for r in db.execute("SELECT COUNT(*) FROM predictions GROUP BY image_id")] == [1, 1, 1]
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] <= 3
    assert jobs.get_job(db, second)["state"] == "done"
