"""Issue 25: copies turned by a quarter (in the pixels or by the EXIF tag), placed small in a screenshot of a shop
page or cropped by a quarter on every side are flagged; two different dark T-shirts photographed flat on white
(real shop photos, hash 10 bits apart) are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageOps

from services.core.storage import ObjectStore
from services.reuse import detection as reuse
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import run_kind_now

LOOKALIKES = Path(__file__).resolve().parents[3].parent / "shared" / "lookalike_products"
DARK_TEES = ("ootd_03244_00.jpg", "ootd_050181_1.jpg")  # two different dark T-shirts on white, hashes 10 bits apart


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


def test_two_different_dark_t_shirts_on_white_are_not_copies(ws, db, tmp_path):
    if not all((LOOKALIKES / n).is_file() for n in DARK_TEES):
        pytest.skip(f"look-alike product photos not found at {LOOKALIKES} (a fresh clone has no ../shared)")
    rows = [{"review_id": f"tee_{k}", "review_type": "product", "user_id": f"customer_{k}",
             "image_uris": [str(LOOKALIKES / n)]} for k, n in enumerate(DARK_TEES)]
    mirrored = _save(ImageOps.mirror(Image.open(LOOKALIKES / DARK_TEES[0])), tmp_path / "tee_copy.jpg")
    rows.append({"review_id": "tee_copy", "review_type": "product", "user_id": "customer_9", "image_uris": [mirrored]})
    _ingest(db, rows, tmp_path / "tees.jsonl")
    run_kind_now(ws, db, "classify")
    run_kind_now(ws, db, reuse.KIND)
    assert _flags(db) == {"tee_copy": "tee_0"}  # the copy is caught; the other T-shirt is not a copy
