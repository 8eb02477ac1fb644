"""Reused photos: real sample photos and edited copies made here (resize, crop, JPEG 50, mirror, brighter)
in other reviews are flagged; different photos, even of the same package shot seconds apart, are not."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from services.core.config import set_setting
from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.hitl import export
from services.hitl.answers import submit
from services.hitl.queue import claim_next
from services.reuse import detection as reuse
from services.reuse.near_copies import compare, hash_distance, perceptual_hash
from services.reuse.similarity import SimilarityIndex
from services.reviews.decisions import review_outcomes
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import run_kind_now

BURST = ("PXL_20201103_181906837_jpg.rf.efd372ab387fe7ff77de38da07259146.jpg",
         "PXL_20201103_181916758_jpg.rf.143b472aca26adaf77dbc094c9b1fa3b.jpg")  # one package, two shots 10 s apart
EDITS = {
    "resize": lambda im: im.resize((im.width // 2, im.height // 2)),
    "crop": lambda im: im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10)),
    "jpeg50": lambda im: im,  # saved at quality 50 below
    "mirror": ImageOps.mirror,
    "bright": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
}


def _save(img: Image.Image, path: Path, quality: int = 90) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").save(path, "JPEG", quality=quality)
    return str(path)


@pytest.fixture
def batch(ws, db, samples, tmp_path):
    """Originals (two products, the package burst, a person) by user u0; edited copies of two of them, and
    a byte-for-byte copy, each in a review of its own by other users."""
    originals = {
        "prod_a": sorted((samples / "product").glob("*.jp*g"))[0],
        "prod_b": sorted((samples / "product").glob("*.jp*g"))[5],
        "burst_1": samples / "package" / BURST[0],
        "burst_2": samples / "package" / BURST[1],
        "person": sorted((samples / "full_length").glob("*.jp*g"))[0],
    }
    rows, expected = [], {}
    for name, src in originals.items():
        rows.append({"review_id": f"orig_{name}", "review_type": "product", "user_id": "u0", "image_uris": [str(src)],
                     "submitted_at": "2026-01-01T00:00:00Z"})
    for base in ("prod_a", "person"):
        img = Image.open(originals[base])
        img = ImageOps.exif_transpose(img)
        for edit, fn in EDITS.items():
            uri = _save(fn(img), tmp_path / "edits" / f"{base}_{edit}.jpg", quality=50 if edit == "jpeg50" else 90)
            rid = f"copy_{base}_{edit}"
            rows.append({"review_id": rid, "review_type": "product", "user_id": f"u_{edit}", "image_uris": [uri],
                         "submitted_at": "2026-01-02T00:00:00Z"})
            expected[rid] = f"orig_{base}"
    same = tmp_path / "same" / "exact.jpg"
    same.parent.mkdir()
    same.write_bytes(originals["prod_b"].read_bytes())
    rows.append({"review_id": "copy_prod_b_exact", "review_type": "product", "user_id": "u0", "image_uris": [str(same)],
                 "submitted_at": "2026-01-03T00:00:00Z"})
    expected["copy_prod_b_exact"] = "orig_prod_b"
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    assert report.as_dict()["error_count"] == 0
    run_kind_now(ws, db, "classify")
    return expected


def _pairs(db) -> dict[str, tuple[str, str, str]]:
    return {r[0]: (r[1], r[2], r[3]) for r in db.execute(
        "SELECT a.review_id, b.review_id, f.kind, f.how FROM reuse_flags f JOIN images a ON a.id = f.image_id "
        "JOIN images b ON b.id = f.other_image_id")}


def test_edited_copies_are_flagged_and_different_photos_are_not(ws, db, batch):
    assert reuse.unchecked_count(db) == len(batch) + 5
    job = run_kind_now(ws, db, reuse.KIND)
    found = _pairs(db)
    assert {rid: other for rid, (other, _, _) in found.items()} == batch  # every copy, and nothing else
    assert found["copy_prod_b_exact"][1:] == ("exact", "bytes")
    # crops meet the hash of the original's centre window, or its keypoints; the rest its whole hash
    assert found["copy_prod_a_crop"][1] == "near" and found["copy_person_crop"][2] in ("hash", "keypoints")
    assert all(found[f"copy_{b}_{e}"][1:] == ("near", "hash") for b in ("prod_a", "person") for e in ("resize", "jpeg50", "mirror"))
    assert job["result"]["open_flags"] == len(batch)
    assert reuse.unchecked_count(db) == 0
    same_user = db.execute("SELECT same_user FROM reuse_flags WHERE kind = 'exact'").fetchone()[0]
    assert same_user == 1  # the exact copy came from the same account as the original


def test_a_second_run_checks_nothing_again_and_a_new_copy_is_found_against_the_index(ws, db, batch, tmp_path, samples):
    run_kind_now(ws, db, reuse.KIND)
    before = db.execute("SELECT COUNT(*) FROM reuse_flags").fetchone()[0]
    run_kind_now(ws, db, reuse.KIND)  # nothing left to check
    assert db.execute("SELECT COUNT(*) FROM reuse_flags").fetchone()[0] == before
    # a later batch: one more copy, checked against the persisted index (a fresh process loads it from disk)
    src = sorted((samples / "product").glob("*.jp*g"))[0]
    uri = _save(ImageOps.exif_transpose(Image.open(src)).rotate(0).resize((300, 400)), tmp_path / "later" / "again.jpg")
    (tmp_path / "later.jsonl").write_text(json.dumps({"review_id": "later", "review_type": "product", "user_id": "u9",
                                                      "image_uris": [uri]}) + "\n")
    ingest_manifest(db, uri=str(tmp_path / "later.jsonl"), store=ObjectStore(), actor="cli:test")
    run_kind_now(ws, db, "classify")
    fresh = SimilarityIndex(ws.root / "index", reuse.index_for(ws).backbone)
    assert len(fresh) == len(reuse.index_for(ws))  # saved beside the workspace
    run_kind_now(ws, db, reuse.KIND)
    assert _pairs(db)["later"][0] == "orig_prod_a"


def test_credit_is_held_while_a_photo_waits_for_the_check_or_is_flagged_until_an_admin_clears_it(ws, db, batch):
    rid = "copy_prod_a_resize"
    (image_id,) = db.execute("SELECT id FROM images WHERE review_id = ?", [rid]).fetchone()
    item = claim_next(db, inspector="ann", review_type="product")
    while item["id"] != image_id:  # label the copy as a product shot: it would earn the credit
        submit(db, image_id=item["id"], label="product", actor="ann")
        item = claim_next(db, inspector="ann")
    submit(db, image_id=image_id, label="product", actor="ann")
    assert review_outcomes(db, review_ids=[rid])[rid]["credit"] is None  # not yet checked: held
    assert "waits for the reused-photo check" in review_outcomes(db, review_ids=[rid])[rid]["reason"]
    run_kind_now(ws, db, reuse.KIND)
    held = review_outcomes(db, review_ids=[rid])[rid]
    assert held["credit"] is None and held["held"] and "flagged as reused" in held["reason"]
    exported = next(r for r in export.rows(db) if r["review_id"] == rid)  # what a crediting system would read
    assert (exported["reuse_flag"], exported["credit_held"], exported["credit"]) == ("open", 1, 1)
    (flag_id,) = db.execute("SELECT id FROM reuse_flags WHERE image_id = ?", [image_id]).fetchone()
    reuse.resolve(db, flag_id=flag_id, status="cleared", actor="cli:admin", note="the customer's own photo")
    assert review_outcomes(db, review_ids=[rid])[rid]["credit"] is True
    set_setting(db, key="hold_credit_on_reuse", value=False, actor="cli:test")
    assert review_outcomes(db, review_ids=["copy_prod_a_crop"])["copy_prod_a_crop"]["held"] is False
    with pytest.raises(InvalidInput):
        reuse.resolve(db, flag_id=flag_id, status="maybe", actor="cli:admin")
    report = reuse.accounts_involved(db, actor="cli:admin")
    assert {r["user_id"] for r in report} >= {"u0", "u_resize", "u_crop"}


def test_hashes_and_keypoints_on_a_constructed_case():
    rng = np.random.default_rng(3)
    base = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((640, 480), Image.Resampling.BICUBIC)
    other = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((640, 480), Image.Resampling.BICUBIC)
    jpeg = io.BytesIO()
    base.save(jpeg, "JPEG", quality=40)
    recompressed = Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB")
    assert hash_distance(perceptual_hash(base), perceptual_hash(ImageOps.mirror(base))) == 0
    assert compare(base, recompressed).how == "hash"
    crop = base.crop((100, 80, 560, 420))
    assert compare(base, crop).near
    off_centre = base.crop((20, 150, 420, 470))  # no stored region is near it: keypoints and the detail under them
    assert compare(base, off_centre).near and compare(base, off_centre).how == "keypoints"
    assert not compare(base, other).near


def test_a_backlog_is_checked_a_bounded_number_at_a_time_and_the_worker_queues_the_rest(ws, db, batch, monkeypatch):
    from services.worker.housekeeping import queue_reuse_check

    monkeypatch.setattr(reuse, "JOB_LIMIT", 4)
    waiting = reuse.unchecked_count(db)
    run_kind_now(ws, db, reuse.KIND)
    assert reuse.unchecked_count(db) == waiting - 4  # other jobs get the worker between backlog jobs
    queued = queue_reuse_check(db)["reuse_job"]
    assert queued and queue_reuse_check(db)["reuse_job"] == queued  # one at a time


def test_photos_without_a_customer_are_never_the_same_account():
    """Photos ingested from a folder have no user id: two of them are not "the same account"."""
    assert reuse._same_user(None, None) == 0 and reuse._same_user("", "") == 0
    assert reuse._same_user("u1", "u1") == 1 and reuse._same_user("u1", "u2") == 0 and reuse._same_user(None, "u1") == 0
