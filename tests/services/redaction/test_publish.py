"""The photo as published (issue 26 item 1, follow-up): decided photos with label boxes to hide get a redacted copy
in the object store when exported (keyed by the boxes: an edit gives a new copy, an unchanged one is not
rewritten); the CSV names it in ``published_uri`` (the original URI when nothing is hidden). The redaction's box
masks are the face masks' box shape, pixel for pixel."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest

from services.access.accounts import create_user
from services.core.config import set_setting
from services.core.images import decode
from services.core.storage import ObjectStore
from services.faces.masks import anonymize
from services.hitl import export
from services.redaction.labels import MASK_SCALE, LabelBox
from services.redaction.masking import mask_boxes
from services.redaction.publish import default_prefix, publish_photo
from services.redaction.store import add_label_box, label_boxes, remove_label_box, save_found
from services.reviews.decisions import decide
from services.reviews.ingest import Row, ingest_rows
from tests.services.redaction.parcel import jpeg, parcel_photo

GOOD = "correct horse battery staple"


@pytest.fixture
def photos(db, tmp_path):
    """(parcel photo id, plain photo id, the parcel's item boxes), both decided; the parcel's label found."""
    frame, items = parcel_photo()
    (tmp_path / "parcel.jpg").write_bytes(jpeg(frame))
    (tmp_path / "plain.jpg").write_bytes(jpeg(np.full((80, 60, 3), 120, np.uint8)))
    ingest_rows(db, rows=[Row(1, "r1", "product", [str(tmp_path / "parcel.jpg")]),
                          Row(2, "r2", "product", [str(tmp_path / "plain.jpg")])],
                store=ObjectStore(), batch=str(tmp_path), actor="t")
    create_user(db, username="ada", password=GOOD, roles=["admin"], actor="cli:root")
    parcel, plain = [r[0] for r in db.execute("SELECT id FROM images ORDER BY review_id")]
    x1, y1, x2, y2 = items["barcode"]
    save_found(db, image_id=parcel, boxes=[LabelBox("barcode", x1, y1, x2, y2, 1.0)])
    save_found(db, image_id=plain, boxes=[])  # searched: nothing found
    for image_id in (parcel, plain):
        decide(db, image_id=image_id, label="package", actor="ada")
    return parcel, plain, items


def _csv(db) -> dict[int, dict]:
    text, _ = export.to_csv(db, actor="ada")
    return {int(r["image_id"]): r for r in csv.DictReader(io.StringIO(text))}


def _published_files(db) -> list[str]:
    root = default_prefix(db)
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs) if os.path.isdir(root) else []


def test_export_writes_the_photo_as_published_and_names_it(db, photos):
    parcel, plain, items = photos
    rows = _csv(db)
    assert rows[plain]["published_uri"] == rows[plain]["uri"]  # nothing to hide: the original
    published = rows[parcel]["published_uri"]
    assert published != rows[parcel]["uri"] and published.startswith(default_prefix(db)) and published.endswith(".jpg")
    assert _published_files(db) == [published] and not rows[parcel]["publish_error"]
    original = np.asarray(decode(open(rows[parcel]["uri"], "rb").read())).astype(int)
    out = np.asarray(decode(open(published, "rb").read())).astype(int)
    x1, y1, x2, y2 = items["barcode"]
    bars = (slice(y1, y2), slice(x1, x2))
    assert np.abs(out[bars] - original[bars]).mean() > 20  # the barcode is gone...
    assert np.abs(out[:40, :40] - original[:40, :40]).mean() < 4  # ...the rest is the photo (JPEG again)


def test_an_edit_gives_a_new_copy_and_nothing_changed_rewrites_nothing(db, photos):
    parcel, _, _ = photos
    first = _csv(db)[parcel]["published_uri"]
    written = os.stat(first).st_mtime_ns
    assert _csv(db)[parcel]["published_uri"] == first and os.stat(first).st_mtime_ns == written
    store = ObjectStore()
    assert publish_photo(db, image_id=parcel, store=store, actor="ada")["written"] is False
    add_label_box(db, image_id=parcel, kind="text", x1=5, y1=5, x2=60, y2=30, actor="ada")
    second = _csv(db)[parcel]["published_uri"]
    assert second != first and len(_published_files(db)) == 2
    for box in label_boxes(db, image_id=parcel, actor="ada")["boxes"]:
        remove_label_box(db, box_id=box["id"], actor="ada")
    row = _csv(db)[parcel]
    assert row["published_uri"] == row["uri"]  # every box removed: the original is what is published


def test_an_undecided_photo_is_not_published_and_an_unreadable_one_says_why(db, photos, tmp_path):
    parcel, plain, _ = photos
    db.execute("UPDATE images SET decision_id = NULL WHERE id = ?", [plain])
    (tmp_path / "parcel.jpg").write_bytes(b"not a photo")
    rows = _csv(db)
    assert rows[plain]["published_uri"] == ""
    assert rows[parcel]["published_uri"] == "" and rows[parcel]["publish_error"].startswith("not published:")


def test_a_package_photo_whose_labels_wait_for_a_search_is_published_only_after_it(db, photos, tmp_path):
    """Decided a package before any search (an inspector's label, the model said otherwise): what it shows is not
    known, so it is not published until the label search has looked at it; with the search switched off it is
    published as it is."""
    (tmp_path / "late.jpg").write_bytes(jpeg(parcel_photo()[0]))
    ingest_rows(db, rows=[Row(3, "r3", "product", [str(tmp_path / "late.jpg")])], store=ObjectStore(),
                batch=str(tmp_path), actor="ada")
    late = db.execute("SELECT MAX(id) FROM images").fetchone()[0]
    decide(db, image_id=late, label="package", actor="ada")
    row = _csv(db)[late]
    assert row["published_uri"] == "" and row["publish_error"].startswith("not published yet:")
    assert "label" in row["publish_error"]
    set_setting(db, key="redact_package_labels", value=False, actor="cli:test")
    assert _csv(db)[late]["published_uri"] == _csv(db)[late]["uri"]
    set_setting(db, key="redact_package_labels", value=True, actor="cli:test")
    save_found(db, image_id=late, boxes=[LabelBox("text", 5, 5, 60, 30, 0.9)])
    row = _csv(db)[late]
    assert row["published_uri"].startswith(default_prefix(db)) and not row["publish_error"]


@pytest.mark.parametrize("mode", ["blur", "pixelate", "fill"])
def test_label_masks_are_the_face_masks_box_shape(mode):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 110, 90, 1], [100, 80, 390, 140, 1], [5, 200, 30, 296, 1]], np.float32)
    assert np.array_equal(mask_boxes(frame, boxes, mode=mode, scale=MASK_SCALE),
                          anonymize(frame, boxes, mode=mode, shape="box", mask_scale=MASK_SCALE))
