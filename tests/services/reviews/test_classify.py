"""services.reviews.classify through the real job runner: real workspace database, real backbone, real trained head."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.core import jobs
from services.core.config import set_setting
from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.models.registry import active_version
from services.reviews.classify import pending_count
from services.reviews.ingest import Row, ingest_listing, ingest_rows


def photo_bytes(seed: int, size=(160, 120), fmt="JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = io.BytesIO()
    img.save(out, format=fmt, quality=90)
    return out.getvalue()


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def ingest_photos(db, folder: Path, photos: dict[str, bytes], *, review_type: str = "product") -> dict[str, int]:
    """One review per photo (review id = name); returns {name: image id}."""
    rows = [Row(n, name, review_type, [write(folder / name, data)]) for n, (name, data) in enumerate(photos.items(), 1)]
    ingest_rows(db, rows=rows, store=ObjectStore(), batch=str(folder), actor="t")
    return {r["review_id"]: r["id"] for r in db.query("SELECT id, review_id FROM images")}


def classify(ws, db) -> dict:
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    assert jobs.run_job(ws, job_id=job_id) == job_id
    return jobs.get_job(db, job_id)


def image_row(db, image_id: int) -> dict:
    return db["images"].get(image_id)


def item_errors(db, job_id: int) -> dict[int, str | None]:
    return {int(r[0]): r[1] for r in db.execute("SELECT item, error FROM job_items WHERE job_id = ?", [job_id])}


def n(db, sql: str, params=()) -> int:
    return db.execute(sql, list(params)).fetchone()[0]


# --------------------------------------------------------------------------------------------------
# no model yet: everything readable goes to the human queue


def test_without_a_model_every_readable_photo_is_queued_and_embedded(ws, db, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    good = {f"ok{i}.jpg": photo_bytes(i) for i in range(5)}
    good["ok5.png"] = photo_bytes(5, fmt="PNG")
    good["ok6.webp"] = photo_bytes(6, fmt="WEBP")
    full = photo_bytes(99, size=(400, 300))
    bad = {
        "corrupt.jpg": b"\x00garbage\xff" * 40,  # failed at ingest
        "empty.jpg": b"",  # failed at ingest
        "text.jpg": b"review text saved with a photo's name\n",  # failed at ingest
        "truncated.jpg": full[: len(full) // 2],  # a readable header: passes ingest, cannot be decoded
        "overwritten.jpg": photo_bytes(7),  # valid at ingest, garbage by the time it is classified
        "deleted.jpg": photo_bytes(8),  # valid at ingest, gone by the time it is classified
    }
    ids = ingest_photos(db, folder, {**good, **bad})
    assert {k for k in ids if image_row(db, ids[k])["status"] == "failed"} == {"corrupt.jpg", "empty.jpg", "text.jpg"}
    (folder / "overwritten.jpg").write_bytes(b"\x00" * 500)
    (folder / "deleted.jpg").unlink()

    job = classify(ws, db)
    assert job["state"] == "done" and job["error"] is None
    late_failures = {"truncated.jpg", "overwritten.jpg", "deleted.jpg"}
    assert (job["total"], job["done"], job["failed"]) == (len(good) + 3, len(good), 3)
    assert job["result"]["model_version"] is None
    assert job["result"]["images_by_status"] == {"queued": len(good), "failed": 6}

    for name in good:
        row = image_row(db, ids[name])
        assert (row["status"], row["queue_reason"], row["error"]) == ("queued", "no_model", None), name
        emb = db.execute("SELECT vector, cues FROM embeddings WHERE sha256 = ?", [row["sha256"]]).fetchall()
        assert len(emb) == 1 and emb[0][1] is None
        vector = np.frombuffer(emb[0][0], dtype=np.float32)
        assert vector.shape == (1280,) and np.isfinite(vector).all() and np.abs(vector).sum() > 0
    assert n(db, "SELECT COUNT(*) FROM embeddings") == len(good)
    assert n(db, "SELECT COUNT(*) FROM predictions") == n(db, "SELECT COUNT(*) FROM decisions") == 0

    errors = item_errors(db, job["id"])
    assert set(errors) == {ids[k] for k in list(good) + sorted(late_failures)}  # ingest failures are not job items
    for name in late_failures:
        row = image_row(db, ids[name])
        assert row["status"] == "failed" and row["error"] and row["error"] == errors[ids[name]], name
    assert "truncated" in image_row(db, ids["truncated.jpg"])["error"]
    assert "changed since it was ingested" in image_row(db, ids["overwritten.jpg"])["error"]
    assert "not found" in image_row(db, ids["deleted.jpg"])["error"]
    assert {int(e["item"]) for e in jobs.failed_items(db, job["id"])} == {ids[k] for k in late_failures}
    for name in ("corrupt.jpg", "empty.jpg", "text.jpg"):
        row = image_row(db, ids[name])
        assert row["status"] == "failed" and row["error"]

    # a second run finds nothing pending and changes nothing
    before = list(db.query("SELECT * FROM images ORDER BY id"))
    second = classify(ws, db)
    assert (second["state"], second["total"], second["done"], second["failed"]) == ("done", 0, 0, 0)
    assert list(db.query("SELECT * FROM images ORDER BY id")) == before


def test_same_bytes_in_two_reviews_share_one_embedding(ws, db, tmp_path: Path) -> None:
    data = photo_bytes(1)
    ids = ingest_photos(db, tmp_path / "p", {"a.jpg": data, "b.jpg": data, "c.jpg": photo_bytes(2)})
    job = classify(ws, db)
    assert (job["done"], job["failed"]) == (3, 0)
    assert {image_row(db, i)["status"] for i in ids.values()} == {"queued"}
    assert n(db, "SELECT COUNT(*) FROM embeddings") == 2


def test_pending_count_is_what_the_next_classify_job_takes(ws, db, tmp_path: Path) -> None:
    assert pending_count(db, actor="t") == 0
    ingest_photos(db, tmp_path / "p", {f"{i}.jpg": photo_bytes(i) for i in range(3)})
    assert pending_count(db, actor="t") == 3
    assert classify(ws, db)["total"] == 3
    assert pending_count(db, actor="t") == 0


def test_empty_workspace_job_is_done(ws, db) -> None:
    job = classify(ws, db)
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 0, 0, 0)


# --------------------------------------------------------------------------------------------------
# cancel and resume


def test_cancel_a_queued_job_processes_nothing(ws, db, tmp_path: Path) -> None:
    ids = ingest_photos(db, tmp_path / "p", {f"{i}.jpg": photo_bytes(i) for i in range(3)})
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    jobs.cancel_job(db, job_id=job_id, actor="bob")
    job = jobs.get_job(db, job_id)
    assert job["state"] == "cancelled" and job["finished_at"]
    assert jobs.run_job(ws, job_id=job_id) is None
    assert jobs.run_job(ws) is None
    assert (jobs.get_job(db, job_id)["state"], jobs.get_job(db, job_id)["done"]) == ("cancelled", 0)
    assert n(db, "SELECT COUNT(*) FROM job_items") == 0
    assert {image_row(db, i)["status"] for i in ids.values()} == {"pending"}
    assert n(db, "SELECT COUNT(*) FROM embeddings") == 0
    assert n(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'job.cancel' AND actor = 'bob'") == 1
    jobs.cancel_job(db, job_id=job_id, actor="bob")  # cancelling twice is harmless
    with pytest.raises(InvalidInput, match="only failed or cancelled"):
        jobs.resume_job(db, job_id=classify(ws, db)["id"], actor="t")  # a done job cannot be resumed


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch):
    """The registered classify kind with batches of 2 and a record of the image ids each compute() saw.

    ``crash`` (settable) is an exception raised by compute() on that call number (1-based), once.
    """
    kind = jobs.KINDS["classify"]
    monkeypatch.setattr(kind, "batch_size", 2)
    original = type(kind).compute
    seen: list[list[int]] = []
    crash: dict[str, object] = {}

    def compute(ctx, loaded):
        seen.append(list(loaded.ids))
        if crash.get("at") == len(seen):
            crash.pop("at")
            raise crash.pop("exc")
        return original(kind, ctx, loaded)

    monkeypatch.setattr(kind, "compute", compute)
    return seen, crash


def test_resume_after_a_failed_batch_does_not_redo_finished_items(ws, db, tmp_path: Path, small_batches) -> None:
    seen, crash = small_batches
    ids = ingest_photos(db, tmp_path / "p", {f"{i}.jpg": photo_bytes(i) for i in range(6)})
    crash.update(at=2, exc=RuntimeError("backbone fell over"))
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    assert job["state"] == "failed" and "RuntimeError: backbone fell over" in job["error"]
    assert (job["total"], job["done"], job["failed"]) == (6, 2, 0)
    first = seen[0]
    assert {image_row(db, i)["status"] for i in first} == {"queued"}
    assert n(db, "SELECT COUNT(*) FROM images WHERE status = 'pending'") == 4
    assert n(db, "SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state = 'pending'", [job_id]) == 4

    jobs.resume_job(db, job_id=job_id, actor="t")
    assert jobs.get_job(db, job_id)["state"] == "queued"
    seen.clear()
    assert jobs.run_job(ws, job_id=job_id) == job_id
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["total"], job["done"], job["failed"], job["error"]) == ("done", 6, 6, 0, None)
    redone = [i for batch in seen for i in batch]
    assert sorted(redone) == sorted(set(ids.values()) - set(first))  # the first batch was not classified again
    assert {image_row(db, i)["status"] for i in ids.values()} == {"queued"}


def test_a_killed_worker_is_resumed_after_its_lease_expires(ws, db, tmp_path: Path, small_batches) -> None:
    """The process dies mid-job (nothing records it): another worker takes over once the lease runs out."""
    seen, crash = small_batches
    ids = ingest_photos(db, tmp_path / "p", {f"{i}.jpg": photo_bytes(i) for i in range(5)})
    crash.update(at=2, exc=KeyboardInterrupt())
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    with pytest.raises(KeyboardInterrupt):
        jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["done"]) == ("running", 2)
    assert jobs.run_job(ws, job_id=job_id) is None  # the dead worker's lease still holds
    db.execute("UPDATE jobs SET lease_expires = 0 WHERE id = ?", [job_id])  # ... until it runs out
    first = seen[0]
    seen.clear()
    assert jobs.run_job(ws, job_id=job_id, owner="worker-2") == job_id
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["done"], job["failed"], job["lease_owner"]) == ("done", 5, 0, "worker-2")
    assert sorted(i for b in seen for i in b) == sorted(set(ids.values()) - set(first))
    assert {image_row(db, i)["status"] for i in ids.values()} == {"queued"}


def test_cancel_a_running_job_between_batches_then_resume(ws, db, tmp_path: Path, small_batches) -> None:
    seen, _ = small_batches
    ids = ingest_photos(db, tmp_path / "p", {f"{i}.jpg": photo_bytes(i) for i in range(6)})
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    kind = jobs.KINDS["classify"]
    compute = kind.compute

    def cancel_after_first(ctx, loaded):
        out = compute(ctx, loaded)
        if len(seen) == 1:
            other = ws.db()  # a person presses Cancel on the page: another connection
            try:
                jobs.cancel_job(other, job_id=job_id, actor="bob")
            finally:
                other.close()
        return out

    kind.compute = cancel_after_first
    try:
        jobs.run_job(ws, job_id=job_id)
    finally:
        kind.compute = compute
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["done"]) == ("cancelled", 2)
    assert n(db, "SELECT COUNT(*) FROM images WHERE status = 'queued'") == 2
    first = seen[0]
    seen.clear()
    jobs.resume_job(db, job_id=job_id, actor="t")
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["done"]) == ("done", 6)
    assert sorted(i for b in seen for i in b) == sorted(set(ids.values()) - set(first))


# --------------------------------------------------------------------------------------------------
# with a trained model (needs ../shared)


def _ingest_samples(db, samples: Path) -> dict[int, str]:
    """Every sample photo as its own product review; returns {image id: true class}."""
    ingest_listing(db, prefix_uri=str(samples), store=ObjectStore(), review_type="product", actor="t")
    truth = {}
    for image_id, uri in db.execute("SELECT id, uri FROM images").fetchall():
        truth[image_id] = Path(uri).relative_to(samples).parts[0]
    return truth


def _split_thresholds(db) -> dict[str, float]:
    """Confident for two classes, never confident for the other two: both routes get photos."""
    thresholds = {"package": 0.0, "product": 0.0, "full_length": 1.0, "half_length": 1.0}
    set_setting(db, key="thresholds", value=thresholds, actor="t")
    return thresholds


def test_trained_model_predicts_and_routes(trained_ws, samples: Path) -> None:
    db = trained_ws.db()
    try:
        truth = _ingest_samples(db, samples)
        assert len(truth) >= 8
        thresholds = _split_thresholds(db)
        set_setting(db, key="audit_rate", value=0.0, actor="t")
        version = active_version(db)
        assert version is not None

        job = classify(trained_ws, db)
        assert (job["state"], job["done"], job["failed"]) == ("done", len(truth), 0)
        assert job["result"]["model_version"] == version["name"]

        preds = {r["image_id"]: r for r in db.query("SELECT * FROM predictions")}
        assert set(preds) == set(truth)
        routes = {"auto": 0, "queued": 0}
        for image_id, p in preds.items():
            assert p["model_version_id"] == version["id"]
            assert p["label"] in version["classes"] and 0.0 <= p["confidence"] <= 1.0
            img = image_row(db, image_id)
            decisions = list(db.query("SELECT * FROM decisions WHERE image_id = ?", [image_id]))
            if p["confidence"] >= thresholds[p["label"]]:
                routes["auto"] += 1
                assert (img["status"], img["queue_reason"]) == ("decided", None)
                [d] = decisions
                assert (d["source"], d["label"], d["prediction_id"]) == ("auto", p["label"], p["id"])
                assert d["decided_by"] == f"model:{version['name']}"
                assert d["credit"] == int(p["label"] == "product")  # product reviews: only product photos qualify
            else:
                routes["queued"] += 1
                assert (img["status"], img["queue_reason"]) == ("queued", "low_confidence")
                assert decisions == []
        assert routes["auto"] > 0 and routes["queued"] > 0, routes
        # the model learnt these very photos: it should be right about nearly all of them
        correct = sum(preds[i]["label"] == truth[i] for i in truth)
        assert correct / len(truth) >= 0.8
        # every stored embedding belongs to a classified photo; person cues only where the head asked for them
        assert n(db, "SELECT COUNT(*) FROM images i LEFT JOIN embeddings e ON e.sha256 = i.sha256 WHERE e.sha256 IS NULL") == 0
    finally:
        db.close()


def test_trained_model_audit_sample_stays_in_the_queue(trained_ws, samples: Path, tmp_path: Path) -> None:
    db = trained_ws.db()
    try:
        folder = tmp_path / "few"
        for cls in ("package", "product"):
            src = next(p for p in sorted((samples / cls).iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            write(folder / f"{cls}{src.suffix}", src.read_bytes())
        ingest_listing(db, prefix_uri=str(folder), store=ObjectStore(), review_type="product", actor="t")
        set_setting(db, key="thresholds", value={c: 0.0 for c in ("package", "product", "full_length", "half_length")}, actor="t")
        set_setting(db, key="audit_rate", value=1.0, actor="t")
        job = classify(trained_ws, db)
        assert (job["done"], job["failed"]) == (2, 0)
        for img in db.query("SELECT * FROM images"):
            assert (img["status"], img["queue_reason"]) == ("queued", "audit")
            assert n(db, "SELECT COUNT(*) FROM decisions WHERE image_id = ? AND source = 'auto'", [img["id"]]) == 1
    finally:
        db.close()


def test_trained_resume_classifies_each_photo_once(trained_ws, samples: Path, small_batches) -> None:
    seen, crash = small_batches
    db = trained_ws.db()
    try:
        truth = _ingest_samples(db, samples)
        _split_thresholds(db)
        crash.update(at=3, exc=RuntimeError("out of memory"))
        job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
        jobs.run_job(trained_ws, job_id=job_id)
        job = jobs.get_job(db, job_id)
        assert (job["state"], job["done"]) == ("failed", 4)
        first = [i for b in seen[:2] for i in b]
        assert n(db, "SELECT COUNT(DISTINCT image_id) FROM predictions") == 4
        jobs.resume_job(db, job_id=job_id, actor="t")
        jobs.run_job(trained_ws, job_id=job_id)
        job = jobs.get_job(db, job_id)
        assert (job["state"], job["done"], job["failed"]) == ("done", len(truth), 0)
        per_image = dict(db.execute("SELECT image_id, COUNT(*) FROM predictions GROUP BY image_id").fetchall())
        assert per_image == {i: 1 for i in truth}
        assert all(v <= 1 for v in dict(db.execute("SELECT image_id, COUNT(*) FROM decisions GROUP BY image_id").fetchall()).values())
        assert {image_row(db, i)["status"] for i in first} <= {"decided", "queued"}
        assert n(db, "SELECT COUNT(*) FROM images WHERE status NOT IN ('decided', 'queued')") == 0
    finally:
        db.close()
