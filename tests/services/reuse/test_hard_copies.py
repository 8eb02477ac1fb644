"""Issue 25: copies turned by a quarter (in the pixels or by the EXIF tag), placed small in a screenshot of a shop
page or cropped by a quarter on every side are flagged; three pairs of different T-shirts photographed on the same
kind of background (real photos, hashes 4-6 bits apart) are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageOps

from services.core.storage import ObjectStore
from services.reuse import detection as reuse
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import run_kind_now

LOOKALIKES = Path(__file__).resolve().parents[2] / "data" / "lookalikes"  # CC0 photos; origin in its README
# Pairs of different T-shirts whose perceptual hashes are 4, 6 and 6 bits apart (the closest pairs among 928).
TEE_PAIRS = (("544332ea-24e3-430d-83e4-870e427bca95.jpg", "ac433ea3-8c45-4ca3-9a90-32eb4b7438a7.jpg"),
             ("0e9dc3b7-f9de-4bc0-8ec1-8f442b4dcba4.jpg", "1603b682-ed73-4f3e-88df-069d0efe2a55.jpg"),
             ("3381cf35-563a-4be1-aa16-ef944a3d30b0.jpg", "844083b8-2610-413c-9c41-2bd1440b797e.jpg"))


def _screenshot(im: Image.Image) -> Image.Image:
    """The photo at 60% of a phone page's width, a status bar over it, text and a button under it."""
    w, h = 720, 1560
    page = Image.new("RGB", (w, h), (244, 244, 246))
    d = ImageDraw.Draw(page)
    d.rectangle((0, 0, w, 48), fill=(20, 20, 20))
    photo = im.copy()
    photo.thumbnail((int(w * 0.6), h // 2))
    page.paste(photo, (100, 180))
    d.text((24, 200 + photo.height), "Relaxed fit, organic cotton  $ 24.99", fill=(20, 20, 20))
    d.rounded_rectangle((24, 260 + photo.height, w - 24, 330 + photo.height), radius=20, fill=(250, 200, 40))
    return page


EDITS = {
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rot270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "exif_turns_it": lambda im: im,  # upright pixels, shown turned by the EXIF tag
    "screenshot": _screenshot,
    "crop25": lambda im: im.crop((im.width // 4, im.height // 4, im.width * 3 // 4, im.height * 3 // 4)),
}


def _save(img: Image.Image, path: Path, *, orientation: int = 1) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.convert("RGB").save(path, "JPEG", quality=90, exif=exif)
    return str(path)


def _flags(db) -> dict[str, str]:
    return {r[0]: r[1] for r in db.execute("SELECT a.review_id, b.review_id FROM reuse_flags f "
                                           "JOIN images a ON a.id = f.image_id JOIN images b ON b.id = f.other_image_id")}


def _ingest(db, rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ingest_manifest(db, uri=str(path), store=ObjectStore(), actor="cli:test").as_dict()["error_count"] == 0


@pytest.fixture
def originals(samples) -> dict[str, Path]:
    return {"product": sorted((samples / "product").glob("*.jp*g"))[2],
            "package": sorted((samples / "package").glob("*.jp*g"))[3]}


def test_turned_screenshotted_and_hard_cropped_copies_are_flagged(ws, db, originals, tmp_path):
    rows = [{"review_id": f"orig_{name}", "review_type": "product", "user_id": f"owner_{name}", "image_uris": [str(src)]}
            for name, src in originals.items()]
    expected = {}
    for name, src in originals.items():
        img = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        for edit, fn in EDITS.items():
            uri = _save(fn(img), tmp_path / "edits" / f"{name}_{edit}.jpg",
                        orientation=8 if edit == "exif_turns_it" else 1)
            rows.append({"review_id": f"copy_{name}_{edit}", "review_type": "product", "user_id": f"u_{name}_{edit}",
                         "image_uris": [uri]})
            expected[f"copy_{name}_{edit}"] = f"orig_{name}"
    _ingest(db, rows, tmp_path / "batch.jsonl")
    run_kind_now(ws, db, "classify")
    run_kind_now(ws, db, reuse.KIND)
    found = _flags(db)
    missed = sorted(set(expected) - set(found))
    assert not missed, f"not flagged: {missed}"
    assert found == expected  # each against its own original, and nothing else


def test_different_t_shirts_whose_hashes_nearly_match_are_not_copies(ws, db, tmp_path):
    rows, expected = [], {}
    for k, pair in enumerate(TEE_PAIRS):
        for side, name in enumerate(pair):
            uri = _save(Image.open(LOOKALIKES / name), tmp_path / "uploads" / name)  # inside the storage roots
            rows.append({"review_id": f"tee_{k}{side}", "review_type": "product", "user_id": f"customer_{k}{side}",
                         "image_uris": [uri]})
        mirrored = _save(ImageOps.mirror(Image.open(LOOKALIKES / pair[0])), tmp_path / f"tee_copy_{k}.jpg")
        rows.append({"review_id": f"tee_copy_{k}", "review_type": "product", "user_id": f"customer_9{k}",
                     "image_uris": [mirrored]})
        expected[f"tee_copy_{k}"] = f"tee_{k}0"
    _ingest(db, rows, tmp_path / "tees.jsonl")
    run_kind_now(ws, db, "classify")
    run_kind_now(ws, db, reuse.KIND)
    assert _flags(db) == expected  # each copy is caught; the other T-shirt of its pair is not a copy
