"""Re-scoring the queue when a model version becomes active: photos queued without a model are scored from their
stored embeddings, confident ones decided automatically with the new version, held or answered ones left alone."""

from __future__ import annotations

import json

from services.core.config import CLASSES, get_settings, set_setting
from services.core.jobs import get_job, run_job
from services.core.storage import ObjectStore
from services.hitl.queue import claim_next
from services.models.training import import_folder, train
from services.reviews import rescore
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import run_kind_now


def queue_without_a_model(ws, db, photos, tmp_path) -> None:
    """Ingest one product review per photo and classify them while no model exists: all queue for people."""
    manifest = tmp_path / "reviews.jsonl"
    manifest.write_text("".join(json.dumps({"review_id": f"r{n}", "review_type": "product", "image_uris": [str(p)]}) + "\n"
                                for n, p in enumerate(photos)))
    ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    run_kind_now(ws, db, "classify")


def test_a_new_model_decides_the_photos_queued_before_it(ws, db, samples, tmp_path):
    photos = sorted(p for p in samples.rglob("*.jp*g"))[:24]
    queue_without_a_model(ws, db, photos, tmp_path)
    assert db.execute("SELECT COUNT(*) FROM images WHERE queue_reason = 'no_model'").fetchone()[0] == 24
    assert rescore.queue_if_needed(db) is None  # no model yet
    held = claim_next(db, inspector="ines")["id"]  # someone is looking at this one: it is left to them

    import_folder(db, root=str(samples), store=ObjectStore(), actor="cli:test")
    version = train(ws, db, actor="cli:test")["model_version_id"]
    # 60 photos certify no threshold at 98%, so the version routes everything to people; an admin who accepts
    # the point estimate's risk lowers them (what re-scoring does with confident photos is what is tested here)
    assert set(get_settings(db)["thresholds"].values()) == {1.0}
    set_setting(db, key="thresholds", value=dict.fromkeys(CLASSES, 0.6), actor="cli:test")
    job_id = rescore.queue_if_needed(db)
    assert job_id and rescore.queue_if_needed(db) is None  # one job per version
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done" and job["result"]["decided_automatically"] > 0, job

    rows = db.execute("SELECT i.id, i.status, i.queue_reason, p.model_version_id FROM images i LEFT JOIN predictions p "
                      "ON p.id = (SELECT MAX(id) FROM predictions WHERE image_id = i.id)").fetchall()
    by_id = {r[0]: r for r in rows}
    assert by_id[held][2] == "no_model" and by_id[held][3] is None  # untouched
    others = [r for r in rows if r[0] != held]
    assert all(r[3] == version for r in others)  # every prediction carries the version that made it
    decided = [r for r in others if r[1] == "decided"]
    assert decided and all(r[2] != "no_model" for r in others)
    assert all(r[2] in ("low_confidence", "audit") for r in others if r[1] == "queued")
    notes = [r[0] for r in db.execute("SELECT reason FROM decisions")]
    assert notes and all(n.startswith("re-scored by a newer model") for n in notes)


def test_a_job_for_a_version_no_longer_active_does_nothing(ws, db):
    from services.core.jobs import create_job

    job_id = create_job(db, kind=rescore.KIND, params={"version_id": 999}, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done" and "another model version" in job["result"]["skipped"] and job["total"] == 0


def test_rolling_back_re_scores_the_queue_with_the_older_version(ws, db, samples, tmp_path):
    from services.core.config import CLASSES, set_setting
    from services.models.registry import activate_version, active_version, list_versions

    photos = sorted(p for p in samples.rglob("*.jp*g"))[:8]
    queue_without_a_model(ws, db, photos, tmp_path)
    set_setting(db, key="thresholds", value=dict.fromkeys(CLASSES, 1.0), actor="cli:test")  # everything stays queued
    import_folder(db, root=str(samples), store=ObjectStore(), actor="cli:test")

    def latest_versions() -> set[int]:
        return {r[0] for r in db.execute("SELECT p.model_version_id FROM images i JOIN predictions p ON p.id = "
                                         "(SELECT MAX(id) FROM predictions WHERE image_id = i.id)")}

    def rescore_now() -> None:
        job_id = rescore.queue_if_needed(db)
        assert job_id and run_job(ws, job_id=job_id) == job_id and get_job(db, job_id)["state"] == "done"
        assert rescore.queue_if_needed(db) is None  # once per activation

    first = train(ws, db, actor="cli:test")["model_version_id"]
    rescore_now()
    second = train(ws, db, actor="cli:test", c=0.3)["model_version_id"]  # promoted
    rescore_now()
    assert latest_versions() == {second}
    activate_version(db, version_id=first, actor="cli:test")  # roll back
    assert active_version(db)["id"] == first and {v["id"] for v in list_versions(db)} == {first, second}
    rescore_now()
    assert latest_versions() == {first}  # the queue carries the rolled-back version's suggestions again
    assert db.execute("SELECT COUNT(*) FROM images WHERE status = 'queued'").fetchone()[0] == 8


def test_photos_queued_before_any_model_are_scored_with_person_cues_and_a_lapsed_lease_holds_nothing(
        ws, db, samples, tmp_path):
    """Issue 20 item 6: photos classified while no model existed have no person cues stored (only the training
    photos' cues are, by training); re-scoring used to leave every photo the person stage looks at queued for 'a
    first model' forever. A photo held while a job ran is scored by a later job once its lease has run out."""
    from PIL import Image

    copies = []  # other bytes than the training photos: their embeddings get no cues from training
    for n, src in enumerate(sorted(samples.glob("full_length/*.jp*g"))[:3] + sorted(samples.glob("product/*.jp*g"))[:2]):
        dst = tmp_path / f"copy{n}.jpg"
        Image.open(src).convert("RGB").save(dst, quality=83)
        copies.append(dst)
    queue_without_a_model(ws, db, copies, tmp_path)
    assert db.execute("SELECT COUNT(*) FROM embeddings WHERE cues IS NOT NULL").fetchone()[0] == 0
    held = claim_next(db, inspector="ines")["id"]
    import_folder(db, root=str(samples), store=ObjectStore(), actor="cli:test")
    version = train(ws, db, actor="cli:test")["model_version_id"]

    job_id = rescore.queue_if_needed(db)
    assert run_job(ws, job_id=job_id) == job_id and get_job(db, job_id)["failed"] == 0
    latest = dict(db.execute("SELECT i.id, (SELECT p.model_version_id FROM predictions p WHERE p.image_id = i.id "
                             "ORDER BY p.id DESC LIMIT 1) FROM images i JOIN reviews r ON r.id = i.review_id "
                             "WHERE r.id LIKE 'r%'").fetchall())
    assert latest.pop(held) is None  # held while the job ran: left to the inspector
    assert set(latest.values()) == {version}, latest
    assert db.execute("SELECT COUNT(*) FROM images WHERE queue_reason = 'no_model'").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM embeddings e JOIN images i ON i.sha256 = e.sha256 "
                      "WHERE i.review_id LIKE 'r%' AND e.cues IS NOT NULL").fetchone()[0] >= 2  # kept for next time
    assert rescore.queue_if_needed(db) is None  # the lease still lives

    db.execute("UPDATE queue_claims SET lease_expires = 0 WHERE image_id = ?", [held])  # she went home
    again = rescore.queue_if_needed(db)
    assert again and again != job_id
    assert run_job(ws, job_id=again) == again and get_job(db, again)["total"] == 1  # only the one left
    assert db.execute("SELECT COUNT(*) FROM images WHERE queue_reason = 'no_model'").fetchone()[0] == 0
    assert rescore.queue_if_needed(db) is None
