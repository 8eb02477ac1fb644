"""Issue 25: two different garments laid on the same floor and shot from the same spot are not copies (the floor
around them agrees, the garments in the middle do not), while a copy with stickers pasted over it is; a copy
with stickers that move its embedding below the candidate similarity is still found among the nearest photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from services.core.storage import ObjectStore
from services.reuse import detection as reuse
from services.reuse.alignment import agreement, block_correlations
from services.reuse.near_copies import compare
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import run_kind_now

LOOKALIKES = Path(__file__).resolve().parents[2] / "data" / "lookalikes"  # CC0 photos; origin in its README
# Different garments on one floor, each pair flagged as a copy before the centre had to agree (keypoints 47 and 69
# on the floor's plane, median block agreement 0.47 and 0.52).
SAME_FLOOR = (("773cca6b-e062-42c9-90e4-53e7f3ff9697.jpg", "4309e451-06b8-4920-86d1-63c6cb86eed5.jpg"),
              ("5fea042c-f2ac-4523-a813-fc0eae2d9472.jpg", "00f6e504-7c27-438e-a5d7-bc65e557bb2b.jpg"))


def _stickers(im: Image.Image, *, centre: bool = False, corners: bool = False) -> Image.Image:
    """Three opaque discs of 12% of the short side in radius, one over the middle when ``centre``, all three
    near the corners when ``corners``."""
    out = im.copy()
    d = ImageDraw.Draw(out)
    r = int(min(im.size) * 0.12)
    spots = [(0.3, 0.25), (0.7, 0.7), (0.5, 0.5) if centre else (0.25, 0.75)]
    if corners:
        spots = [(0.2, 0.2), (0.8, 0.3), (0.3, 0.8)]
    for k, (u, v) in enumerate(spots):
        cx, cy = int(im.width * u), int(im.height * v)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=((200, 40, 40), (40, 160, 60), (240, 200, 30))[k],
                  outline="black", width=max(1, r // 12))
        d.ellipse((cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3), fill="white")
    return out


@pytest.mark.parametrize("pair", SAME_FLOOR, ids=["tees_on_wood", "shoes_on_carpet"])
def test_different_garments_on_the_same_floor_are_not_copies(pair):
    a, b = (Image.open(LOOKALIKES / name).convert("RGB") for name in pair)
    assert not compare(a, b).near
    assert not compare(b, a).near


@pytest.mark.parametrize("name", [p for pair in SAME_FLOOR for p in pair])
def test_copies_of_those_photos_with_stickers_are_copies(name):
    photo = Image.open(LOOKALIKES / name).convert("RGB")
    for centre in (False, True):  # a sticker right over the garment as well
        assert compare(photo, _stickers(photo, centre=centre)).near


def test_centre_agreement_reads_the_middle_of_the_overlap():
    rng = np.random.default_rng(0)
    floor = (rng.normal(128, 30, (256, 256))).clip(0, 255).astype(np.uint8)
    other = floor.copy()
    other[64:192, 64:192] = rng.normal(128, 30, (128, 128)).clip(0, 255).astype(np.uint8)  # another thing on it
    found = agreement(floor, other, np.eye(3))
    assert found.local > 0.3  # most blocks are floor: the median alone would call it a copy
    assert found.centre is not None and found.centre < 0.1
    same = agreement(floor, floor, np.eye(3))
    assert same.centre is not None and same.centre > 0.99
    flat = np.full((256, 256), 128, np.uint8)
    assert np.isnan(block_correlations(flat.astype(np.float32), flat.astype(np.float32),
                                       np.ones((256, 256), bool))).all()


@pytest.mark.xfail(strict=True, reason="known miss: a sticker over the middle of a face leaves too little of the "
                   "central half agreeing (the garments' test above passes; quarter hashes bring such a copy to be compared, they do not confirm it)")
def test_a_sticker_over_the_middle_of_a_face_is_a_copy(samples):
    src = samples.parent / "faces" / "deepface_img18.jpg"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    photo = Image.open(src).convert("RGB")
    assert compare(photo, _stickers(photo, centre=True)).near


def _classified(ws, db, tmp_path, rows: list[dict]) -> dict[str, np.ndarray]:
    """Ingest the reviews ``rows`` and classify them: each review's embedding, by review id."""
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test").as_dict()["error_count"] == 0
    run_kind_now(ws, db, "classify")
    return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in db.execute(
        "SELECT i.review_id, e.vector FROM images i JOIN embeddings e ON e.sha256 = i.sha256")}


def test_a_face_under_stickers_is_found_below_the_candidate_similarity(ws, db, samples, tmp_path):
    src = samples.parent / "faces" / "deepface_img18.jpg"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    copy = tmp_path / "stickers.jpg"
    _stickers(Image.open(src).convert("RGB"), corners=True).save(copy, "JPEG", quality=90)  # no hash within reach
    rows = [{"review_id": "orig", "review_type": "product", "user_id": "owner", "image_uris": [str(src)]},
            {"review_id": "copy", "review_type": "product", "user_id": "other", "image_uris": [str(copy)]}]
    vectors = _classified(ws, db, tmp_path, rows)
    similarity = float(vectors["orig"] @ vectors["copy"] / np.linalg.norm(vectors["orig"]) / np.linalg.norm(vectors["copy"]))
    assert similarity < reuse.CANDIDATE_SIMILARITY  # what made it a miss: only the nearest few are looked at
    run_kind_now(ws, db, reuse.KIND)
    flags = db.execute("SELECT a.review_id, b.review_id FROM reuse_flags f JOIN images a ON a.id = f.image_id "
                       "JOIN images b ON b.id = f.other_image_id").fetchall()
    assert [tuple(f) for f in flags] == [("copy", "orig")]


def test_a_copy_under_stickers_is_found_when_other_photos_with_the_same_stickers_are_nearer(ws, db, samples, tmp_path):
    """Other customers' photos with the same stickers come nearer to the copy than its original (the stickers
    carry the embedding); a quarter of the copy the stickers miss still meets the original's stored quarter hash."""
    src = samples.parent / "faces" / "deepface_img18.jpg"
    others = sorted((samples / "full_length").glob("*.jpg"))[:10]
    if not src.is_file() or len(others) < 10:
        pytest.skip(f"{src} or 10 photos of {samples / 'full_length'} not found")
    rows = [{"review_id": "orig", "review_type": "product", "user_id": "owner", "image_uris": [str(src)]}]
    for k, path in enumerate(others):
        stickered = tmp_path / f"other{k}.jpg"
        _stickers(Image.open(path).convert("RGB"), corners=True).save(stickered, "JPEG", quality=90)
        rows.append({"review_id": f"other{k}", "review_type": "product", "user_id": f"u{k}", "image_uris": [str(stickered)]})
    copy = tmp_path / "copy.jpg"
    _stickers(Image.open(src).convert("RGB"), corners=True).save(copy, "JPEG", quality=90)
    rows.append({"review_id": "copy", "review_type": "product", "user_id": "other", "image_uris": [str(copy)]})
    vectors = _classified(ws, db, tmp_path, rows)
    unit = {k: v / np.linalg.norm(v) for k, v in vectors.items()}
    to_copy = {k: float(unit[k] @ unit["copy"]) for k in unit if k != "copy"}
    nearer = [k for k, s in to_copy.items() if s > to_copy["orig"]]
    assert len(nearer) > reuse.WEAK_NEIGHBOURS, to_copy  # what made it a miss: the original is not among the nearest few
    run_kind_now(ws, db, reuse.KIND)
    flags = db.execute("SELECT a.review_id, b.review_id, f.how FROM reuse_flags f JOIN images a ON a.id = f.image_id "
                       "JOIN images b ON b.id = f.other_image_id").fetchall()
    assert ("copy", "orig") in [(a, b) for a, b, _ in flags], flags
    assert all(b == "orig" or a != "copy" for a, b, _ in flags)
